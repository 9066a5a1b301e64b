// Help and documentation text generated from the configuration table, so they cannot drift apart.

import { readFileSync, writeFileSync } from 'node:fs';
import { KEYS, type KeySpec } from '../config/keys.js';

function shownDefault(spec: KeySpec): string {
  if (Array.isArray(spec.default)) return spec.default.length ? spec.default.join(',') : '(none)';
  if (spec.default === '') return '(empty)';
  return String(spec.default);
}

export function configHelp(): string {
  return `${KEYS.map((k) => {
    const flag = k.flag ? `--${k.flag}${k.type === 'bool' ? '' : ' VALUE'}` : '';
    const env = k.env ? ` [${k.env}]` : '';
    return `  ${flag.padEnd(34)}${k.doc} Default: ${shownDefault(k)}.${env}`;
  }).join('\n')}\n`;
}

/** The README's configuration table (a test checks that the README carries it unchanged). */
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
