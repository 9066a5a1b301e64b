// Directories as an input: one scan (`scan`), or a scan then new files until stopped (`watch`, agent.mode continuous).

import type { ScanContext } from './scan.js';
import { scanOnce } from './scan.js';
import { DirectoryWatcher } from './watch.js';

export type DirectoryMode = 'scan' | 'watch';

/**
 * Feeds the files of `dirs` to the scheduler. A scan resolves when every accepted file is handled;
 * a watch runs until `stopped` resolves, then stops watching and waits for the files in hand.
 */
export async function feedDirectories(
  mode: DirectoryMode,
  dirs: string[],
  ctx: ScanContext,
  stopped: Promise<unknown>,
): Promise<void> {
  if (mode === 'scan') {
    await scanOnce(dirs, ctx);
    return;
  }
  const watcher = new DirectoryWatcher(dirs, ctx);
  await watcher.start();
  ctx.logger.info({ dirs }, 'initial scan done; watching for new STFs');
  await stopped;
  await watcher.close();
}
