// The ledger's in-memory table: keys in one byte arena, values in typed arrays, open addressing.

import type { LedgerRecord } from './ledger.js';
import { DEAD, NEWLINE, OUTCOME_BYTES, OUTCOMES, TAB, unescapeKey } from './ledger-format.js';

/**
 * The ledger in memory: canonical keys as UTF-8 in one byte arena, values in typed arrays, and a
 * linear-probing table of entry numbers. A Map<string, number> of a million 53-character keys added
 * ~180 MB to the RSS on Node 20 (a string and a map entry per key, plus GC headroom) and gives every
 * major GC a million objects to trace; this adds ~105 MB that the GC never looks into, and loading
 * makes no string per line.
 */
export class KeyIndex {
  arena: Buffer;
  private arenaUsed = 0;
  starts: Uint32Array;
  lengths: Uint32Array;
  private hashes: Uint32Array;
  sizes: Float64Array;
  mtimes: Float64Array;
  outcomes: Uint8Array;
  /** Entry numbers handed out, forgotten ones included: they are reclaimed by compacted(). */
  count = 0;
  live = 0;
  /** Entry number + 1 per slot, 0 when empty; at most half full, so every probe ends. */
  private slots: Int32Array;
  private scratch = Buffer.allocUnsafe(1024);

  constructor(entries = 1024, arenaBytes = entries * 64) {
    const capacity = 2 ** Math.ceil(Math.log2(Math.max(entries, 1024)));
    this.arena = Buffer.allocUnsafe(Math.max(arenaBytes, 1 << 16));
    this.starts = new Uint32Array(capacity);
    this.lengths = new Uint32Array(capacity);
    this.hashes = new Uint32Array(capacity);
    this.sizes = new Float64Array(capacity);
    this.mtimes = new Float64Array(capacity);
    this.outcomes = new Uint8Array(capacity);
    this.slots = new Int32Array(capacity * 2);
  }

  /** The entry number of a canonical key, or -1. */
  find(canonical: string): number {
    const length = this.encode(canonical);
    const slot = this.probe(this.scratch, 0, length, hashBytes(this.scratch, 0, length));
    return slot < 0 ? -1 : this.slots[slot]! - 1;
  }

  set(canonical: string, outcome: number, size: number, mtimeMs: number): void {
    this.setBytes(this.scratch, 0, this.encode(canonical), outcome, size, mtimeMs);
  }

  delete(canonical: string): void {
    this.deleteBytes(this.scratch, 0, this.encode(canonical));
  }

  setBytes(buf: Buffer, start: number, end: number, outcome: number, size: number, mtimeMs: number): void {
    const hash = hashBytes(buf, start, end);
    const slot = this.probe(buf, start, end, hash);
    const id = slot >= 0 ? this.slots[slot]! - 1 : this.append(buf, start, end, hash, ~slot);
    this.outcomes[id] = outcome;
    this.sizes[id] = size;
    this.mtimes[id] = mtimeMs;
  }

  deleteBytes(buf: Buffer, start: number, end: number): void {
    const slot = this.probe(buf, start, end, hashBytes(buf, start, end));
    if (slot < 0) return;
    this.outcomes[this.slots[slot]! - 1] = DEAD;
    this.live--;
    this.vacate(slot);
  }

  recordAt(id: number): LedgerRecord {
    return { size: this.sizes[id]!, mtimeMs: this.mtimes[id]!, outcome: OUTCOMES[this.outcomes[id]! - 1]! };
  }

  /** The entry's ledger line, as record() writes it, without a string per number (1M of them add up). */
  writeLine(id: number, to: Buffer, at: number): number {
    const name = OUTCOME_BYTES[this.outcomes[id]! - 1]!;
    const start = this.starts[id]!;
    at = copyBytes(name, 0, name.length, to, at);
    to[at++] = TAB;
    at = writeInteger(this.sizes[id]!, to, at);
    to[at++] = TAB;
    at += to.write(String(this.mtimes[id]), at, 'latin1');
    to[at++] = TAB;
    at = copyBytes(this.arena, start, start + this.lengths[id]!, to, at);
    to[at++] = NEWLINE;
    return at;
  }

  keyAt(id: number): string {
    const start = this.starts[id]!;
    return unescapeKey(this.arena.toString('utf8', start, start + this.lengths[id]!));
  }

  /** A copy without the forgotten entries (entry numbers change). */
  compacted(): KeyIndex {
    let bytes = 0;
    for (let id = 0; id < this.count; id++) if (this.outcomes[id] !== DEAD) bytes += this.lengths[id]!;
    const next = new KeyIndex(this.live, bytes);
    for (let id = 0; id < this.count; id++) {
      const outcome = this.outcomes[id]!;
      if (outcome === DEAD) continue;
      const start = this.starts[id]!;
      next.setBytes(this.arena, start, start + this.lengths[id]!, outcome, this.sizes[id]!, this.mtimes[id]!);
    }
    return next;
  }

  private encode(canonical: string): number {
    // UTF-8 needs at most 3 bytes per UTF-16 code unit.
    if (canonical.length * 3 > this.scratch.length) this.scratch = Buffer.allocUnsafe(canonical.length * 3);
    return this.scratch.write(canonical, 0, 'utf8');
  }

  /** The slot holding the key, or the complement (~) of the empty slot where it would go. */
  private probe(buf: Buffer, start: number, end: number, hash: number): number {
    const mask = this.slots.length - 1;
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      const held = this.slots[slot]!;
      if (held === 0) return ~slot;
      if (this.hashes[held - 1] === hash && this.keyEquals(held - 1, buf, start, end)) return slot;
    }
  }

  private keyEquals(id: number, buf: Buffer, start: number, end: number): boolean {
    if (this.lengths[id] !== end - start) return false;
    const at = this.starts[id]! - start;
    for (let i = start; i < end; i++) if (this.arena[at + i] !== buf[i]) return false;
    return true;
  }

  private append(buf: Buffer, start: number, end: number, hash: number, slot: number): number {
    if (this.count === this.outcomes.length) this.growEntries();
    const id = this.count++;
    this.starts[id] = this.store(buf, start, end);
    this.lengths[id] = end - start;
    this.hashes[id] = hash;
    this.slots[slot] = id + 1;
    this.live++;
    if (this.live * 2 > this.slots.length) this.growSlots();
    return id;
  }

  private store(buf: Buffer, start: number, end: number): number {
    const needed = this.arenaUsed + end - start;
    if (needed > this.arena.length) this.growArena(Math.max(this.arena.length * 2, needed));
    const at = this.arenaUsed;
    this.arenaUsed = copyBytes(buf, start, end, this.arena, at);
    return at;
  }

  private growArena(length: number): void {
    const arena = Buffer.allocUnsafe(length);
    this.arena.copy(arena, 0, 0, this.arenaUsed);
    this.arena = arena;
  }

  /**
   * Sizes the entry arrays and the arena for a load, so they are not copied again and again: pages that
   * stay unused are never touched, so they take no memory. Not the slots, which fill at random: a file
   * of mostly superseded lines would make them all resident.
   */
  reserve(entries: number, arenaBytes: number): void {
    if (entries > this.outcomes.length) this.growEntries(2 ** Math.ceil(Math.log2(entries)));
    if (arenaBytes > this.arena.length) this.growArena(arenaBytes);
  }

  private growEntries(capacity = this.outcomes.length * 2): void {
    this.starts = grown(this.starts, capacity);
    this.lengths = grown(this.lengths, capacity);
    this.hashes = grown(this.hashes, capacity);
    this.sizes = grown(this.sizes, capacity);
    this.mtimes = grown(this.mtimes, capacity);
    this.outcomes = grown(this.outcomes, capacity);
  }

  private growSlots(): void {
    const slots = new Int32Array(this.slots.length * 2);
    const mask = slots.length - 1;
    for (const held of this.slots) {
      if (held === 0) continue;
      let slot = this.hashes[held - 1]! & mask;
      while (slots[slot] !== 0) slot = (slot + 1) & mask;
      slots[slot] = held;
    }
    this.slots = slots;
  }

  /** Deletion without tombstones: later entries of the probe run move back into the hole they may use. */
  private vacate(slot: number): void {
    const mask = this.slots.length - 1;
    let hole = slot;
    for (let next = (slot + 1) & mask; this.slots[next] !== 0; next = (next + 1) & mask) {
      const held = this.slots[next]!;
      const home = this.hashes[held - 1]! & mask;
      if (((next - home) & mask) >= ((next - hole) & mask)) {
        this.slots[hole] = held;
        hole = next;
      }
    }
    this.slots[hole] = 0;
  }
}

/** Buffer.copy costs a view allocation per call; keys are short enough for a loop to win. */
function copyBytes(from: Buffer, start: number, end: number, to: Buffer, at: number): number {
  for (let i = start; i < end; i++) to[at++] = from[i]!;
  return at;
}

/** Digits of a non-negative safe integer, as String() prints them. */
function writeInteger(value: number, to: Buffer, at: number): number {
  let end = at + 1;
  for (let rest = value; rest >= 10; rest = Math.floor(rest / 10)) end++;
  for (let i = end - 1, rest = value; i >= at; i--, rest = Math.floor(rest / 10)) to[i] = 0x30 + (rest % 10);
  return end;
}

function grown<T extends Uint8Array | Uint32Array | Float64Array>(column: T, length: number): T {
  const next = new (column.constructor as new (length: number) => T)(length);
  next.set(column);
  return next;
}

/** FNV-1a, then murmur3's finalizer: the table indexes by the low bits, which FNV leaves weak. */
function hashBytes(buf: Buffer, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
