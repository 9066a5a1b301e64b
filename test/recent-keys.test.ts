import { describe, expect, it } from 'vitest';
import { RecentKeys } from '../src/scheduler/recent-keys.js';

describe('the memory of recently completed STFs', () => {
  it('keeps the last N keys and forgets the oldest first, across many turns of the ring', () => {
    const recent = new RecentKeys(3);
    for (let i = 0; i < 10; i++) recent.add(`k${i}`);
    expect(recent.size).toBe(3);
    expect(['k6', 'k7', 'k8', 'k9'].map((k) => recent.has(k))).toEqual([false, true, true, true]);
    recent.add('k10');
    expect(recent.has('k7')).toBe(false);
    expect(recent.has('k10')).toBe(true);
  });

  it('does not count a key twice: remembering it again neither evicts nor moves it', () => {
    const recent = new RecentKeys(2);
    recent.add('a');
    recent.add('b');
    recent.add('a'); // already there: 'b' stays
    expect(recent.has('b')).toBe(true);
    recent.add('c'); // 'a' is still the oldest
    expect([recent.has('a'), recent.has('b'), recent.has('c')]).toEqual([false, true, true]);
  });

  it('remembers exactly its capacity after 100,000 keys beyond it', () => {
    const recent = new RecentKeys(1000);
    for (let i = 0; i < 101_000; i++) recent.add(`101993/swf.101993.${i}.stf`);
    expect(recent.size).toBe(1000);
    expect(recent.has('101993/swf.101993.99999.stf')).toBe(false);
    expect(recent.has('101993/swf.101993.100000.stf')).toBe(true);
    expect(recent.has('101993/swf.101993.100999.stf')).toBe(true);
  });

  it('agrees with a plain list of the last N keys over many turns, repeats and colliding slots included', () => {
    // A small table wraps often and its probe runs overlap, so removals move entries across its end.
    for (const capacity of [1, 5, 37, 256]) {
      const recent = new RecentKeys(capacity);
      const model: string[] = [];
      let seed = capacity;
      for (let i = 0; i < 20_000; i++) {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        // Keys from a pool about three times the capacity: many come back while still remembered.
        const key = `run${seed % 3}/swf.${(seed >>> 8) % (capacity * 3 + 1)}.stf`;
        expect(recent.has(key)).toBe(model.includes(key));
        recent.add(key);
        if (!model.includes(key)) {
          model.push(key);
          if (model.length > capacity) model.shift();
        }
        expect(recent.size).toBe(model.length);
      }
      for (const key of model) expect(recent.has(key)).toBe(true);
    }
  });

  it('refuses a capacity that is not a positive integer', () => {
    expect(() => new RecentKeys(0)).toThrow(/positive integer, got 0/);
  });
});
