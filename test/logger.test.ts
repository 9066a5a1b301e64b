import { describe, expect, it } from 'vitest';
import { ProgressLine } from '../src/cli/progress.js';
import { createLogger } from '../src/log/logger.js';

/** A stream that keeps what is written to it; `tty` as a terminal's stderr would say. */
function sink(tty: boolean) {
  const chunks: string[] = [];
  const write = (text: string) => {
    chunks.push(text);
    return true;
  };
  return { stream: { write, isTTY: tty }, text: () => chunks.join('') };
}

describe('log lines', () => {
  it('on a terminal a record is one readable line with its fields; elsewhere it is JSON', () => {
    const terminal = sink(true);
    const onTerminal = createLogger({
      level: 'info',
      destination: new ProgressLine(terminal.stream).loggerStream(),
    });
    onTerminal.warn({ run: 101993, code: 'STF_HEADER_TRUNCATED' }, 'header cut short');
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the terminal's colour codes
    const plain = terminal.text().replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
    expect(plain.trim().split('\n')).toHaveLength(1);
    expect(plain).toMatch(/WARN.*header cut short.*run.*101993.*STF_HEADER_TRUNCATED/);
    expect(plain).not.toContain('{"level"');

    const piped = sink(false);
    expect(new ProgressLine(piped.stream).loggerStream()).toBeUndefined();
    createLogger({ level: 'info', destination: piped.stream }).warn({ run: 101993 }, 'header cut short');
    expect(JSON.parse(piped.text())).toMatchObject({ level: 'warn', run: 101993, msg: 'header cut short' });
  });
});
