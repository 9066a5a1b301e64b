// The monitor double on a worker thread of the bench process, so it does not share an event loop
// with the producer and listener; the main thread drives it through messages.

import { parentPort } from 'node:worker_threads';
import { startMonitorDouble } from '../test/support/monitor-double.js';

export type DoubleCommand =
  | { op: 'reset' }
  | { op: 'seed'; runNumber: number; stfFilenames: string[] }
  | { op: 'count' }
  | { op: 'close' };

export interface DoubleReply {
  url: string;
  token: string;
  fastmonFiles: number;
  requests: number;
}

const port = parentPort;
if (port) {
  // The newest 50,000 rows (about 7,000 STFs) are plenty to answer like swf-monitor; keeping all of a
  // ten-minute run's 840,000 stalled the double whenever V8 regrew its indexes (BENCHMARKS.md).
  const double = await startMonitorDouble({ retainFastmonFiles: 50_000 });
  let requests = 0;
  // The request log is for tests; a long bench would grow it without bound.
  const trim = setInterval(() => {
    requests += double.requests.length;
    double.clearRequests();
  }, 200);
  const reply = (): DoubleReply => ({
    url: double.url,
    token: double.token,
    fastmonFiles: double.fastmonFiles.length,
    requests: requests + double.requests.length,
  });
  port.on('message', async (command: DoubleCommand) => {
    if (command.op === 'reset') {
      double.reset();
      requests = 0;
    } else if (command.op === 'seed') {
      if (!double.runs.some((r) => r.run_number === command.runNumber))
        double.addRun({ run_number: command.runNumber });
      for (const stf_filename of command.stfFilenames)
        double.addStfFile({ stf_filename, run_number: command.runNumber });
    } else if (command.op === 'close') {
      clearInterval(trim);
      await double.close();
    }
    port.postMessage(reply());
  });
  port.postMessage(reply());
}
