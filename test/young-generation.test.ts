import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const module = path.resolve('dist/src/ops/young-generation.js');

/**
 * New space's size (MB) in a fresh Node.js after keeping many young objects alive, as loading
 * modules does: `tuned` imports the CLI's young-generation module first, `grown` then lets it grow.
 */
function newSpaceMb(nodeArgs: string[], tuned: boolean, grown = false): number {
  const script = `
    ${tuned ? `const young = await import(${JSON.stringify(module)});` : ''}
    ${grown ? 'young.letYoungGenerationGrow();' : ''}
    const v8 = await import('node:v8');
    const kept = new Array(50000);
    for (let i = 0; i < 400000; i++) kept[i % kept.length] = { i, s: 'x' + i };
    const space = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
    console.log(space.space_size / 2 ** 20);`;
  const out = execFileSync(process.execPath, [...nodeArgs, '--input-type=module', '-e', script], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH },
  });
  return Number(out.trim());
}

describe("the CLI's young generation", () => {
  it('stays at its initial size while modules load, where V8 alone would grow it', () => {
    expect(newSpaceMb([], false)).toBeGreaterThan(2);
    expect(newSpaceMb([], true)).toBeLessThanOrEqual(2);
  });

  it('grows as V8 grows it once the modules are loaded', () => {
    expect(newSpaceMb([], true, true)).toBeGreaterThan(2);
  });

  it("is left to the operator's own semi-space flag", () => {
    expect(newSpaceMb(['--max-semi-space-size=8'], true)).toBeGreaterThan(2);
  });
});
