// Piscina task: locate an STF, read its header, sample its TF ranges and extract them; errors come back as values.

import path from 'node:path';
import { type ErrorInfo, FastmonError } from '../src/errors.js';
import { type FileAccess, files } from './file-access.js';
import { locateStf } from './paths.js';
import { type SamplerSettings, sampleStf, type TfSample } from './sampler.js';
import { adler32, adlerString, type TfEntry } from './stf-format.js';
import { type ReadStf, readAt, readStf, type StfHeader } from './stf-reader.js';
import {
  CHUNK_BYTES,
  commitStfs,
  discardStfs,
  type StagedStf,
  stageStf,
  type Written,
} from './stf-writer.js';

export interface StfTask {
  seed: string;
  runId: string | null;
  stfFilename: string;
  fileUrl: string | null;
  filename: string | null;
  /** From the message, used when the file cannot be read here. */
  messageSizeBytes: number | null;
  messageTfCount: number | null;
  messageChecksum: string | null;
  dataRoots: string[];
  tfCountDefault: number;
  settings: SamplerSettings;
  /** Write each sample's TFs to `<outputDir>/<run>/<tf_filename>`; null: no extraction. */
  outputDir: string | null;
  /** Compute the STF's adler32 when the message has no checksum. */
  stfChecksum: boolean;
}

/** Where tf_count came from, in the order tried: STF header, message, StfFile row (main thread), default. */
export type TfCountSource = 'header' | 'message' | 'stf_file' | 'default';

export interface Sample extends TfSample {
  /** `ad:<adler32>` of the extracted sample file. */
  checksum: string | null;
  /** The extracted sample file. */
  file: string | null;
}

export interface StfTaskSuccess {
  ok: true;
  /** The file read, or null when the STF was sampled from message metadata only. */
  path: string | null;
  header: StfHeader | null;
  tfCount: number;
  tfCountSource: TfCountSource;
  sizeBytes: number | null;
  /** `ad:<adler32>` of the whole STF: from the message, or computed when asked. */
  stfChecksum: string | null;
  samples: Sample[];
  /** Why the file was not read, or why samples were not extracted. */
  warning?: ErrorInfo;
}

export interface StfTaskFailure {
  ok: false;
  error: ErrorInfo;
}

export type StfTaskResult = StfTaskSuccess | StfTaskFailure;

/**
 * `access` is how files are reached: this thread's (`files`) unless the caller knows better; the
 * main thread passes direct system calls for a small file on a local file system (src/scheduler/pool.ts).
 */
export default async function runStfTask(task: StfTask, access: FileAccess = files): Promise<StfTaskResult> {
  try {
    return await sampleStfTask(task, access);
  } catch (err) {
    if (err instanceof FastmonError) return { ok: false, error: err.toInfo() };
    // Anything else is a bug in a reader; report it rather than kill the worker.
    return { ok: false, error: { code: 'WORKER_FAILED', message: (err as Error)?.message ?? String(err) } };
  }
}

async function sampleStfTask(task: StfTask, access: FileAccess): Promise<StfTaskSuccess> {
  const { location, notFound } = await locateStf(
    { fileUrl: task.fileUrl, filename: task.filename },
    task.dataRoots,
    access,
  );
  const read = location ? await readStf(location.path, access) : null;
  const header = read?.header ?? null;
  let tfCount: number;
  let tfCountSource: TfCountSource;
  if (header?.tfCount) {
    tfCount = header.tfCount;
    tfCountSource = 'header';
  } else if (task.messageTfCount) {
    tfCount = task.messageTfCount;
    tfCountSource = 'message';
  } else {
    tfCount = task.tfCountDefault;
    tfCountSource = 'default';
  }
  const sizeBytes = header?.sizeBytes ?? task.messageSizeBytes;
  const ranges = sampleStf({
    seed: task.seed,
    runId: task.runId,
    stfFilename: task.stfFilename,
    tfCount,
    stfSizeBytes: sizeBytes,
    settings: task.settings,
  });
  let samples: Sample[] = ranges.map((r) => ({ ...r, checksum: null, file: null }));
  let warning = notFound;
  if (task.outputDir && location && read) {
    if (read.tfIndex) {
      samples = await extract(location.path, read, ranges, task);
    } else {
      warning = {
        code: 'EXTRACTION_FAILED',
        message: `${header?.format} STFs carry no TF payloads: nothing to extract, samples registered from metadata`,
      };
    }
  }
  let stfChecksum = task.messageChecksum;
  if (!stfChecksum && task.stfChecksum && location)
    stfChecksum = adlerString(await fileAdler32(location.path, access));
  const result: StfTaskSuccess = {
    ok: true,
    path: location?.path ?? null,
    header,
    tfCount,
    tfCountSource,
    sizeBytes,
    stfChecksum,
    samples,
  };
  if (warning) result.warning = warning;
  return result;
}

/**
 * Copies each sample's TFs into a sample file of the same format (docs/stf-format.md), reading
 * only the sampled TFs' byte ranges from the STF, one chunk at a time. The TF checksums of the
 * STF index are verified on the way. All samples are staged first, then committed together:
 * their syncs overlap and their directory is synced once. If any sample fails, none is kept.
 */
async function extract(stfPath: string, read: ReadStf, ranges: TfSample[], task: StfTask): Promise<Sample[]> {
  const index = read.tfIndex as TfEntry[];
  const binary = read.binary;
  const dir = path.join(task.outputDir as string, task.runId ?? 'unknown-run');
  await files.mkdirs(dir);
  const stf = await files.open(stfPath, 'r');
  const copy = async (position: number, into: Buffer) => {
    await readAt(stf, position, into.length, stfPath, into);
  };
  const stage = (range: TfSample, chunk: Buffer): Promise<StagedStf> => {
    const tfs = index.slice(range.tfFirst, range.tfLast + 1);
    const file = path.join(dir, range.tfFilename);
    return stageStf(
      file,
      {
        runNumber: binary?.runNumber ?? 0n,
        stfSequence: binary?.stfSequence ?? 0n,
        state: binary?.state ?? '',
        substate: binary?.substate ?? '',
        startNs: binary?.startNs ?? 0n,
        endNs: binary?.endNs ?? 0n,
        tfLengths: tfs.map((t) => t.length),
        tfIds: tfs.map((t) => t.tfId),
        expectedTfChecksums: binary && binary.flags & 1 ? tfs.map((t) => t.checksum) : undefined,
        source: { stfFilename: path.basename(stfPath), tfFirst: range.tfFirst },
      },
      contiguous(tfs)
        ? // Back to back in the STF (what the writer produces): copy the span as one stream.
          { span: (position, into) => copy((tfs[0] as TfEntry).offset + position, into) }
        : (tf, offset, into) => copy((tfs[tf] as TfEntry).offset + offset, into),
      chunk,
    ).catch((err: unknown) => {
      if (err instanceof FastmonError) {
        throw new FastmonError(
          err.code,
          `${stfPath}: extracting ${range.tfFilename}: ${err.message}`,
          err.details,
        );
      }
      throw new FastmonError('EXTRACTION_FAILED', `${stfPath}: writing ${file}: ${(err as Error).message}`, {
        file,
      });
    });
  };
  const staged: StagedStf[] = [];
  try {
    // One buffer for every sample. Staging samples concurrently (a buffer each) was tried for
    // the main thread's threadpool I/O: no faster, and seven times the memory per STF.
    const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
    for (const range of ranges) staged.push(await stage(range, chunk));
  } catch (err) {
    await discardStfs(staged);
    throw err;
  } finally {
    await files.close(stf);
  }
  const written = await commitStfs(staged).catch((err: unknown) => {
    throw new FastmonError(
      'EXTRACTION_FAILED',
      `${stfPath}: committing its samples to ${dir}: ${(err as Error).message}`,
      { dir },
    );
  });
  return ranges.map((range, i) => {
    const w = written[i] as Written;
    return { ...range, fileSizeBytes: w.sizeBytes, checksum: adlerString(w.adler32), file: w.path };
  });
}

function contiguous(tfs: readonly TfEntry[]): boolean {
  return tfs.every(
    (t, i) => i === 0 || t.offset === (tfs[i - 1] as TfEntry).offset + (tfs[i - 1] as TfEntry).length,
  );
}

/** adler32 of a whole file, streamed in 1 MiB chunks: memory stays flat for a 2 GB STF. */
async function fileAdler32(file: string, access: FileAccess): Promise<number> {
  const fd = await access.open(file, 'r');
  try {
    const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
    let value = 1;
    for (let position = 0; ; ) {
      const n = await access.read(fd, chunk, 0, chunk.length, position);
      if (n === 0) return value;
      value = adler32(chunk.subarray(0, n), value);
      position += n;
    }
  } finally {
    await access.close(fd);
  }
}
