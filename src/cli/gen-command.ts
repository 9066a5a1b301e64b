// `swf-fastmon gen`: writes a synthetic run of binary STFs, optionally acting as the testbed's DAQ and data agent.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeStf } from '../../workers/stf-writer.js';
import { brokerConnection, monitorClient } from '../agent/wiring.js';
import type { Config } from '../config/load.js';
import { osUser } from '../config/os-user.js';
import { FastmonError, isFastmonError } from '../errors.js';
import { describeStf, PLAN_DEFAULTS, type PlanOptions, payloadFill, planStf } from '../gen/plan.js';
import { DaqRole } from '../gen/publish.js';
import { createLogger, type Logger } from '../log/logger.js';
import { StompBroadcaster } from '../sinks/broadcast.js';
import { commandConfig } from './common.js';
import { ensureOutputDirectory } from './inputs.js';
import {
  CONFIG_OPTIONS,
  type CommandSpec,
  commandHelp,
  keysNamed,
  type OptionSpec,
  parseCommandLine,
  usageError,
} from './options.js';
import { ProgressLine, type ProgressStream } from './progress.js';
import { interruptedCode, onStopSignals } from './signals.js';

const D = PLAN_DEFAULTS;
const GEN_OPTIONS: readonly OptionSpec[] = [
  {
    name: 'out',
    type: 'string',
    value: 'DIR',
    doc: 'directory the STFs are written to (created if missing); required',
  },
  { name: 'run', type: 'string', value: 'N', doc: 'run number; required' },
  { name: 'count', type: 'string', doc: `STFs to write (default ${D.count})` },
  { name: 'tfs-per-stf', type: 'string', doc: `TFs in each STF (default ${D.tfsPerStf})` },
  {
    name: 'tf-size',
    type: 'string',
    doc: `mean TF bytes, log-normal (default ${D.tfSizeMean})`,
  },
  {
    name: 'tf-size-sigma',
    type: 'string',
    doc: `log-normal sigma; 0: all equal (default ${D.tfSizeSigma})`,
  },
  { name: 'state', type: 'string', doc: `DAQ state in headers and messages (default ${D.state})` },
  { name: 'substate', type: 'string', doc: `DAQ substate (default ${D.substate})` },
  {
    name: 'seed',
    type: 'string',
    doc: `any text; same seed, same bytes (default ${D.seed})`,
  },
  {
    name: 'start-seq',
    type: 'string',
    doc: `first STF sequence (default ${D.startSequence})`,
  },
  {
    name: 'start-time',
    type: 'string',
    doc: 'ISO time of the first STF, or now (default 2026-01-01T00:00:00Z)',
  },
  { name: 'stf-interval-ms', type: 'string', doc: `time span of each STF (default ${D.stfIntervalMs})` },
  { name: 'rate', type: 'string', doc: 'STFs per second; 0: as fast as possible (default 0)' },
  {
    name: 'publish',
    type: 'boolean',
    doc: 'play DAQ and data agent: messages, swf-monitor rows',
  },
  { name: 'destination', type: 'string', doc: 'where --publish sends (default: broker.subscription)' },
  ...CONFIG_OPTIONS,
];

/** --publish connects as the DAQ: the broker's connection keys, swf-monitor's, and the namespace. */
const GEN_KEYS = keysNamed(
  'broker.host',
  'broker.port',
  'broker.user',
  'broker.password',
  'broker.use_ssl',
  'broker.ssl_ca_certs',
  'broker.heartbeat_ms',
  'broker.reconnect_max_ms',
  'monitor.url',
  'monitor.token',
  'monitor.timeout_ms',
  'monitor.connections',
  'monitor.pipelining',
  'monitor.retries',
  'monitor.retry_delay_ms',
  'agent.namespace',
  'agent.testbed_config',
  'agent.log_level',
);

export const GEN: CommandSpec = {
  name: 'gen',
  usage: 'swf-fastmon gen --out DIR --run N [options]',
  about: `Writes a synthetic run of binary STFs named swf.<run>.<seq:06d>.stf (docs/stf-format.md),
each atomically (temporary name, then rename). The same options give the same bytes.
With --publish it also plays the testbed's DAQ and data agent: run_imminent and start_run,
then per STF a StfFile row in swf-monitor (when SWF_MONITOR_URL is set) and stf_ready, then
end_run; the configuration below is what --publish uses. See docs/gen.md.`,
  options: GEN_OPTIONS,
  keys: GEN_KEYS,
};

export interface GenIo {
  stdout: { write(text: string): unknown };
  /** The progress bar is drawn here when it is a TTY. */
  stderr: ProgressStream;
}

interface GenSettings {
  plan: PlanOptions;
  out: string;
  rate: number;
  publish: boolean;
  destination: string | null;
}

export async function genCommand(argv: readonly string[], io: GenIo = process): Promise<number> {
  const line = parseCommandLine(GEN, argv);
  if (line.values.help) {
    io.stdout.write(commandHelp(GEN));
    return 0;
  }
  const settings = readSettings(line.values);
  const config = commandConfig(line);
  if (!config) return 0;
  if (settings.publish && !config.broker.host) {
    throw usage('--publish needs a broker, and broker.host (ACTIVEMQ_HOST, --broker-host) is empty');
  }
  ensureOutputDirectory(settings.out, 'gen --out');
  const progress = new ProgressLine(io.stderr);
  const logger = createLogger({ level: config.agent.logLevel, destination: progress.loggerStream() });
  // Writing stops between STFs; a GB STF may take seconds to finish, hence the longer bound.
  const stopping = onStopSignals({ graceMs: 20_000, notify: (text) => logger.warn(text) });
  const stop = { signal: stopping.signal };
  const started = performance.now();
  let files = 0;
  let bytes = 0;
  const total = settings.plan.count;
  // `done` counts the STF being written in part, so the bar moves inside large (GB) STFs.
  const show = (done: number, written: number, force = false) =>
    progress.update(progressText(files, total, written, started), done / total, force);
  let role: DaqRole | null = null;
  let close = async () => {};
  try {
    if (settings.publish) ({ role, close } = await connect(config, settings, logger, stopping.signal));
    logger.info(
      { run: settings.plan.run, count: settings.plan.count, out: settings.out },
      'writing synthetic run',
    );
    await role?.startRun();
    const t0 = performance.now();
    // The messages of STF i go out while STF i+1 is written; one at a time, so they stay in order.
    let publishing: Promise<void> = Promise.resolve();
    for (let i = 0; i < settings.plan.count && !stop.signal.aborted; i++) {
      if (settings.rate > 0) await pace(t0 + (i * 1000) / settings.rate, stop.signal);
      if (stop.signal.aborted) break;
      const stf = planStf(settings.plan, i);
      const file = path.join(settings.out, stf.filename);
      const fill = payloadFill(settings.plan.seed, settings.plan.run, stf.sequence);
      let partial = 0;
      const written = await writeStf(file, describeStf(settings.plan, stf), (tf, offset, into) => {
        fill(tf, offset, into);
        partial += into.length;
        show(files + partial / stf.payloadBytes, bytes + partial);
      });
      files++;
      bytes += written.sizeBytes;
      show(files, bytes, files === total);
      logger.debug({ stf: stf.filename, sizeBytes: written.sizeBytes }, 'STF written');
      await publishing;
      publishing = role
        ? role.stfReady({
            ...written,
            sequence: stf.sequence,
            tfCount: stf.tfLengths.length,
            start: isoOf(stf.startNs),
            end: isoOf(stf.endNs),
          })
        : Promise.resolve();
      publishing.catch(() => {}); // awaited above on the next turn, or below
    }
    await publishing;
    await role?.endRun(files);
  } catch (err) {
    // A stop while the broker does not answer yet ends the run like any other stop.
    if (!isFastmonError(err, 'SHUTDOWN')) throw err;
  } finally {
    if (files > 0) progress.finish(progressText(files, total, bytes, started), files / total);
    else progress.finish();
    await close();
    stopping.dispose();
  }
  io.stdout.write(
    `${summary(settings, files, bytes, performance.now() - started, role, stop.signal.reason)}\n`,
  );
  return stopping.name ? interruptedCode(stopping.name) : 0;
}

async function connect(
  config: Config,
  settings: GenSettings,
  logger: Logger,
  signal: AbortSignal,
): Promise<{ role: DaqRole; close: () => Promise<void> }> {
  const user = osUser('user').replace(/[^\w.-]/g, '_');
  const sender = `fastmon-gen-${user}-${process.pid}`;
  const b = config.broker;
  const connection = brokerConnection(config, { clientId: sender, logger });
  const monitor = monitorClient(config, logger);
  const close = async () => {
    await connection.close();
    await monitor?.http.close();
  };
  connection.start();
  try {
    await Promise.race([connection.waitConnected(15_000), stopped(signal)]);
  } catch (err) {
    await close();
    throw err;
  }
  const destination = settings.destination ?? b.subscription;
  const p = settings.plan;
  const version = packageVersion();
  const role = new DaqRole({
    run: p.run,
    state: p.state,
    substate: p.substate,
    executionId: `fastmon-gen-${user}-${p.run}`,
    broadcaster: new StompBroadcaster(connection, [destination], {
      sender,
      namespace: config.agent.namespace || null,
    }),
    monitor,
    execution: { version, namespace: config.agent.namespace || null, executedBy: user },
    runConditions: {
      created_by: 'swf-fastmon gen',
      seed: p.seed,
      tfs_per_stf: p.tfsPerStf,
      tf_size_mean: p.tfSizeMean,
    },
    logger,
  });
  return { role, close };
}

/** Rejects with SHUTDOWN when the stop signal comes (never resolves). */
function stopped(signal: AbortSignal): Promise<never> {
  return new Promise((_resolve, reject) => {
    const fail = () => reject(new FastmonError('SHUTDOWN', 'stopped while connecting to the broker'));
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
}

/** The package version, from dist/src/cli/ (built) or src/cli/ (tests run the sources). */
function packageVersion(): string {
  for (const up of ['../../../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'swf-fastmon' && pkg.version) return pkg.version;
    } catch {
      // not this level
    }
  }
  return '0';
}

/** Waits until `at` (a performance.now() time): a schedule, so slow writes do not add up to drift. */
async function pace(at: number, signal: AbortSignal): Promise<void> {
  const wait = at - performance.now();
  if (wait > 0) await sleep(wait, undefined, { signal }).catch(() => {});
}

// --- Options ---------------------------------------------------------------------------------

function readSettings(o: Readonly<Record<string, unknown>>): GenSettings {
  const text = (name: string): string | undefined => {
    const v = o[name];
    return typeof v === 'string' ? v : undefined;
  };
  const number = (name: string, fallback: number, min: number, max: number, integer: boolean): number => {
    const raw = text(name);
    if (raw === undefined) return fallback;
    const n = raw.trim() === '' ? Number.NaN : Number(raw);
    if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
      throw usage(
        `--${name}: expected ${integer ? 'an integer' : 'a number'} ${range}, got ${JSON.stringify(raw)}`,
      );
    }
    return n;
  };
  const int = (name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER) =>
    number(name, fallback, min, max, true);
  const label = (name: string, fallback: string): string => {
    const raw = text(name) ?? fallback;
    // The STF header stores state and substate in 16-byte latin1 fields.
    if (!/^[\w.-]{1,16}$/.test(raw)) {
      throw usage(`--${name}: expected 1 to 16 letters, digits, '_', '.' or '-', got ${JSON.stringify(raw)}`);
    }
    return raw;
  };
  const out = text('out');
  if (out === undefined || out === '') throw usage('--out DIR is required');
  if (text('run') === undefined) throw usage('--run N is required');
  const destination = text('destination') ?? null;
  if (destination !== null && !/^\/(topic|queue)\/./.test(destination)) {
    throw usage(`--destination: expected /topic/NAME or /queue/NAME, got ${JSON.stringify(destination)}`);
  }
  const seed = text('seed') ?? D.seed;
  if (seed === '') throw usage('--seed: expected a non-empty text, got ""');
  const plan: PlanOptions = {
    run: int('run', 0, 1),
    count: int('count', D.count, 1),
    tfsPerStf: int('tfs-per-stf', D.tfsPerStf, 1, 1_000_000),
    tfSizeMean: int('tf-size', D.tfSizeMean, 1, 2 ** 31),
    tfSizeSigma: number('tf-size-sigma', D.tfSizeSigma, 0, 3, false),
    seed,
    startSequence: int('start-seq', D.startSequence, 0),
    state: label('state', D.state),
    substate: label('substate', D.substate),
    stfIntervalMs: number('stf-interval-ms', D.stfIntervalMs, 0, 86_400_000, false),
    startTimeMs: startTime(text('start-time')),
  };
  return {
    plan,
    out: path.resolve(out),
    rate: number('rate', 0, 0, 1_000_000, false),
    publish: o.publish === true,
    destination,
  };
}

function startTime(raw: string | undefined): number {
  if (raw === undefined) return D.startTimeMs;
  if (raw === 'now') return Date.now();
  const ms = Date.parse(raw);
  if (!Number.isFinite(ms) || ms < 0)
    throw usage(`--start-time: expected an ISO-8601 time or "now", got ${JSON.stringify(raw)}`);
  return ms;
}

function usage(message: string): FastmonError {
  return usageError(GEN, message);
}

// --- Output ----------------------------------------------------------------------------------

function isoOf(ns: bigint): string {
  return new Date(Number(ns / 1_000_000n)).toISOString();
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

function summary(
  s: GenSettings,
  files: number,
  bytes: number,
  ms: number,
  role: DaqRole | null,
  signal: unknown,
): string {
  const seconds = ms / 1000;
  const parts = [
    `swf-fastmon gen: run ${s.plan.run}, ${files} STFs, ${mb(bytes)} in ${seconds.toFixed(2)} s ` +
      `(${(bytes / 1e6 / Math.max(seconds, 1e-3)).toFixed(1)} MB/s) to ${s.out}`,
  ];
  if (role) {
    const r = role.registrations;
    parts.push(`published ${files} stf_ready with the run lifecycle`);
    if (r.runCreated || r.stfCreated || r.stfExisting) {
      parts.push(
        `swf-monitor: execution ${r.executionCreated ? 'created' : 'existed'}, run ${r.runCreated ? 'created' : 'existed'}, ${r.stfCreated} StfFiles new, ${r.stfExisting} already there`,
      );
    }
  }
  if (signal) parts.push(`interrupted by ${String(signal)} after ${files} of ${s.plan.count}`);
  return parts.join('; ');
}

/** The progress line: STFs written of the total, MB, MB/s, elapsed seconds. */
function progressText(files: number, total: number, bytes: number, started: number): string {
  const seconds = (performance.now() - started) / 1000;
  return `${files}/${total} STFs  ${mb(bytes)}  ${(bytes / 1e6 / Math.max(seconds, 1e-3)).toFixed(1)} MB/s  ${seconds.toFixed(1)} s`;
}
