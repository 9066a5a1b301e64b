import { afterEach, describe, expect, it } from 'vitest';
import { interruptedCode, onStopSignals, type Stopping } from '../src/cli/signals.js';

// SIGUSR2 stands in for SIGINT/SIGTERM: emitting it runs the handlers without touching the test runner.
const SIGNAL = 'SIGUSR2' as const;

describe('the stop signal handling every command uses', () => {
  let stopping: Stopping | null = null;
  afterEach(() => stopping?.dispose());

  it('aborts and resolves at the first signal, and exits 1 at the second', async () => {
    const exits: number[] = [];
    const notes: string[] = [];
    stopping = onStopSignals({
      graceMs: 60_000,
      signals: [SIGNAL],
      notify: (t) => notes.push(t),
      exit: (code) => exits.push(code),
    });
    expect(stopping.signal.aborted).toBe(false);
    process.emit(SIGNAL, SIGNAL);
    expect(await stopping.received).toBe(SIGNAL);
    expect(stopping.signal.aborted).toBe(true);
    expect(stopping.name).toBe(SIGNAL);
    expect(exits).toEqual([]);
    process.emit(SIGNAL, SIGNAL);
    expect(exits).toEqual([1]);
    expect(notes).toEqual([`second signal (${SIGNAL}): exiting now`]);
  });

  it('exits 1 by itself when the graceful stop outlasts its bound', async () => {
    const exits: number[] = [];
    stopping = onStopSignals({
      graceMs: 50,
      signals: [SIGNAL],
      notify: () => {},
      exit: (c) => exits.push(c),
    });
    process.emit(SIGNAL, SIGNAL);
    await new Promise((r) => setTimeout(r, 150));
    expect(exits).toEqual([1]);
  });

  it('leaves signals alone once disposed, and names the shell codes of interrupted jobs', () => {
    stopping = onStopSignals({ graceMs: 50, signals: [SIGNAL], notify: () => {} });
    const before = process.listenerCount(SIGNAL);
    stopping.dispose();
    expect(process.listenerCount(SIGNAL)).toBe(before - 1);
    expect([interruptedCode('SIGINT'), interruptedCode('SIGTERM'), interruptedCode('SIGQUIT')]).toEqual([
      130, 143, 131,
    ]);
  });
});
