// The configuration reference generated from the key table, so the docs cannot drift from the code.

import { readFileSync, writeFileSync } from 'node:fs';
import { KEYS, type KeySpec } from '../config/keys.js';

/** A default as help and docs show it. */
export function shownDefault(spec: KeySpec): string {
  if (Array.isArray(spec.default)) return spec.default.length ? spec.default.join(',') : '(none)';
  if (spec.default === '') return '(empty)';
  return String(spec.default);
}

/** docs/configuration.md's table (a test checks that the page carries it unchanged). */
export function configMarkdown(): string {
  const rows = KEYS.map((k) => {
    const cell = (s: string) => s.replace(/\|/g, '\\|');
    return `| \`${k.key}\` | ${k.env ? `\`${k.env}\`` : ''} | ${k.flag ? `\`--${k.flag}\`` : ''} | \`${cell(shownDefault(k))}\` | ${cell(k.doc)} |`;
  });
  return ['| key (TOML) | environment | flag | default | meaning |', '|---|---|---|---|---|', ...rows].join(
    '\n',
  );
}

/** Replaces the table between the config-table markers of a Markdown file. */
export function writeConfigTable(file: string): void {
  const text = readFileSync(file, 'utf8');
  const start = text.indexOf('<!-- config-table');
  const end = text.indexOf('<!-- /config-table -->');
  if (start === -1 || end === -1) throw new Error(`${file} has no <!-- config-table --> markers`);
  const open = text.indexOf('\n', start) + 1;
  writeFileSync(file, `${text.slice(0, open)}${configMarkdown()}\n${text.slice(end)}`);
}
