import { describe, expect, it } from 'vitest';
import type { RunLifecycle, StfReady } from '../src/messaging/codec.js';
import { type RunCounts, SIZE_EDGES } from '../src/run/counts.js';
import { RunStates } from '../src/run/run-states.js';
import { Tally } from '../src/run/tally.js';

function lifecycle(
  msgType: RunLifecycle['msgType'],
  runId: string,
  fields: Partial<RunLifecycle> = {},
): RunLifecycle {
  return {
    msgType,
    runId,
    executionId: null,
    namespace: null,
    state: null,
    substate: null,
    totalStfFiles: null,
    ...fields,
  };
}

function stf(runId: string | null, fields: Partial<StfReady> = {}): StfReady {
  return {
    msgType: 'stf_ready',
    runId,
    executionId: null,
    namespace: null,
    state: null,
    substate: null,
    filename: 'swf.1.000001.stf',
    fileUrl: null,
    sizeBytes: null,
    checksum: null,
    sequence: null,
    tfCount: null,
    ...fields,
  };
}

/** What one attempt at an stf_ready counted, as the scheduler fills it. */
function tallyOf(counts: Partial<RunCounts>, errors: string[] = [], sampleSizes: number[] = []): Tally {
  const tally = new Tally();
  for (const [field, n] of Object.entries(counts) as [keyof RunCounts, number][]) tally.add(field, n);
  for (const code of errors) tally.error(code);
  for (const bytes of sampleSizes) tally.sample(bytes);
  return tally;
}

describe('run state bounds', () => {
  it('tracks at most maxRuns runs, makes room by forgetting ended runs first, and counts the refused', () => {
    const refused: string[] = [];
    const runs = new RunStates({ maxRuns: 2, onRefused: (id) => refused.push(id) });
    expect(runs.getOrCreate('1')).not.toBeNull();
    expect(runs.getOrCreate('2')).not.toBeNull();
    expect(runs.getOrCreate('3')).toBeNull();
    runs.apply(lifecycle('end_run', '1'));
    expect(runs.getOrCreate('3')?.runId).toBe('3');
    expect(runs.get('1')).toBeUndefined();
    expect(runs.size).toBe(2);
    expect(runs.refused).toBe(1);
    expect(refused).toEqual(['3']);
  });

  it('closes runs silent for the idle timeout, and takes a run back when its traffic resumes', () => {
    const runs = new RunStates({ idleTimeoutMs: 1000 });
    const t0 = 1_000_000;
    const quiet = runs.getOrCreate('1', null, null, t0);
    runs.getOrCreate('2', null, null, t0);
    runs.getOrCreate('2', null, null, t0 + 900);
    expect(runs.expireIdle(t0 + 999)).toEqual([]);
    expect(runs.expireIdle(t0 + 1000).map((r) => r.runId)).toEqual(['1']);
    expect(quiet).toMatchObject({ phase: 'ended', timedOut: true });
    expect(runs.expireIdle(t0 + 1500)).toEqual([]); // closed once
    runs.record('1', tallyOf({ stfsSampled: 4 }));
    const back = runs.getOrCreate('1', null, null, t0 + 2000);
    expect(back).toMatchObject({ phase: 'physics', timedOut: false });
    expect(back?.counts.stfsSampled).toBe(4);
    // A run_imminent after a timeout starts the run afresh, as after end_run.
    runs.expireIdle(t0 + 5000);
    expect(runs.apply(lifecycle('run_imminent', '1'))?.counts.stfsSampled).toBe(0);
  });
});

describe('run lifecycle', () => {
  it('follows run_imminent, start_run, pause_run, resume_run and end_run with the testbed state pairs', () => {
    const runs = new RunStates();
    const seen = (['run_imminent', 'start_run', 'pause_run', 'resume_run', 'end_run'] as const).map((t) => {
      const run = runs.apply(lifecycle(t, '7', { executionId: 'exec-7' }));
      return [run?.phase, run?.state, run?.substate];
    });
    expect(seen).toEqual([
      ['imminent', 'beam', 'not_ready'],
      ['physics', 'run', 'physics'],
      ['standby', 'run', 'standby'],
      ['physics', 'run', 'physics'],
      // end_run keeps the last pair: an STF announced late is judged by when it was taken.
      ['ended', 'run', 'physics'],
    ]);
    expect(runs.get('7')).toMatchObject({ announced: true, executionId: 'exec-7' });
    expect(runs.get('7')?.endedAt).toBeInstanceOf(Date);
  });

  it('a workflow runner state on the message wins over the implied pair', () => {
    const runs = new RunStates();
    const run = runs.apply(lifecycle('start_run', '8', { state: 'run', substate: 'calib' }));
    expect([run?.state, run?.substate]).toEqual(['run', 'calib']);
    expect(runs.gate(stf('8'), true)).toEqual({ sample: false, reason: 'run 8 is run/calib' });
  });

  it('gates sampling on run/physics, the STF own state first, and samples when nothing is known', () => {
    const runs = new RunStates();
    expect(runs.gate(stf('9'), true)).toEqual({ sample: true, reason: 'run state unknown' });
    runs.apply(lifecycle('run_imminent', '9'));
    expect(runs.gate(stf('9'), true)).toEqual({ sample: false, reason: 'run 9 is beam/not_ready' });
    expect(runs.gate(stf('9', { state: 'run', substate: 'physics' }), true).sample).toBe(true);
    expect(runs.gate(stf('9'), false)).toEqual({ sample: true, reason: 'sampling in every state' });
    runs.apply(lifecycle('start_run', '9'));
    expect(runs.gate(stf('9'), true).sample).toBe(true);
    expect(runs.gate(stf('9', { substate: 'standby' }), true)).toEqual({
      sample: false,
      reason: 'stf_ready is ?/standby',
    });
  });

  it('STFs before run_imminent create the run unannounced; run_imminent keeps what they counted', () => {
    const runs = new RunStates();
    const early = runs.getOrCreate('10');
    expect(early).toMatchObject({ announced: false, phase: 'imminent', state: null });
    if (!early) throw new Error('run 10 refused');
    expect(runs.noteStf(early, 'swf.10.000001.stf')).toBe(true);
    runs.record('10', tallyOf({ stfsReceived: 1, stfsSampled: 1 }));
    const announced = runs.apply(lifecycle('run_imminent', '10'));
    expect(announced).toBe(early);
    expect(announced).toMatchObject({
      announced: true,
      stfsSeen: 1,
      counts: { stfsReceived: 1, stfsSampled: 1 },
    });
  });

  it('counts distinct STFs once, and tells an STF after the final status from a redelivered one', () => {
    const runs = new RunStates();
    const run = runs.apply(lifecycle('start_run', '11', { totalStfFiles: 2 }));
    if (!run) throw new Error('run 11 refused');
    expect(runs.noteStf(run, 'a.stf')).toBe(true);
    expect(runs.noteStf(run, 'a.stf')).toBe(false);
    runs.apply(lifecycle('end_run', '11', { totalStfFiles: 2 }));
    expect(run).toMatchObject({ stfsSeen: 1, expectedStfs: 2, finalSent: false });
    runs.markFinal(run);
    expect(runs.noteStf(run, 'b.stf') && run.finalSent).toBe(true);
    expect(runs.noteStf(run, 'b.stf')).toBe(false);
    runs.countLate('11');
    expect(run.counts.stfsLate).toBe(1);
    expect(runs.totals.stfsLate).toBe(1);
  });

  it('wakes whoever waits for the next STF of a run', async () => {
    const runs = new RunStates();
    const run = runs.getOrCreate('12');
    if (!run) throw new Error('run 12 refused');
    const next = runs.nextStf('12');
    runs.noteStf(run, 'x.stf');
    await expect(next).resolves.toBeUndefined();
  });
});

describe('run bookkeeping', () => {
  it('records counts, error codes and sample sizes of a run; totals include STFs of no run', () => {
    const runs = new RunStates();
    runs.getOrCreate('20');
    runs.record('20', tallyOf({ stfsReceived: 1, stfsSampled: 1, tfsRegistered: 2 }, [], [0, 5000]));
    runs.record('20', tallyOf({ stfsReceived: 1, stfsFailed: 1 }, ['STF_TRUNCATED']));
    runs.record('20', tallyOf({ stfsReceived: 1, tfsFailed: 2 }, ['MONITOR_REJECTED', 'MONITOR_REJECTED']));
    runs.record(null, tallyOf({ stfsReceived: 1, stfsSampled: 1 }, ['STF_EMPTY'], [10]));
    runs.countAttempt('20');
    runs.countAttempt(null);

    const run = runs.get('20');
    expect(run?.counts).toMatchObject({
      stfsReceived: 3,
      stfsSampled: 1,
      stfsFailed: 1,
      tfsRegistered: 2,
      tfsFailed: 2,
      stfAttempts: 1,
    });
    expect(run?.errors).toEqual({ STF_TRUNCATED: 1, MONITOR_REJECTED: 2 });
    const histogram = SIZE_EDGES.map(() => 0);
    histogram[0] = 1; // 0 bytes
    histogram[3] = 1; // 5000 bytes: 4 KiB ≤ n < 8 KiB
    expect(run?.sizeHistogram).toEqual(histogram);
    expect(runs.totals).toMatchObject({ stfsReceived: 4, stfsSampled: 2, stfAttempts: 2 });
  });

  it('takes a superseded attempt back once: its counts, its error codes and its sizes', () => {
    const runs = new RunStates();
    runs.getOrCreate('21');
    const first = tallyOf({ stfsReceived: 1, stfsSampled: 1, tfsFailed: 1 }, ['MONITOR_UNAVAILABLE'], [2048]);
    runs.record('21', first);
    runs.takeBack('21', first);
    runs.takeBack('21', first);
    runs.record('21', tallyOf({ stfsReceived: 1, stfsSampled: 1 }, [], [2048]));

    const run = runs.get('21');
    expect(run?.counts).toMatchObject({ stfsReceived: 1, stfsSampled: 1, tfsFailed: 0 });
    expect(run?.errors).toEqual({});
    expect(run?.sizeHistogram.reduce((a, b) => a + b, 0)).toBe(1);
    expect(runs.totals).toMatchObject({ stfsReceived: 1, tfsFailed: 0 });
  });

  it('a run refused at the cap gets no per-run counts, but the totals count its STFs', () => {
    const runs = new RunStates({ maxRuns: 1 });
    runs.getOrCreate('22');
    expect(runs.getOrCreate('23')).toBeNull();
    runs.countAttempt('23');
    runs.record('23', tallyOf({ stfsReceived: 1 }, ['STF_EMPTY']));
    expect(runs.get('23')).toBeUndefined();
    expect(runs.totals).toMatchObject({ stfsReceived: 1, stfAttempts: 1 });
  });

  it('a run_imminent after end_run starts the bookkeeping afresh; the totals keep it', () => {
    const runs = new RunStates();
    runs.apply(lifecycle('start_run', '24'));
    runs.record('24', tallyOf({ stfsReceived: 2 }, ['STF_BAD_MAGIC'], [100]));
    runs.apply(lifecycle('end_run', '24', { totalStfFiles: 2 }));
    const again = runs.apply(lifecycle('run_imminent', '24'));
    expect(again).toMatchObject({ phase: 'imminent', expectedStfs: null, stfsSeen: 0, finalSent: false });
    expect(again?.counts.stfsReceived).toBe(0);
    expect(again?.errors).toEqual({});
    expect(again?.sizeHistogram.every((n) => n === 0)).toBe(true);
    expect(runs.totals.stfsReceived).toBe(2);
  });
});
