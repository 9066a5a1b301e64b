// Runs the compiled client Dashboard on this terminal over a known stream, for test/integration/dashboard.test.ts
// (which starts it inside tmux). Build first: `npx tsc -p tsconfig.json`. Ctrl+C or SIGTERM: stop, print the
// summary; a second one exits.
//
// The stream is replayed on a virtual clock over the 5 minutes before start, then the clock becomes the wall
// clock, so the sparkline has history and the header's clocks tick:
//   run 200001: 4 STFs × 7 TF samples of 150,000 B, one every 6 s, then fastmon_status completed;
//   run 200002: 3 STFs × 5 TF samples of 3,000 B, one every 6 s, and a fastmon_summary (outbox 2, one error).

import { Dashboard } from '../../dist/src/client/dashboard.js';
import { useColor } from '../../dist/src/client/line.js';
import { ClientStats } from '../../dist/src/client/stats.js';
import { formatSummary } from '../../dist/src/client/summary.js';

const AGENT = 'fastmon-agent-tmux-1';
let virtual = Date.now() - 300_000;
let live = false;
const stats = new ClientStats(() => (live ? Date.now() : virtual));

function sample(run, stf, tf, size) {
  const stem = `swf.${run}.${String(stf).padStart(6, '0')}`;
  return {
    msg_type: 'tf_file_registered',
    processed_by: AGENT,
    run_id: run,
    stf_filename: `${stem}.stf`,
    tf_filename: `${stem}_tf_${String(tf).padStart(3, '0')}.tf`,
    tf_first: tf * 10,
    tf_last: tf * 10 + 9,
    tf_count: 10,
    file_size_bytes: size,
    status: 'registered',
  };
}

for (let stf = 1; stf <= 4; stf++) {
  for (let tf = 1; tf <= 7; tf++) {
    virtual += 6_000;
    stats.add(sample('200001', stf, tf, 150_000));
  }
}
stats.add({ msg_type: 'fastmon_status', processed_by: AGENT, run_id: '200001', status: 'completed' });
for (let stf = 1; stf <= 3; stf++) {
  for (let tf = 1; tf <= 5; tf++) {
    virtual += 6_000;
    stats.add(sample('200002', stf, tf, 3_000));
  }
}
stats.add({
  msg_type: 'fastmon_summary',
  processed_by: AGENT,
  run_id: '200002',
  cycle_s: 10,
  final: false,
  stfs_seen: 3,
  tf_files_registered: 15,
  outbox_depth: 2,
  errors: { STF_HEADER_TRUNCATED: 1 },
});
live = true;

const color = useColor(process.stdout);
const dashboard = new Dashboard(process.stdout, stats, {
  color,
  source: () => 'replay test/support/dashboard-driver.mjs',
  status: () => 'connected',
});
dashboard.start();
// Keeps the process alive: the dashboard's own timer is unref'd so that it never holds a client open.
const keepAlive = setInterval(() => {}, 60_000);

let stopped = false;
// The first signal does what the client does (restore the screen, print the summary); the process then stays
// until a second signal, so that the test can read the terminal's state before tmux marks the pane dead.
function shutdown() {
  if (stopped) {
    clearInterval(keepAlive);
    process.exit(0);
  }
  stopped = true;
  dashboard.stop();
  process.stdout.write(formatSummary(stats, { color }));
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
