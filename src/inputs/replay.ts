// Replay as an input: the messages of a JSON-lines file, each handled as if it had come from the broker.

import { createReadStream } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Scheduler } from '../scheduler/scheduler.js';
import type { MessageIntake } from './messages.js';

/**
 * Each non-empty line not starting with `#` is one message body, handled exactly as if it had
 * come from the broker. Reading pauses while twice `maxInFlight` STFs are queued, so a long
 * file is replayed in bounded memory.
 */
export async function replayFile(
  intake: MessageIntake,
  scheduler: Pick<Scheduler, 'inFlight' | 'queued'>,
  file: string,
  maxQueued: number,
  signal?: AbortSignal,
): Promise<number> {
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  const pending = new Set<Promise<unknown>>();
  const name = path.basename(file);
  let number = 0;
  let messages = 0;
  for await (const line of lines) {
    // A stop signal ends the reading; what was handed over is drained by the agent's stop().
    if (signal?.aborted) break;
    number++;
    const text = line.trim();
    if (text === '' || text.startsWith('#')) continue;
    messages++;
    const work = intake.handleMessage(text, `${name}:${number}`);
    pending.add(work);
    void work.finally(() => pending.delete(work));
    while (scheduler.inFlight + scheduler.queued >= maxQueued && pending.size > 0)
      await Promise.race(pending);
  }
  await Promise.all(pending);
  return messages;
}
