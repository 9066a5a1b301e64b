// Runs the built `swf-fastmon` as an operator would: its own process, an environment of its own.

import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const CLI = path.join(ROOT, 'dist/src/cli.js');

export interface Started {
  proc: ChildProcess;
  /** Everything written so far. */
  out: { stdout: string; stderr: string };
  exited: Promise<number | null>;
}

/** Exactly `env` (plus PATH): nothing leaks in from the test runner's environment. */
export function startCli(args: string[], env: Record<string, string> = {}, cwd = ROOT): Started {
  const proc = spawn(process.execPath, [CLI, ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? '', ...env },
  });
  const out = { stdout: '', stderr: '' };
  proc.stdout?.on('data', (d) => {
    out.stdout += d;
  });
  proc.stderr?.on('data', (d) => {
    out.stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => proc.on('close', (code) => resolve(code)));
  return { proc, out, exited };
}
