// Piscina task: locate an STF, read its header, and sample its TF ranges; errors come back as values.

import { type ErrorInfo, FastmonError } from '../src/errors.js';
import { locateStf } from './paths.js';
import { type SamplerSettings, sampleStf, type TfSample } from './sampler.js';
import { readStfHeader, type StfHeader } from './stf-reader.js';

export interface StfTask {
  seed: string;
  runId: string | null;
  stfFilename: string;
  fileUrl: string | null;
  filename: string | null;
  /** From the message, used when the file cannot be read here. */
  messageSizeBytes: number | null;
  messageTfCount: number | null;
  dataRoots: string[];
  tfCountDefault: number;
  settings: SamplerSettings;
}

export type TfCountSource = 'header' | 'message' | 'default';

export interface StfTaskSuccess {
  ok: true;
  /** The file read, or null when the STF was sampled from message metadata only. */
  path: string | null;
  header: StfHeader | null;
  tfCount: number;
  tfCountSource: TfCountSource;
  sizeBytes: number | null;
  samples: TfSample[];
  /** Why the file was not read, when a data root was configured but did not hold it. */
  warning?: ErrorInfo;
}

export interface StfTaskFailure {
  ok: false;
  error: ErrorInfo;
}

export type StfTaskResult = StfTaskSuccess | StfTaskFailure;

export default async function runStfTask(task: StfTask): Promise<StfTaskResult> {
  try {
    return await process(task);
  } catch (err) {
    if (err instanceof FastmonError) return { ok: false, error: err.toInfo() };
    // Anything else is a bug in a reader; report it rather than kill the worker.
    return { ok: false, error: { code: 'WORKER_FAILED', message: (err as Error)?.message ?? String(err) } };
  }
}

async function process(task: StfTask): Promise<StfTaskSuccess> {
  const { location, notFound } = await locateStf(
    { fileUrl: task.fileUrl, filename: task.filename },
    task.dataRoots,
  );
  const header = location ? await readStfHeader(location.path) : null;
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
  const samples = sampleStf({
    seed: task.seed,
    runId: task.runId,
    stfFilename: task.stfFilename,
    tfCount,
    stfSizeBytes: sizeBytes,
    settings: task.settings,
  });
  const result: StfTaskSuccess = {
    ok: true,
    path: location?.path ?? null,
    header,
    tfCount,
    tfCountSource,
    sizeBytes,
    samples,
  };
  if (notFound) result.warning = notFound;
  return result;
}
