// How every command stops: the first SIGINT/SIGTERM/SIGQUIT asks for a graceful stop within a bound, a second exits 1.

export interface Stopping {
  /** Aborted at the first signal; its reason is the signal's name. */
  readonly signal: AbortSignal;
  /** Resolves with the signal's name at the first signal; never otherwise. */
  readonly received: Promise<NodeJS.Signals>;
  /** The first signal received, or null. */
  readonly name: NodeJS.Signals | null;
  /** Removes the handlers once the command is done (the bound, if running, stays armed). */
  dispose(): void;
}

export interface StopOptions {
  /** How long a graceful stop may take; past it the process exits 1 by itself. */
  graceMs: number;
  /** Told what happens ("second signal: exiting now"); a log line or a stderr line. */
  notify: (text: string) => void;
  /** SIGQUIT is supervisord's stop signal for testbed agents, hence in every command. */
  signals?: readonly NodeJS.Signals[];
  /** Tests replace the exit. */
  exit?: (code: number) => void;
}

/**
 * Installed once by each command before anything starts, so that no start-up step (a broker that
 * does not answer, a pool that is warming up) can swallow a signal: start-up awaits race against
 * `received`, and long loops watch `signal`. The bound is a timer that does not hold the process
 * open: a command that finishes in time exits normally, one stuck on a socket is ended.
 */
export function onStopSignals(options: StopOptions): Stopping {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const controller = new AbortController();
  let first: NodeJS.Signals | null = null;
  let resolveReceived!: (signal: NodeJS.Signals) => void;
  const received = new Promise<NodeJS.Signals>((resolve) => {
    resolveReceived = resolve;
  });
  const handler = (signal: NodeJS.Signals) => {
    if (first !== null) {
      options.notify(`second signal (${signal}): exiting now`);
      exit(1);
      return;
    }
    first = signal;
    const bound = setTimeout(() => {
      options.notify(`did not stop within ${(options.graceMs / 1000).toFixed(1)} s of ${signal}: exiting`);
      exit(1);
    }, options.graceMs);
    bound.unref();
    controller.abort(signal);
    resolveReceived(signal);
  };
  const signals = options.signals ?? (['SIGINT', 'SIGTERM', 'SIGQUIT'] as const);
  for (const s of signals) process.on(s, handler);
  return {
    signal: controller.signal,
    received,
    get name() {
      return first;
    },
    dispose() {
      for (const s of signals) process.off(s, handler);
    },
  };
}

/** Resolves with `work`'s value, or with null once a stop was asked for (the work is left to its abort). */
export async function unlessStopped<T>(work: Promise<T>, stopping: Stopping): Promise<T | null> {
  return Promise.race([work, stopping.received.then(() => null)]);
}

/** The shell's code for a job cut short by a signal (128 + its number), for commands that end by themselves. */
export function interruptedCode(signal: NodeJS.Signals): number {
  return signal === 'SIGINT' ? 130 : signal === 'SIGQUIT' ? 131 : 143;
}
