// ANSI styling and width arithmetic for the terminal views: colour only when asked, widths that ignore escapes.

export type Style = 'green' | 'yellow' | 'blue' | 'red' | 'magenta' | 'cyan' | 'bold' | 'dim' | 'inverse';

const CODES: Record<Style, string> = {
  green: '32',
  yellow: '33',
  blue: '34',
  red: '31',
  magenta: '35',
  cyan: '36',
  bold: '1',
  dim: '2',
  inverse: '7',
};

export function paint(text: string, style: Style | null, color: boolean): string {
  if (!color || style === null || text === '') return text;
  return `\x1b[${CODES[style]}m${text}\x1b[0m`;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI CSI sequences start with ESC
const CSI = /\x1b\[[0-9;?]*[ -/]*[@-~]/g;

const CSI_AT = new RegExp(CSI.source, 'y');

export function stripAnsi(s: string): string {
  return s.replace(CSI, '');
}

/** Visible width in terminal cells; every code point counts one (the views print no wide characters of their own). */
export function visibleWidth(s: string): number {
  let n = 0;
  for (const _ of stripAnsi(s)) n++;
  return n;
}

/** Cuts to `width` visible cells, ending with '…' when something was cut, and closes any open style. */
export function truncate(s: string, width: number): string {
  if (width <= 0) return '';
  if (visibleWidth(s) <= width) return s;
  let out = '';
  let cells = 0;
  let styled = false;
  let i = 0;
  while (i < s.length && cells < width - 1) {
    if (s[i] === '\x1b') {
      CSI_AT.lastIndex = i;
      const m = CSI_AT.exec(s);
      if (m) {
        out += m[0];
        styled = true;
        i += m[0].length;
        continue;
      }
    }
    const ch = String.fromCodePoint(s.codePointAt(i)!);
    out += ch;
    i += ch.length;
    cells++;
  }
  return `${out}…${styled ? '\x1b[0m' : ''}`;
}

export function padEnd(s: string, width: number): string {
  const w = visibleWidth(s);
  return w >= width ? truncate(s, width) : s + ' '.repeat(width - w);
}

export function padStart(s: string, width: number): string {
  const w = visibleWidth(s);
  return w >= width ? truncate(s, width) : ' '.repeat(width - w) + s;
}
