// swf-monitor's rows both ways: the snake_case bodies built from fastmon's camelCase records, and its answers checked with zod.

import { z } from 'zod';
import { FastmonError } from '../errors.js';
import { redactText } from '../log/redact.js';
import type { SampleRow, StfRow } from '../store/ops.js';

// What fastmon records, in its own words.

/** One TF sample of an STF, as the scheduler records it. */
export interface SampleRecord {
  stfFilename: string;
  tfFilename: string;
  tfFirst: number;
  tfLast: number;
  tfCount: number;
  fileSizeBytes: number | null;
  checksum: string | null;
  metadata: Record<string, unknown>;
}

/** An STF found on disk, to be registered before its samples (swf-monitor requires the parent). */
export interface StfRecord {
  stfFilename: string;
  runNumber: number;
  sizeBytes: number | null;
  checksum: string | null;
  tfCount: number | null;
  state: string | null;
  substate: string | null;
  metadata: Record<string, unknown>;
}

// What fastmon sends (docs/testbed-interface.md, "Run, StfFile and FastMonFile").

/** A FastMonFile row as swf-monitor serializes it (fields='__all__', stf_file as its filename). */
export interface FastMonFileRow {
  tf_file_id: string;
  stf_file: string;
  tf_filename: string;
  file_size_bytes: number | null;
  checksum: string | null;
  status: string;
  metadata: Record<string, unknown> | null;
  tf_first: number | null;
  tf_last: number | null;
  tf_count: number | null;
  created_at?: string;
  updated_at?: string;
}

export type NewFastMonFile = Omit<FastMonFileRow, 'tf_file_id' | 'created_at' | 'updated_at'>;

/** What fastmon sends for an StfFile row; `run` is the Run's `run_id`. */
export interface NewStfFile {
  run: number;
  stf_filename: string;
  file_size_bytes: number | null;
  checksum: string | null;
  status: 'registered';
  machine_state: string;
  tf_count: number | null;
  metadata: Record<string, unknown>;
}

/** What fastmon sends for a Run row, as the example data agent does on run_imminent. */
export interface NewRun {
  run_number: number;
  start_time: string;
  run_conditions: Record<string, unknown> | null;
}

/** A sample's row: its range is always known, its metadata always an object. */
export type SampleFastMonFile = NewFastMonFile & {
  tf_first: number;
  tf_last: number;
  tf_count: number;
  metadata: Record<string, unknown>;
};

export function fastMonFileRow(s: SampleRecord): SampleFastMonFile {
  return {
    stf_file: s.stfFilename,
    tf_filename: s.tfFilename,
    file_size_bytes: s.fileSizeBytes,
    checksum: s.checksum,
    status: 'registered',
    metadata: s.metadata,
    tf_first: s.tfFirst,
    tf_last: s.tfLast,
    tf_count: s.tfCount,
  };
}

/**
 * `substate` goes into the metadata, as the example data agent writes it; a `substate` key already
 * in `stf.metadata` keeps its place in the body and takes this value.
 */
export function stfFileRow(runId: number, stf: Omit<StfRecord, 'runNumber'>): NewStfFile {
  return {
    run: runId,
    stf_filename: stf.stfFilename,
    file_size_bytes: stf.sizeBytes,
    checksum: stf.checksum,
    status: 'registered',
    machine_state: stf.state ?? 'physics',
    tf_count: stf.tfCount,
    metadata: { ...stf.metadata, substate: stf.substate },
  };
}

export function runRow(runNumber: number, startTime: Date, runConditions?: Record<string, unknown>): NewRun {
  return {
    run_number: runNumber,
    start_time: startTime.toISOString(),
    run_conditions: runConditions ?? null,
  };
}

// The local catalog keeps the same rows (src/sinks/catalog.ts), with metadata as JSON text.

/**
 * A sample's FastMonFile row for the catalog, with the run its placeholder StfFile row would get:
 * the scheduler carries the run in `metadata.run_id`, a string on the wire, a number from a scan.
 */
export function catalogSampleRow(s: SampleRecord): SampleRow {
  const runId = s.metadata.run_id;
  const fromText = typeof runId === 'string' && /^\d+$/.test(runId) ? Number(runId) : null;
  return {
    ...fastMonFileRow(s),
    metadata: JSON.stringify(s.metadata),
    run_number: typeof runId === 'number' && Number.isSafeInteger(runId) ? runId : fromText,
  };
}

export function catalogStfRow(stf: StfRecord): StfRow {
  return {
    stf_filename: stf.stfFilename,
    run_number: stf.runNumber,
    file_size_bytes: stf.sizeBytes,
    checksum: stf.checksum,
    tf_count: stf.tfCount,
    machine_state: stf.state ?? 'physics',
    daq_substate: stf.substate,
    metadata: JSON.stringify({ ...stf.metadata, substate: stf.substate }),
  };
}

// What swf-monitor answers. Each schema names the fields fastmon reads, with the types DRF gives them;
// any other field is accepted unchecked and left out of the result (swf-monitor adds columns; its JSON
// fields hold anything). Leaving them out is also the cheaper parse: a loose object copies every key.

const int = z.number().int();
const nullableInt = int.nullable();

const fastMonFileAnswer = z.object({
  tf_file_id: z.string(),
  stf_file: z.string(),
  tf_filename: z.string(),
  tf_first: nullableInt,
  tf_last: nullableInt,
  tf_count: nullableInt,
});

const runAnswer = z.object({
  run_id: int,
  run_number: int,
});

const stfFileAnswer = z.object({
  stf_filename: z.string(),
  run: int,
  file_size_bytes: z.number().nullable(),
  checksum: z.string().nullable(),
  /** TFs in the STF (swf-monitor >= 2026-04-01); absent before, and no testbed producer fills it yet. */
  tf_count: nullableInt.optional(),
});

const definitionAnswer = z.object({
  id: int,
  workflow_name: z.string(),
  version: z.string(),
});

/** `POST /api/state/next-agent-id/` answers `{agent_id, status}`; a digit string is taken as its number. */
const agentIdAnswer = z.object({
  agent_id: z.union([int, z.string().regex(/^\d+$/).transform(Number)]),
});

/**
 * List endpoints answer a plain array, or a LimitOffset page (`count`, `next`, `previous`, `results`)
 * when `?limit=` is given (stf-files and fastmon-files, swf-monitor >= 2026-07-28).
 */
function list<T extends z.ZodType>(row: T) {
  // The page is unwrapped first so that an issue names the row and field, not just "invalid union".
  const rows = (body: unknown) =>
    body !== null && typeof body === 'object' && !Array.isArray(body)
      ? (body as { results?: unknown }).results
      : body;
  return z.preprocess(rows, z.array(row));
}

/** The fields of a FastMonFile row fastmon reads (the rest of FastMonFileRow is not checked). */
export type FastMonFileAnswer = z.infer<typeof fastMonFileAnswer>;
/** A Run row: `run_id` is the table's key, `run_number` the DAQ's. */
export type RunAnswer = z.infer<typeof runAnswer>;
export type StfFileAnswer = z.infer<typeof stfFileAnswer>;
export type DefinitionAnswer = z.infer<typeof definitionAnswer>;

// Compiled once: zod 4 builds each schema's parser on first use and keeps it.
const answers = {
  fastMonFile: fastMonFileAnswer,
  fastMonFiles: list(fastMonFileAnswer),
  run: runAnswer,
  runs: list(runAnswer),
  stfFiles: list(stfFileAnswer),
  definition: definitionAnswer,
  definitions: list(definitionAnswer),
  agentId: agentIdAnswer,
};

type Answers = typeof answers;

/**
 * swf-monitor's answer to `request` (e.g. `POST /fastmon-files/`) checked against what fastmon reads
 * from it. A body of another shape is MONITOR_BAD_RESPONSE, naming the request, the first fields
 * that differ and the start of the body, rather than undefined fields further on.
 */
export function readAnswer<K extends keyof Answers>(
  kind: K,
  body: unknown,
  request: string,
): z.output<Answers[K]> {
  const parsed = answers[kind].safeParse(body);
  if (parsed.success) return parsed.data as z.output<Answers[K]>;
  const issues = parsed.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`);
  throw new FastmonError(
    'MONITOR_BAD_RESPONSE',
    `swf-monitor ${request} answered a body fastmon cannot read (${issues.join('; ')}): ${preview(body)}`,
    { request, issues },
  );
}

function preview(body: unknown): string {
  const text = JSON.stringify(body) ?? String(body);
  return redactText(text.length > 300 ? `${text.slice(0, 300)}…` : text);
}
