// TF sampling: a pure, deterministic function of (seed, run, STF name, tf_count, settings).

import { seededUniform } from './random.js';

export interface SamplerSettings {
  tfFilesPerStf: number;
  tfSizeFraction: number;
  tfSequenceStart: number;
}

export interface SampleInput {
  seed: string;
  runId: string | null;
  /** STF file name; only its base name counts, so `file_url` and `filename` give the same ranges. */
  stfFilename: string;
  tfCount: number;
  /** Bytes of the whole STF, when known; sample sizes are its share. */
  stfSizeBytes: number | null;
  settings: SamplerSettings;
}

export interface TfSample {
  /** 0-based position of the sample within the STF. */
  index: number;
  tfFilename: string;
  /** 0-based TF indices within the STF, inclusive: `0 <= tfFirst <= tfLast < tf_count`. */
  tfFirst: number;
  tfLast: number;
  tfCount: number;
  /** Bytes (never a TF count, the newer testbed's bug); null when the STF size is unknown. */
  fileSizeBytes: number | null;
}

/**
 * The testbed's newer design (swf-testbed example_fastmon_utils): the STF's TFs are split into
 * `tfFilesPerStf` equal partitions and one contiguous block of about `tfSizeFraction` of each
 * partition (± ~10 %) is taken at a random offset inside it, so samples never overlap.
 *
 * Determinism across machines and restarts: the random stream is xoshiro128** seeded from a
 * SHA-256 of the inputs, and the jitter uses only additions (an Irwin–Hall sum instead of
 * Box–Muller), so no transcendental function whose last bit could differ is involved.
 */
export function sampleStf(input: SampleInput): TfSample[] {
  const { tfCount, settings } = input;
  if (!Number.isInteger(tfCount) || tfCount <= 0) return [];
  const n = Math.min(settings.tfFilesPerStf, tfCount);
  const stf = baseName(input.stfFilename);
  const random = seededUniform([input.seed, input.runId ?? '', stf, tfCount, n, settings.tfSizeFraction]);
  const samples: TfSample[] = [];
  for (let i = 0; i < n; i++) {
    const partStart = Math.floor((i * tfCount) / n);
    const partEnd = Math.floor(((i + 1) * tfCount) / n);
    const partLen = partEnd - partStart;
    let sum = 0;
    for (let k = 0; k < 12; k++) sum += random();
    const jitter = Math.min(1.5, Math.max(0.5, 1 + 0.1 * (sum - 6)));
    const width = Math.min(partLen, Math.max(1, Math.round(partLen * settings.tfSizeFraction * jitter)));
    const offset = Math.floor(random() * (partLen - width + 1));
    const tfFirst = partStart + offset;
    samples.push({
      index: i,
      tfFilename: tfFilename(stf, settings.tfSequenceStart + i),
      tfFirst,
      tfLast: tfFirst + width - 1,
      tfCount: width,
      fileSizeBytes: input.stfSizeBytes === null ? null : Math.round((input.stfSizeBytes * width) / tfCount),
    });
  }
  return samples;
}

/** Deterministic per-STF selection for `stf_selection_fraction`. */
export function isStfSelected(
  seed: string,
  runId: string | null,
  stfFilename: string,
  fraction: number,
): boolean {
  if (fraction >= 1) return true;
  if (fraction <= 0) return false;
  return seededUniform(['select', seed, runId ?? '', baseName(stfFilename)])() < fraction;
}

/** `<stf name without extension>_tf_<NNN>.tf` (docs/testbed-interface.md, "STFs and TFs"). */
export function tfFilename(stfFilename: string, sequence: number): string {
  const base = baseName(stfFilename);
  const dot = base.lastIndexOf('.');
  const stem = dot > 0 ? base.slice(0, dot) : base;
  return `${stem}_tf_${String(sequence).padStart(3, '0')}.tf`;
}

export function baseName(file: string): string {
  return file.slice(file.lastIndexOf('/') + 1);
}
