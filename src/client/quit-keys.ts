// The dashboard's keyboard: `q` quits, Ctrl+C stays a SIGINT (raw mode would otherwise swallow it).

export interface KeyInput {
  isTTY?: boolean;
  setRawMode?(mode: boolean): unknown;
  on(event: 'data', listener: (chunk: Buffer | string) => void): unknown;
  off(event: 'data', listener: (chunk: Buffer | string) => void): unknown;
  resume(): unknown;
  pause(): unknown;
}

/**
 * Reads single keys from a terminal: `q`/`Q` calls onQuit; Ctrl+C (byte 3, which raw mode delivers
 * as data instead of a signal) is turned back into SIGINT for the one signal handler. Not a TTY:
 * nothing is read (a pipe on stdin is not a keyboard). Returns the function that gives the terminal back.
 */
export function listenForQuit(input: KeyInput, onQuit: () => void): () => void {
  if (input.isTTY !== true || typeof input.setRawMode !== 'function') return () => {};
  const onData = (chunk: Buffer | string) => {
    const text = typeof chunk === 'string' ? chunk : chunk.toString('latin1');
    if (text.includes('\x03')) process.kill(process.pid, 'SIGINT');
    else if (/[qQ]/.test(text)) onQuit();
  };
  input.setRawMode(true);
  input.on('data', onData);
  input.resume();
  return () => {
    input.off('data', onData);
    input.setRawMode?.(false);
    input.pause();
  };
}
