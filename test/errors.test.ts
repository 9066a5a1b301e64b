import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { codeInfo, ErrorCodes, isInputFault, isRetryable, SKIP_REASONS } from '../src/errors.js';

const OPERATIONS = path.resolve(import.meta.dirname, '../docs/operations.md');

/** The rows of the "Error codes" table in docs/operations.md: code → [retryable, input fault]. */
function documentedCodes(): Map<string, [string, string]> {
  const text = readFileSync(OPERATIONS, 'utf8');
  const section = text.slice(
    text.indexOf('## Error codes'),
    text.indexOf('\n## ', text.indexOf('## Error codes') + 1),
  );
  const rows = new Map<string, [string, string]>();
  for (const line of section.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    const code = /^`([A-Z_]+)`$/.exec(cells[1] ?? '')?.[1];
    if (code) rows.set(code, [cells[3] as string, cells[4] as string]);
  }
  return rows;
}

describe('error catalogue', () => {
  it('docs/operations.md lists every code with the retryable and input-fault columns of the catalogue', () => {
    const documented = documentedCodes();
    expect([...documented.keys()].sort()).toEqual(Object.keys(ErrorCodes).sort());
    for (const [code, [retryable, inputFault]] of documented) {
      const info = codeInfo(code);
      expect([code, retryable, inputFault]).toEqual([
        code,
        info?.retryable ? 'yes' : 'no',
        info?.inputFault ? 'yes' : 'no',
      ]);
    }
  });

  it('no code is both retryable and an input fault, and strings outside the catalogue are neither', () => {
    for (const code of Object.keys(ErrorCodes)) expect(isRetryable(code) && isInputFault(code)).toBe(false);
    for (const foreign of ['ENOSPC', 'OUTBOX_SOMETHING', 'STF_', '', 'toString', '__proto__']) {
      expect([foreign, isRetryable(foreign), isInputFault(foreign)]).toEqual([foreign, false, false]);
    }
  });

  it('files every scan skip reason under a catalogue code for an input fault', () => {
    for (const [reason, code] of Object.entries(SKIP_REASONS)) {
      expect([reason, isInputFault(code)]).toEqual([reason, true]);
    }
  });
});
