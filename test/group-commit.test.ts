// Group commit: what decides when a batch is written, and what a failure of one batch touches.

import { describe, expect, it, vi } from 'vitest';
import { GroupCommit, type ItemResult, Lanes } from '../src/sinks/group-commit.js';

function recorder(delayMs = 5, fail?: (items: number[]) => unknown) {
  const batches: number[][] = [];
  let writing = 0;
  let maxWriting = 0;
  const write = async (items: number[]): Promise<ItemResult<number>[]> => {
    batches.push(items);
    writing++;
    maxWriting = Math.max(maxWriting, writing);
    await new Promise((r) => setTimeout(r, delayMs));
    writing--;
    const error = fail?.(items);
    if (error) throw error;
    return items.map((i) =>
      i < 0 ? { ok: false, error: new Error(`bad ${i}`) } : { ok: true, value: i * 10 },
    );
  };
  return { batches, write, maxWriting: () => maxWriting };
}

describe('group commit', () => {
  it('writes the items added in one turn together, after the delay, and resolves each with its own result', async () => {
    const r = recorder();
    const gc = new GroupCommit({ write: r.write, maxItems: 100, maxDelayMs: 3, concurrency: 2 });
    const results = await Promise.all([1, 2, 3, 4, 5, 6, 7].map((i) => gc.add(i)));
    expect(results).toEqual([10, 20, 30, 40, 50, 60, 70]);
    expect(r.batches).toEqual([[1, 2, 3, 4, 5, 6, 7]]);
  });

  it('writes a full batch at once and never more than maxItems in one', async () => {
    const r = recorder();
    const gc = new GroupCommit({ write: r.write, maxItems: 4, maxDelayMs: 10_000, concurrency: 1 });
    const all = Promise.all(Array.from({ length: 10 }, (_, i) => gc.add(i)));
    await gc.drain();
    await all;
    expect(r.batches.map((b) => b.length)).toEqual([4, 4, 2]);
  });

  it('lets items gather while every writer is busy, so batches grow with the load', async () => {
    const r = recorder(20);
    const gc = new GroupCommit({ write: r.write, maxItems: 1000, maxDelayMs: 0, concurrency: 1 });
    const pending: Promise<number>[] = [gc.add(0)];
    for (let i = 1; i <= 30; i++) {
      await new Promise((res) => setTimeout(res, 1));
      pending.push(gc.add(i));
    }
    await Promise.all(pending);
    expect(r.maxWriting()).toBe(1);
    expect(r.batches.length).toBeLessThan(10);
    expect(r.batches.flat()).toEqual(Array.from({ length: 31 }, (_, i) => i));
  });

  it('fails only the items the writer says failed, and a thrown batch only its own items', async () => {
    const r = recorder(5, (items) => (items.includes(99) ? new Error('connection lost') : undefined));
    const gc = new GroupCommit({ write: r.write, maxItems: 3, maxDelayMs: 1, concurrency: 2 });
    const settled = await Promise.allSettled([1, -2, 3, 99, 5, 6].map((i) => gc.add(i)));
    expect(settled.map((s) => s.status)).toEqual([
      'fulfilled',
      'rejected',
      'fulfilled',
      'rejected',
      'rejected',
      'rejected',
    ]);
    expect(String((settled[1] as PromiseRejectedResult).reason)).toMatch(/bad -2/);
    expect(String((settled[3] as PromiseRejectedResult).reason)).toMatch(/connection lost/);
    expect(gc.stats).toEqual({ batches: 2, items: 6 });
  });

  it('group commits sharing lanes never write more batches at once than there are lanes, and cut a batch only when one is free', async () => {
    const lanes = new Lanes(1);
    let writing = 0;
    let maxWriting = 0;
    const batches: string[][] = [];
    const release: Array<() => void> = [];
    // Each batch is written until the test releases it: no timing involved.
    const write = async (items: string[]): Promise<ItemResult<string>[]> => {
      batches.push(items);
      maxWriting = Math.max(maxWriting, ++writing);
      await new Promise<void>((r) => release.push(r));
      writing--;
      return items.map((value) => ({ ok: true, value }));
    };
    const turn = () => new Promise((r) => setImmediate(r));
    const samples = new GroupCommit({ write, maxItems: 100, maxDelayMs: 0, concurrency: lanes });
    const lookups = new GroupCommit({ write, maxItems: 100, maxDelayMs: 0, concurrency: lanes });
    const pending = [samples.add('s0')];
    await vi.waitFor(() => expect(batches).toHaveLength(1));
    // While the samples' batch holds the only lane, lookups arrive one turn after another.
    for (let i = 1; i <= 5; i++) {
      pending.push(lookups.add(`l${i}`));
      await turn();
    }
    pending.push(samples.add('s1'));
    await turn();
    expect(batches).toHaveLength(1);
    release.shift()?.();
    // The lane goes to the other group commit first (round robin), which writes all it gathered.
    await vi.waitFor(() => expect(batches).toHaveLength(2));
    release.shift()?.();
    await vi.waitFor(() => expect(batches).toHaveLength(3));
    release.shift()?.();
    expect(await Promise.all(pending)).toEqual(['s0', 'l1', 'l2', 'l3', 'l4', 'l5', 's1']);
    expect(batches).toEqual([['s0'], ['l1', 'l2', 'l3', 'l4', 'l5'], ['s1']]);
    expect(maxWriting).toBe(1);
  });
});
