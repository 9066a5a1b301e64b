// Watch mode: an initial scan, then change events (@parcel/watcher) and periodic rescans, complete files only.

import { stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type watcher from '@parcel/watcher';
import { messageOf, SKIP_REASONS } from '../errors.js';
import { handleFile, isUnchanged, type ScanContext, scanOnce } from './scan.js';
import { compilePatterns, inShard, parseShard, withinLookback } from './select.js';
import { walk } from './walk.js';

interface Root {
  dir: string;
  subscription: watcher.AsyncSubscription | null;
  /** Inode of the directory when subscribed: a deleted and recreated directory has another. */
  ino: number | null;
}

/**
 * A file is taken only once it is complete: the writer renamed it into place (temporary names
 * never match the patterns) or its size and mtime stayed the same for `settle_ms`. Change events
 * make pick-up quick; the rescan every `poll_interval_s` makes it certain, on NFS and other
 * filesystems where events do not fire, and after the watched directory was deleted and recreated.
 */
export class DirectoryWatcher {
  private readonly roots: Root[];
  private readonly match: (name: string) => boolean;
  private readonly shard: ReturnType<typeof parseShard> | null;
  /** Files waiting to settle or being handled: each is handled once at a time. */
  private readonly busy = new Set<string>();
  private readonly work = new Set<Promise<void>>();
  private readonly abort = new AbortController();
  private poller: Promise<void> | null = null;

  constructor(
    dirs: string[],
    private readonly ctx: ScanContext,
  ) {
    this.roots = dirs.map((dir) => ({ dir, subscription: null, ino: null }));
    this.match = compilePatterns(ctx.config.scan.patterns);
    this.shard = ctx.config.scan.shard ? parseShard(ctx.config.scan.shard) : null;
  }

  async start(): Promise<void> {
    await this.resubscribe();
    await scanOnce(
      this.roots.map((r) => r.dir),
      { ...this.ctx, signal: this.abort.signal },
    );
    this.poller = this.poll();
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.poller;
    for (const root of this.roots) await root.subscription?.unsubscribe().catch(() => {});
    while (this.work.size > 0) await Promise.all(this.work);
  }

  private async poll(): Promise<void> {
    const intervalMs = this.ctx.config.scan.pollIntervalS * 1000;
    while (!this.abort.signal.aborted) {
      try {
        await sleep(intervalMs, undefined, { signal: this.abort.signal });
      } catch {
        return;
      }
      await this.resubscribe();
      try {
        for await (const entry of walk(
          this.roots.map((r) => r.dir),
          { recursive: this.ctx.config.scan.recursive, match: this.match, signal: this.abort.signal },
        )) {
          if (entry.kind === 'file') this.candidate(entry.path, entry.relative);
        }
      } catch (err) {
        if (!this.abort.signal.aborted)
          this.ctx.logger.warn({ err: { message: messageOf(err) } }, 'rescan failed');
      }
    }
  }

  /** (Re)subscribes to change events where a directory appeared, or was recreated since. */
  private async resubscribe(): Promise<void> {
    if (!this.ctx.config.scan.nativeWatcher) return;
    for (const root of this.roots) {
      const info = await stat(root.dir).catch(() => null);
      if (info?.ino === root.ino && root.subscription) continue;
      await root.subscription?.unsubscribe().catch(() => {});
      root.subscription = null;
      root.ino = null;
      if (!info?.isDirectory()) {
        this.ctx.logger.warn({ dir: root.dir }, 'watched directory is missing; waiting for it to come back');
        continue;
      }
      try {
        // Loaded here: a native addon that only `watch` uses (the agent and `scan` never do).
        const { subscribe } = (await import('@parcel/watcher')).default;
        root.subscription = await subscribe(root.dir, (err, events) => {
          if (err) {
            this.ctx.logger.warn(
              { dir: root.dir, err: { message: messageOf(err) } },
              'change events failed; polling',
            );
            return;
          }
          for (const event of events) {
            if (event.type === 'delete') continue;
            const relative = path.relative(root.dir, event.path);
            if (!this.ctx.config.scan.recursive && relative.includes(path.sep)) continue;
            this.candidate(event.path, relative);
          }
        });
        root.ino = info.ino;
      } catch (err) {
        this.ctx.logger.warn(
          { dir: root.dir, err: { message: messageOf(err) } },
          'cannot watch for changes; polling only',
        );
      }
    }
  }

  private candidate(file: string, relative: string): void {
    if (this.busy.has(file) || this.abort.signal.aborted) return;
    if (!this.match(path.basename(file))) return;
    if (this.shard && !inShard(relative, this.shard)) return;
    this.busy.add(file);
    const work = this.settle(file).finally(() => this.busy.delete(file));
    this.work.add(work);
    void work.finally(() => this.work.delete(work));
  }

  /** Waits until the file stops changing, then hands it over once. */
  private async settle(file: string): Promise<void> {
    let before = await stat(file).catch(() => null);
    for (;;) {
      if (!before?.isFile()) return; // gone, or not a file
      if (isUnchanged(this.ctx.ledger, file, before.size, before.mtimeMs)) return;
      try {
        await sleep(this.ctx.config.scan.settleMs, undefined, { signal: this.abort.signal });
      } catch {
        return;
      }
      const after = await stat(file).catch(() => null);
      if (after && after.size === before.size && after.mtimeMs === before.mtimeMs) break;
      before = after;
    }
    if (before.size === 0) {
      this.ctx.counts.unreadable++;
      this.ctx.logger.warn(
        { path: file, code: SKIP_REASONS.ZERO_BYTE, reason: 'ZERO_BYTE' },
        'file skipped: zero bytes',
      );
      return;
    }
    if (!withinLookback(before.mtimeMs, Date.now(), this.ctx.config.scan.lookbackMinutes)) {
      this.ctx.counts.old++;
      return;
    }
    this.ctx.counts.seen++;
    await handleFile({ path: file, size: before.size, mtimeMs: before.mtimeMs, local: false }, this.ctx);
  }
}
