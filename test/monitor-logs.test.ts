import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../src/log/logger.js';
import { MonitorLogShipper, type ShipResult } from '../src/log/monitor-logs.js';
import { type MonitorDouble, startMonitorDouble } from './support/monitor-double.js';

let monitor: MonitorDouble;
beforeAll(async () => {
  monitor = await startMonitorDouble({ basePath: '/swf-monitor' });
});
afterAll(async () => {
  await monitor.close();
});
beforeEach(() => monitor.reset());

function setup(maxQueue = 100, url = monitor.url) {
  const shipper = new MonitorLogShipper({ url, maxQueue, flushMs: 20 });
  const local: string[] = [];
  const logger = createLogger({
    level: 'debug',
    destination: { write: (line: string) => local.push(line) },
    ship: { shipper, level: 'info' },
  });
  const counts: Record<ShipResult, number> = { shipped: 0, refused: 0, failed: 0, dropped: 0 };
  const bind = () => shipper.bind('fastmon-agent-test-7', (result, n) => (counts[result] += n));
  return { shipper, logger, local, counts, bind };
}

async function until(predicate: () => boolean, what: string) {
  const deadline = Date.now() + 5000;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('log records shipped to AppLog', () => {
  it('holds records until the agent has its name, then ships them under the sub-path, one per POST', async () => {
    const { shipper, logger, counts, bind } = setup();
    logger.info({ run: '101993', stf: 'swf.101993.000001.stf' }, 'STF sampled');
    logger.error({ code: 'MONITOR_REJECTED' }, 'TF sample not registered');
    logger.debug('kept local');
    await new Promise((r) => setTimeout(r, 60));
    expect(monitor.appLogs).toHaveLength(0);
    bind();
    await until(() => monitor.appLogs.length === 2, 'two rows');
    expect(monitor.appLogs.map((r) => [r.levelname, r.level, r.message, r.funcname])).toEqual([
      ['INFO', 20, 'STF sampled', '-'],
      ['ERROR', 40, 'TF sample not registered', 'MONITOR_REJECTED'],
    ]);
    expect(monitor.appLogs[0]).toMatchObject({
      app_name: 'base_agent',
      instance_name: 'fastmon-agent-test-7',
      module: 'swf-fastmon',
      extra_data: expect.objectContaining({ run_id: '101993', stf: 'swf.101993.000001.stf' }),
    });
    expect(monitor.requests.filter((r) => r.path === '/swf-monitor/api/logs/')).toHaveLength(2);
    expect(counts.shipped).toBe(2);
    await shipper.close(1000);
  });

  it('keeps at most maxQueue records: the newest beyond it are dropped and counted', async () => {
    const { shipper, logger, counts, bind } = setup(3);
    for (let i = 0; i < 5; i++) logger.info({ i }, `record ${i}`);
    expect(shipper.queued).toBe(3);
    bind();
    await until(() => monitor.appLogs.length === 3, 'three rows');
    expect(monitor.appLogs.map((r) => r.message)).toEqual(['record 0', 'record 1', 'record 2']);
    expect(counts).toMatchObject({ shipped: 3, dropped: 2 });
    await shipper.close(1000);
  });

  it('closes within its bound when swf-monitor is unreachable, counting what it could not ship', async () => {
    const { shipper, logger, counts, bind, local } = setup(100, 'http://127.0.0.1:9');
    bind();
    for (let i = 0; i < 10; i++) logger.warn({ i }, 'nobody listens');
    const started = Date.now();
    await shipper.close(500);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(counts.failed + counts.dropped).toBe(10);
    expect(local.filter((l) => l.includes('MONITOR_LOGS_REFUSED'))).toHaveLength(1);
  });
});
