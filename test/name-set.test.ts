import { describe, expect, it } from 'vitest';
import { NameSet } from '../src/run/name-set.js';

describe('NameSet (a run’s STF names as fingerprints)', () => {
  it('takes a name as new once, and again after many others made the table grow', () => {
    const names = new NameSet();
    expect(names.add('swf.107000.000001.stf')).toBe(true);
    expect(names.add('swf.107000.000001.stf')).toBe(false);
    for (let i = 2; i <= 5000; i++) names.add(`swf.107000.${String(i).padStart(6, '0')}.stf`);
    expect(names.add('swf.107000.000001.stf')).toBe(false);
    expect(names.size).toBe(5000);
  });

  it('tells apart 400,000 names that differ in one digit, in any position', () => {
    const names = new NameSet();
    const all: string[] = [];
    // The DAQ's names: a run number and a sequence number, so neighbours differ in their last digits;
    // the run numbers vary the other positions.
    for (let run = 0; run < 4; run++) {
      for (let i = 0; i < 100_000; i++)
        all.push(`swf.${100000 + run * 11}.${String(i).padStart(6, '0')}.stf`);
    }
    expect(all.filter((name) => names.add(name)).length).toBe(all.length);
    expect(all.filter((name) => names.add(name)).length).toBe(0);
    expect(names.size).toBe(all.length);
  });

  it('tells apart names with characters outside ASCII and the empty name', () => {
    const names = new NameSet();
    for (const name of ['', 'é', 'e\u0301', '测试.stf', '\u{1F600}.stf', 'a', 'b'])
      expect(names.add(name)).toBe(true);
    expect(names.add('测试.stf')).toBe(false);
  });
});
