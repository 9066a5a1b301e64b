import { describe, expect, it, vi } from 'vitest';
import { stripAnsi, visibleWidth } from '../src/client/ansi.js';
import { Dashboard, type DashboardOutput, renderDashboard } from '../src/client/dashboard.js';
import { formatLine, formatOther, useColor } from '../src/client/line.js';
import { type ClientMessage, ClientStats } from '../src/client/stats.js';
import { formatSummary } from '../src/client/summary.js';

const T0 = Date.UTC(2026, 10, 23, 14, 0, 0);

/** A clock the test moves by hand. */
function clock(start = T0) {
  const c = { t: start, now: () => c.t };
  return c;
}

function sample(
  run: string,
  stf: number,
  tf: number,
  size: number | null,
  status = 'registered',
): ClientMessage {
  const stem = `swf.${run}.${String(stf).padStart(6, '0')}`;
  return {
    msg_type: 'tf_file_registered',
    processed_by: 'fastmon-agent-test-1',
    run_id: run,
    execution_id: 'stf_datataking-test-0001',
    namespace: 'test',
    stf_filename: `${stem}.stf`,
    tf_file_id: `id-${run}-${stf}-${tf}`,
    tf_filename: `${stem}_tf_${String(tf).padStart(3, '0')}.tf`,
    tf_first: tf * 10,
    tf_last: tf * 10 + 9,
    tf_count: 10,
    file_size_bytes: size,
    status,
    timestamp: '2026-11-23T14:30:25.123000',
  };
}

/**
 * Run 100001: 3 STFs × 7 samples of 100,000 B, one failed, then completed. Run 100002 (an older sender's
 * run_number): 2 STFs × 5 samples of 2,000 B, one without a size; a summary reports outbox 4 and errors.
 * One sample a second from T0 + 1 s.
 */
function knownStream(): { stats: ClientStats; c: ReturnType<typeof clock> } {
  const c = clock();
  const stats = new ClientStats(c.now);
  for (let stf = 1; stf <= 3; stf++) {
    for (let tf = 1; tf <= 7; tf++) {
      c.t += 1000;
      stats.add(sample('100001', stf, tf, 100_000, stf === 2 && tf === 3 ? 'failed' : 'registered'));
    }
  }
  stats.add({
    msg_type: 'fastmon_status',
    processed_by: 'fastmon-agent-test-1',
    run_id: '100001',
    status: 'completed',
  });
  for (let stf = 1; stf <= 2; stf++) {
    for (let tf = 1; tf <= 5; tf++) {
      c.t += 1000;
      const m = sample('100002', stf, tf, stf === 2 && tf === 5 ? null : 2_000);
      delete m.run_id;
      m.run_number = 100002;
      stats.add(m);
    }
  }
  stats.add({
    msg_type: 'fastmon_summary',
    processed_by: 'fastmon-agent-test-1',
    run_id: '100002',
    cycle_s: 10,
    final: false,
    stfs_seen: 2,
    tf_files_registered: 10,
    bytes_sampled: 18_000,
    outbox_depth: 4,
    rates: { stfs_per_s: 0.2, tf_files_per_s: 1, bytes_per_s: 2000 },
    errors: { MONITOR_UNAVAILABLE: 2 },
  });
  return { stats, c };
}

describe('ClientStats', () => {
  it('counts samples, bytes, statuses and STFs per run from a known stream', () => {
    const { stats } = knownStream();
    expect(stats.samples).toBe(31);
    expect(stats.bytes).toBe(21 * 100_000 + 9 * 2_000);
    expect(stats.unsized).toBe(1);
    expect(Object.fromEntries(stats.byStatus)).toEqual({ registered: 30, failed: 1 });
    const runs = stats.runViews();
    expect(runs.map((r) => r.run)).toEqual(['100002', '100001']);
    const [r2, r1] = runs;
    expect(r1).toMatchObject({
      state: 'ended',
      stfs: 3,
      samples: 21,
      failed: 1,
      bytes: 2_100_000,
      meanSize: 100_000,
    });
    expect(r2).toMatchObject({
      state: 'active',
      stfs: 2,
      samples: 10,
      bytes: 18_000,
      minSize: 2_000,
      maxSize: 2_000,
    });
    expect(r2!.reported).toEqual({ tfFiles: 10, stfsSeen: 2, bytes: 18_000 });
    expect(stats.sizeSummary()).toEqual({ min: 2_000, mean: 2_118_000 / 30, max: 100_000, n: 30 });
  });

  it('keeps agent health from summaries, statuses and samples', () => {
    const { stats, c } = knownStream();
    const [agent] = stats.agentViews();
    expect(agent).toMatchObject({
      name: 'fastmon-agent-test-1',
      lastStatus: 'running',
      health: 'ok',
      outboxDepth: 4,
      errors: { MONITOR_UNAVAILABLE: 2 },
      samples: 31,
      failedSamples: 1,
    });
    c.t += 120_000;
    expect(stats.agentViews()[0]!.health).toBe('quiet');
    stats.add({
      msg_type: 'fastmon_status',
      processed_by: 'fastmon-agent-test-1',
      status: 'error',
      message: 'boom',
    });
    expect(stats.agentViews()[0]).toMatchObject({ health: 'error', lastMessage: 'boom' });
  });

  it('reports samples per second over the last minute, with the injected clock', () => {
    const c = clock();
    const stats = new ClientStats(c.now);
    // Two a second for a minute on run A.
    for (let k = 1; k <= 120; k++) {
      c.t = T0 + k * 500;
      stats.add(sample('A', Math.ceil(k / 7), k, 1000));
    }
    expect(stats.runViews()[0]!.rate).toBeCloseTo(2, 1);
    expect(stats.currentRate()).toBeCloseTo(2, 1);
    // A run first seen 10 s ago with 20 samples runs at 2/s, not 20/60.
    for (let k = 1; k <= 20; k++) {
      c.t = T0 + 60_000 + k * 500;
      stats.add(sample('B', 1, k, 1000));
    }
    expect(stats.runViews().find((r) => r.run === 'B')!.rate).toBeCloseTo(2, 0);
    // A minute later without samples: nothing now, and the run is idle.
    c.t += 61_000;
    const a = stats.runViews().find((r) => r.run === 'A')!;
    expect(a.rate).toBe(0);
    expect(a.state).toBe('idle');
    expect(stats.overallRate()).toBeCloseTo(140 / ((c.t - T0) / 1000), 5);
    // The 10-s series holds the last 10 minutes: 20 per bucket during the first minute.
    const series = stats.rateSeries();
    expect(series).toHaveLength(60);
    expect(series.reduce((x, y) => x + y, 0)).toBe(140);
    expect(Math.max(...series)).toBe(20);
  });

  it('stays bounded over 100,000 messages across 200 runs, with exact totals', () => {
    const c = clock();
    const stats = new ClientStats(c.now);
    let bytes = 0;
    for (let i = 0; i < 100_000; i++) {
      c.t += 10;
      const run = String(100_000 + Math.floor(i / 500));
      const size = 1000 + (i % 5000);
      bytes += size;
      const m = sample(run, i, 1, size, `status-${i % 40}`);
      m.processed_by = `agent-${i % 300}`;
      stats.add(m);
    }
    expect(stats.samples).toBe(100_000);
    expect(stats.bytes).toBe(bytes);
    const f = stats.footprint();
    expect(f.runs).toBe(50);
    expect(f.agents).toBeLessThanOrEqual(50);
    expect(f.statuses).toBeLessThanOrEqual(17);
    expect(stats.runsDropped).toBe(150);
    // The 50 kept are the most recent.
    expect(stats.runViews()[0]!.run).toBe('100199');
    expect(stats.runViews().at(-1)!.run).toBe('100150');
  });

  it('counts STFs approximately once a run has more names than it remembers', () => {
    const stats = new ClientStats(() => T0, { stfNamesPerRun: 100 });
    for (let stf = 1; stf <= 1000; stf++) for (let tf = 1; tf <= 7; tf++) stats.add(sample('R', stf, tf, 10));
    const [run] = stats.runViews();
    expect(run).toMatchObject({ stfs: 1000, stfsApproximate: true, samples: 7000 });
    expect(stats.footprint().stfNames).toBe(100);
  });

  it('never throws on garbage and ignores what it does not know', () => {
    const stats = new ClientStats(() => T0);
    const garbage: unknown[] = [
      {},
      { msg_type: 42 },
      { msg_type: 'tf_file_registered', file_size_bytes: 'big', run_id: { x: 1 }, stf_filename: [] },
      { msg_type: 'tf_file_registered', file_size_bytes: Number.NaN, status: null },
      { msg_type: 'tf_file_registered', file_size_bytes: -5 },
      { msg_type: 'fastmon_summary', errors: 'x', sample_size_histogram: { edges_bytes: 'a', counts: null } },
      {
        msg_type: 'fastmon_summary',
        run_id: 'S',
        sample_size_histogram: { edges_bytes: [0, 1024], counts: [1, 'x'] },
      },
      { msg_type: 'fastmon_status', status: 7, run_id: null },
      { msg_type: 'sse_test' },
      null,
      [1, 2],
    ];
    for (const m of garbage) stats.add(m as ClientMessage);
    expect(stats.samples).toBe(3);
    expect(stats.bytes).toBe(0);
    expect(stats.unsized).toBe(3);
    expect(stats.ignored).toBe(5);
    expect(() => formatSummary(stats, { color: true })).not.toThrow();
  });

  it('shows the agents’ summary histograms when it saw no sample sizes itself', () => {
    const stats = new ClientStats(() => T0);
    const h = { edges_bytes: [0, 1024, 2048, 4096], counts: [0, 3, 5, 1] };
    for (const run of ['1', '2']) {
      stats.add({ msg_type: 'fastmon_summary', processed_by: 'a', run_id: run, sample_size_histogram: h });
    }
    // A later summary of the same run replaces the earlier one (counts are cumulative per run).
    stats.add({ msg_type: 'fastmon_summary', processed_by: 'a', run_id: '2', sample_size_histogram: h });
    const { source, buckets } = stats.sizeHistogram();
    expect(source).toBe('summaries');
    expect(buckets.slice(0, 4).map((b) => b.count)).toEqual([0, 6, 10, 2]);
  });
});

const NOW = new Date(2026, 10, 23, 14, 30, 25);

describe('formatLine', () => {
  it('prints one aligned line per TF sample', () => {
    const line = formatLine(sample('100001', 1, 1, 123_456), { color: false, now: NOW });
    expect(line).toBe(
      '14:30:25  swf.100001.000001_tf_001.tf    123 kB  STF swf.100001.000001.stf  run 100001  ' +
        'TFs 10-19 (10)         registered',
    );
    const other = formatLine(sample('7', 12, 2, 5), { color: false, now: NOW });
    expect(other.indexOf('STF ')).toBe(line.indexOf('STF '));
    expect(other.indexOf('run ')).toBe(line.indexOf('run '));
    expect(other.indexOf('TFs ')).toBe(line.indexOf('TFs '));
  });

  it('prints sizes in B, kB, MB and GB', () => {
    const size = (n: number) =>
      formatLine({ file_size_bytes: n }, { color: false, now: NOW }).split(/\s{2,}/)[2];
    expect([999, 1500, 2_500_000, 3.2e9].map(size)).toEqual(['999 B', '1.5 kB', '2.5 MB', '3.2 GB']);
  });

  it('shows - for missing or garbage fields and reads run_number from older senders', () => {
    const partial = formatLine(
      { msg_type: 'tf_file_registered', tf_filename: 'x.tf', run_number: 5 },
      { color: false, now: NOW },
    );
    expect(partial).toMatch(/^14:30:25 {2}x\.tf\s+- {2}STF -\s+run 5\s+TFs -\s+-$/);
    const garbage = {
      tf_filename: { a: 1 },
      file_size_bytes: 'big',
      stf_filename: null,
      run_id: [1],
      tf_first: 'a',
      tf_last: Number.POSITIVE_INFINITY,
      tf_count: 3,
      status: undefined,
    };
    const line = formatLine(garbage, { color: true, now: NOW });
    expect(stripAnsi(line)).toMatch(/^14:30:25 {2}-\s+- {2}STF -\s+run -\s+TFs --- \(3\)\s+-$/);
    expect(() => formatLine({}, { color: true })).not.toThrow();
  });

  it('colours the status as the original client only when asked', () => {
    const colours = { registered: 32, processing: 33, processed: 34, failed: 31, done: 35 };
    for (const [status, code] of Object.entries(colours)) {
      const line = formatLine(sample('1', 1, 1, 10, status), { color: true, now: NOW });
      expect(line).toContain(`\x1b[${code}m${status}\x1b[0m`);
      expect(formatLine(sample('1', 1, 1, 10, status), { color: false, now: NOW })).not.toContain('\x1b');
    }
    // Escape sequences inside fields never reach the terminal.
    const hostile = { tf_filename: 'a\x1b[2Jb', stf_filename: 'c\nd', status: '\x1b[31mx' };
    const line = formatLine(hostile, { color: false, now: NOW });
    expect(line).not.toContain('\x1b');
    expect(line).not.toContain('\n');
    expect(line).toContain('a?[2Jb');
  });

  it('prints fastmon_status and fastmon_summary on one line', () => {
    const status = formatOther(
      {
        msg_type: 'fastmon_status',
        processed_by: 'ag',
        run_id: '9',
        status: 'completed',
        message: 'run ended',
        tf_files_registered: 7,
      },
      { now: NOW },
    );
    expect(status).toBe('14:30:25  status   ag  run 9  completed  run ended  (7 TF samples)');
    const summary = formatOther(
      {
        msg_type: 'fastmon_summary',
        processed_by: 'ag',
        run_id: '9',
        stfs_seen: 3,
        stfs_sampled: 2,
        stfs_skipped: 1,
        stfs_failed: 0,
        tf_files_registered: 14,
        tf_files_failed: 0,
        bytes_sampled: 1_400_000,
        outbox_depth: 0,
        rates: { tf_files_per_s: 1.4 },
        errors: { A: 1, B: 3 },
        final: true,
      },
      { now: NOW },
    );
    expect(summary).toBe(
      '14:30:25  summary  ag  run 9  STFs 3 seen/2 sampled/1 skipped/0 failed, TF samples 14 (0 failed), ' +
        '1.4 MB, 1.40 TF/s, outbox 0  errors B×3, A×1  final',
    );
    expect(formatOther({ msg_type: 'fastmon_summary', rates: 5, errors: [1] }, { color: true })).toContain(
      'summary',
    );
  });

  it('uses colour only on a TTY without NO_COLOR and with a capable TERM', () => {
    expect(useColor({ isTTY: true }, { TERM: 'xterm-256color' })).toBe(true);
    expect(useColor({ isTTY: false }, { TERM: 'xterm-256color' })).toBe(false);
    expect(useColor({}, {})).toBe(false);
    expect(useColor({ isTTY: true }, { NO_COLOR: '1', TERM: 'xterm' })).toBe(false);
    expect(useColor({ isTTY: true }, { NO_COLOR: '', TERM: 'xterm' })).toBe(false);
    expect(useColor({ isTTY: true }, { TERM: 'dumb' })).toBe(false);
  });
});

describe('formatSummary', () => {
  it('prints uptime, volume, sizes, rate and one row per run', () => {
    const { stats } = knownStream();
    const text = formatSummary(stats, { color: false });
    expect(text).not.toContain('\x1b');
    expect(text).toMatch(/uptime\s+31s/);
    expect(text).toMatch(/samples\s+31 TF samples received \(registered 30, failed 1\)/);
    expect(text).toMatch(/data volume\s+2\.1 MB \(1 samples without a size\)/);
    expect(text).toMatch(/sizes\s+min 2\.0 kB, mean 70\.6 kB, max 100 kB/);
    expect(text).toMatch(/overall rate\s+1\.00 TF samples\/s/);
    expect(text).toMatch(/100001\s+ended\s+21\s+3\s+2\.1 MB\s+100 kB\s+\S+/);
    expect(text).toMatch(/100002\s+active\s+10\s+2\s+18\.0 kB\s+2\.0 kB\s+\S+/);
    expect(formatSummary(stats, { color: true })).toContain('\x1b[1m');
  });
});

describe('renderDashboard', () => {
  const base = { source: 'stomp://127.0.0.1:61613 /topic/epictopic', sourceStatus: 'connected' };

  it('shows header, runs, agents, a sparkline and a histogram at 120×40', () => {
    const { stats, c } = knownStream();
    for (const color of [false, true]) {
      const lines = renderDashboard(stats, { ...base, width: 120, height: 40, color, now: c.t });
      expect(lines.length).toBeLessThanOrEqual(40);
      for (const l of lines) expect(visibleWidth(l)).toBeLessThanOrEqual(120);
      if (!color) expect(lines.join('\n')).not.toContain('\x1b');
    }
    const lines = renderDashboard(stats, { ...base, width: 120, height: 40, color: false, now: c.t });
    const text = lines.join('\n');
    expect(lines[0]).toContain('[connected]');
    expect(lines[0]).toContain('stomp://127.0.0.1:61613');
    expect(lines[1]).toMatch(/samples 31 {2}data 2\.1 MB/);
    expect(text).toMatch(/^100001\s+ended\s+3\s+21\s+2\.1 MB/m);
    expect(text).toMatch(/^100002\s+active\s+2\s+10\s+18\.0 kB/m);
    expect(text).toMatch(/^fastmon-agent-test-1\s+running\s+0s ago\s+4\s+31\s+MONITOR_UNAVAILABLE×2/m);
    expect(text).toContain('TF RATE');
    expect(text).toMatch(/^ {2}[▁▂▃▄▅▆▇█]{60}$/m);
    expect(text).toMatch(/[▂▃▄▅▆▇█]/);
    expect(text).toContain('SAMPLE SIZES');
    expect(text).toMatch(/^\s+64-128 KiB [█▏▎▍▌▋▊▉]+\s+21\s+70%$/m);
    expect(text).toMatch(/^\s+1-2 KiB [█▏▎▍▌▋▊▉]+\s+9\s+30%$/m);
  });

  it('shows a "now" rate never above the peak, even for a burst in the first second', () => {
    // The client started 3 s into a 10-s bucket; 35 samples arrive within its first second.
    const c = clock(T0 + 3_000);
    const stats = new ClientStats(c.now);
    for (let k = 1; k <= 35; k++) {
      c.t = T0 + 3_000 + k * 20;
      stats.add(sample('100010', 1, k, 1000));
    }
    c.t = T0 + 4_000;
    const text = renderDashboard(stats, { ...base, width: 120, height: 40, color: false, now: c.t }).join(
      '\n',
    );
    const shown = /now (\S+)\/s {2}peak (\S+)\/s/.exec(text);
    expect(shown, text).not.toBeNull();
    // One second seen, 35 samples: both read 35/s (it said "now 35.0/s … peak 3.50/s").
    expect(shown?.[1]).toBe('35.0');
    expect(shown?.[2]).toBe('35.0');
    // Later, the minute's average stays at or below the busiest bucket.
    c.t = T0 + 45_000;
    expect(stats.currentRate()).toBeLessThanOrEqual(Math.max(...stats.bucketRates()));
    expect(stats.currentRate()).toBeCloseTo(35 / 42, 5);
  });

  it('keeps the header and the run numbers at 60×15 and never exceeds the width', () => {
    const { stats, c } = knownStream();
    for (const color of [false, true]) {
      const lines = renderDashboard(stats, { ...base, width: 60, height: 15, color, now: c.t });
      expect(lines.length).toBeLessThanOrEqual(15);
      for (const l of lines) expect(visibleWidth(l)).toBeLessThanOrEqual(60);
    }
    const text = renderDashboard(stats, { ...base, width: 60, height: 15, color: false, now: c.t }).join(
      '\n',
    );
    expect(text).toContain('[connected]');
    expect(text).toMatch(/^100001\s+ended\s+3\s+21/m);
    expect(text).toMatch(/^100002\s+active\s+2\s+10/m);
  });

  it('drops sections rather than overflow tiny terminals', () => {
    const { stats, c } = knownStream();
    for (const [width, height] of [
      [20, 3],
      [40, 6],
      [1, 1],
      [0, 0],
      [200, 8],
    ] as const) {
      const lines = renderDashboard(stats, { ...base, width, height, color: true, now: c.t });
      expect(lines.length).toBeLessThanOrEqual(height);
      for (const l of lines) expect(visibleWidth(l)).toBeLessThanOrEqual(width);
    }
    const small = renderDashboard(stats, { ...base, width: 80, height: 8, color: false, now: c.t }).join(
      '\n',
    );
    expect(small).toContain('100001');
    expect(small).not.toContain('SAMPLE SIZES');
  });

  it('renders an empty screen sensibly before anything arrives', () => {
    const stats = new ClientStats(() => T0);
    const text = renderDashboard(stats, {
      ...base,
      sourceStatus: 'connecting',
      width: 80,
      height: 24,
      color: false,
      now: T0,
    }).join('\n');
    expect(text).toContain('no TF samples or run messages yet');
    expect(text).toContain('no sizes yet');
  });
});

describe('Dashboard', () => {
  function fakeOut(): DashboardOutput & { chunks: string[]; resize: () => void } {
    let listener = () => {};
    return {
      chunks: [],
      columns: 100,
      rows: 30,
      write(chunk: string) {
        this.chunks.push(chunk);
        return true;
      },
      on(_event, l) {
        listener = l;
      },
      resize: () => listener(),
    };
  }

  it('draws in place on the alternate screen at most 4 times a second and restores the screen', () => {
    vi.useFakeTimers();
    try {
      const c = clock();
      const stats = new ClientStats(c.now);
      const out = fakeOut();
      const dash = new Dashboard(out, stats, {
        color: false,
        source: () => 'src',
        status: () => 'connected',
      });
      dash.start();
      expect(out.chunks[0]).toBe('\x1b[?1049h\x1b[?25l');
      expect(out.chunks).toHaveLength(2);
      // Nothing changed, same second: no frame.
      vi.advanceTimersByTime(1000);
      expect(out.chunks).toHaveLength(2);
      // A message every 10 ms for a second: at most one frame per 250-ms tick.
      for (let i = 0; i < 100; i++) {
        stats.add(sample('1', 1, i, 1000));
        vi.advanceTimersByTime(10);
      }
      const frames = out.chunks.slice(1);
      expect(frames.length).toBeLessThanOrEqual(5);
      expect(frames.length).toBeGreaterThanOrEqual(4);
      for (const f of frames) {
        expect(f.startsWith('\x1b[H')).toBe(true);
        expect(f).toContain('\x1b[K');
        expect(f.endsWith('\x1b[J')).toBe(true);
        expect(f).not.toContain('\x1b[2J');
      }
      expect(stripAnsi(frames.at(-1)!)).toContain('samples 100');
      // The clock alone redraws once a second.
      const before = out.chunks.length;
      c.t += 1000;
      vi.advanceTimersByTime(250);
      expect(out.chunks.length).toBe(before + 1);
      // A resize clears once.
      out.resize();
      vi.advanceTimersByTime(250);
      expect(out.chunks.at(-1)!.startsWith('\x1b[2J\x1b[H')).toBe(true);
      dash.stop();
      expect(out.chunks.at(-1)).toBe('\x1b[?25h\x1b[?1049l');
      const count = out.chunks.length;
      vi.advanceTimersByTime(2000);
      dash.stop();
      expect(out.chunks.length).toBe(count);
    } finally {
      vi.useRealTimers();
    }
  });
});
