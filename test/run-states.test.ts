import { describe, expect, it } from 'vitest';
import type { RunLifecycle } from '../src/messaging/codec.js';
import { RunStates } from '../src/run/run-states.js';

function lifecycle(msgType: RunLifecycle['msgType'], runId: string): RunLifecycle {
  return {
    msgType,
    runId,
    executionId: null,
    namespace: null,
    state: null,
    substate: null,
    totalStfFiles: null,
  };
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
    if (quiet) quiet.counts.stfsSampled = 4;
    const back = runs.getOrCreate('1', null, null, t0 + 2000);
    expect(back).toMatchObject({ phase: 'physics', timedOut: false });
    expect(back?.counts.stfsSampled).toBe(4);
    // A run_imminent after a timeout starts the run afresh, as after end_run.
    runs.expireIdle(t0 + 5000);
    expect(runs.apply(lifecycle('run_imminent', '1'))?.counts.stfsSampled).toBe(0);
  });
});
