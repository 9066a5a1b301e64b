// Help and documentation text generated from the configuration table, so they cannot drift apart.

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
