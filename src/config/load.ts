// Resolves the one typed configuration: CLI flags > environment > TOML file > defaults, validated once.

import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { FastmonError, messageOf } from '../errors.js';
import { redactValue, registerSecret } from '../log/redact.js';
import { checkMonitorDbUrl } from '../monitor/db.js';
import { KEYS, KEYS_BY_NAME, type KeySpec } from './keys.js';

export interface Config {
  broker: {
    host: string;
    port: number;
    user: string;
    password: string;
    useSsl: boolean;
    sslCaCerts: string;
    heartbeatMs: number;
    reconnectMaxMs: number;
    subscription: string;
    broadcast: string[];
    persistent: boolean;
    skipOwnBroadcasts: boolean;
    ack: 'client-individual' | 'auto';
    prefetch: number;
    clientId: string;
    durableSubscription: string;
    deadLetter: string;
  };
  monitor: {
    url: string;
    token: string;
    timeoutMs: number;
    connections: number;
    pipelining: number;
    retries: number;
    retryDelayMs: number;
    heartbeatIntervalS: number;
    /** Base URL of POST /api/logs/ (SWF_MONITOR_HTTP_URL, else url); empty: no log shipping. */
    logsUrl: string;
    /** Lowest pino level shipped to swf-monitor, or 'off'. */
    logLevel: string;
    logQueue: number;
  };
  /** swf-monitor's PostgreSQL, written directly when `url` is set. */
  monitorDb: {
    url: string;
    batchRows: number;
    flushMs: number;
    connections: number;
    timeoutMs: number;
  };
  agent: {
    mode: 'message' | 'continuous';
    namespace: string;
    testbedConfig: string;
    logLevel: string;
    dataRoots: string[];
    catalog: string;
    outbox: string;
    outboxMaxBytes: number;
    outputDir: string;
    stfChecksum: boolean;
    workers: number;
    inline: boolean;
    maxInFlight: number;
    maxMessageBytes: number;
    httpHost: string;
    httpPort: number;
    /** agent.http_port was set (flag, env or file): used exactly, never replaced by a free one. */
    httpPortSet: boolean;
    drainTimeoutS: number;
    summaryIntervalS: number;
    runIdleTimeoutS: number;
    maxRuns: number;
    endRunGraceS: number;
  };
  sampling: SamplingSettings;
  scan: {
    watchDirs: string[];
    patterns: string[];
    recursive: boolean;
    lookbackMinutes: number;
    shard: string;
    ledger: string;
    settleMs: number;
    pollIntervalS: number;
    nativeWatcher: boolean;
    failExit: boolean;
  };
}

export interface SamplingSettings {
  stfSelectionFraction: number;
  tfFilesPerStf: number;
  tfSizeFraction: number;
  tfCountDefault: number;
  tfSequenceStart: number;
  seed: string;
  sampleOnlyInPhysics: boolean;
}

export interface LoadOptions {
  /** Values from flags, keyed by config key (see src/cli/options.ts). */
  flags?: ReadonlyMap<string, string | string[]>;
  env?: NodeJS.ProcessEnv;
  /** Our own TOML file (`--config FILE`). */
  configFile?: string;
  cwd?: string;
}

type Source = 'flag' | 'env' | 'file' | 'default';
type Raw = string | number | boolean | string[] | unknown;

/** Where each value came from, for --print-config and error messages. */
export type Provenance = Record<string, Source>;

export function loadConfig(options: LoadOptions = {}): { config: Config; provenance: Provenance } {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const file = options.configFile ? readConfigFile(path.resolve(cwd, options.configFile)) : new Map();
  const values = new Map<string, unknown>();
  const provenance: Provenance = {};

  for (const spec of KEYS) {
    let raw: Raw;
    let source: Source;
    let origin: string;
    if (options.flags?.has(spec.key)) {
      raw = options.flags.get(spec.key);
      source = 'flag';
      origin = `flag --${spec.flag}`;
    } else if (spec.env && env[spec.env] !== undefined && env[spec.env] !== '') {
      raw = env[spec.env];
      source = 'env';
      origin = `env ${spec.env}`;
    } else if (file.has(spec.key)) {
      raw = file.get(spec.key);
      source = 'file';
      origin = `file ${options.configFile}`;
    } else {
      raw = spec.default;
      source = 'default';
      origin = 'default';
    }
    values.set(spec.key, coerce(spec, raw, origin));
    provenance[spec.key] = source;
  }

  const config = build(values);
  config.agent.httpPortSet = provenance['agent.http_port'] !== 'default';
  resolveNamespace(config, provenance, cwd);
  config.agent.dataRoots = config.agent.dataRoots.map((root) => path.resolve(cwd, root));
  if (config.agent.outputDir) config.agent.outputDir = path.resolve(cwd, config.agent.outputDir);
  config.scan.watchDirs = config.scan.watchDirs.map((dir) => path.resolve(cwd, dir));
  if (config.agent.workers === 0) config.agent.workers = availableParallelism();
  registerSecret(config.broker.password);
  registerSecret(config.monitor.token);
  if (config.monitorDb.url) checkMonitorDbUrl(config.monitorDb.url); // also registers its password
  return { config, provenance };
}

function readConfigFile(file: string): Map<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new FastmonError('CONFIG_FILE_UNREADABLE', `cannot read config file ${file}: ${messageOf(err)}`);
  }
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw new FastmonError('CONFIG_INVALID', `config file ${file} is not valid TOML: ${messageOf(err)}`);
  }
  const out = new Map<string, unknown>();
  for (const [section, table] of Object.entries(doc)) {
    if (table === null || typeof table !== 'object' || Array.isArray(table)) {
      throw new FastmonError('CONFIG_INVALID', `config file ${file}: "${section}" must be a [section]`);
    }
    for (const [name, value] of Object.entries(table)) {
      const key = `${section}.${name}`;
      if (!KEYS_BY_NAME.has(key)) {
        throw new FastmonError('CONFIG_INVALID', `config file ${file}: unknown key ${key}`);
      }
      out.set(key, value);
    }
  }
  return out;
}

/** Parses and checks one value; the error names the key, where the value came from, and the value. */
function coerce(spec: KeySpec, raw: Raw, origin: string): unknown {
  const reject = (problem: string): never => {
    const shown = spec.secret ? '[redacted]' : JSON.stringify(raw);
    throw new FastmonError('CONFIG_INVALID', `${spec.key} (${origin}): ${problem}, got ${shown}`, {
      key: spec.key,
    });
  };
  const fail = (expected: string): never => reject(`expected ${expected}`);
  let value: unknown;
  switch (spec.type) {
    case 'string':
      if (typeof raw !== 'string') fail('a string');
      value = raw;
      break;
    case 'int':
    case 'number': {
      const n =
        typeof raw === 'number'
          ? raw
          : typeof raw === 'string' && raw.trim() !== ''
            ? Number(raw)
            : Number.NaN;
      const range = `${spec.min !== undefined ? ` >= ${spec.min}` : ''}${spec.max !== undefined ? ` <= ${spec.max}` : ''}`;
      const what = spec.type === 'int' ? `an integer${range}` : `a number${range}`;
      if (!Number.isFinite(n) || (spec.type === 'int' && !Number.isInteger(n))) fail(what);
      if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) fail(what);
      value = n;
      break;
    }
    case 'bool':
      value = parseBool(raw);
      if (value === undefined) fail('true or false');
      break;
    case 'enum': {
      const s = typeof raw === 'string' ? raw.toLowerCase() : undefined;
      if (s === undefined || !spec.choices?.includes(s)) fail(`one of ${spec.choices?.join(', ')}`);
      value = s;
      break;
    }
    case 'list':
      if (Array.isArray(raw) && raw.every((v) => typeof v === 'string')) value = raw;
      else if (typeof raw === 'string') value = splitList(spec, raw);
      else fail('a list of strings');
      break;
  }
  const problem = spec.check?.(value as never);
  if (problem) reject(problem);
  return value;
}

function parseBool(raw: Raw): boolean | undefined {
  if (typeof raw === 'boolean') return raw;
  if (typeof raw !== 'string') return undefined;
  const s = raw.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(s)) return true;
  if (['false', '0', 'no', 'off'].includes(s)) return false;
  return undefined;
}

function splitList(spec: KeySpec, raw: string): string[] {
  // Data roots are paths: ":"-separated like PATH. Destinations may be ","-separated.
  const separator = spec.key === 'agent.data_roots' || spec.key === 'scan.watch_dirs' ? /[:,]/ : /,/;
  return raw
    .split(separator)
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function build(v: Map<string, unknown>): Config {
  const get = <T>(key: string): T => v.get(key) as T;
  const level = get<string>('agent.log_level');
  return {
    broker: {
      host: get('broker.host'),
      port: get('broker.port'),
      user: get('broker.user'),
      password: get('broker.password'),
      useSsl: get('broker.use_ssl'),
      sslCaCerts: get('broker.ssl_ca_certs'),
      heartbeatMs: get('broker.heartbeat_ms'),
      reconnectMaxMs: get('broker.reconnect_max_ms'),
      subscription: get('broker.subscription'),
      broadcast: get('broker.broadcast'),
      persistent: get('broker.persistent'),
      skipOwnBroadcasts: get('broker.skip_own_broadcasts'),
      ack: get('broker.ack'),
      prefetch: get('broker.prefetch'),
      clientId: get('broker.client_id'),
      durableSubscription: get('broker.durable_subscription'),
      deadLetter: get('broker.dead_letter'),
    },
    monitor: {
      url: get<string>('monitor.url').replace(/\/+$/, ''),
      token: get('monitor.token'),
      timeoutMs: get('monitor.timeout_ms'),
      connections: get('monitor.connections'),
      pipelining: get('monitor.pipelining'),
      retries: get('monitor.retries'),
      retryDelayMs: get('monitor.retry_delay_ms'),
      heartbeatIntervalS: get('monitor.heartbeat_interval_s'),
      logsUrl: (get<string>('monitor.logs_url') || get<string>('monitor.url')).replace(/\/+$/, ''),
      logLevel: get('monitor.log_level'),
      logQueue: get('monitor.log_queue'),
    },
    monitorDb: {
      url: get('monitor_db.url'),
      batchRows: get('monitor_db.batch_rows'),
      flushMs: get('monitor_db.flush_ms'),
      connections: get('monitor_db.connections'),
      timeoutMs: get('monitor_db.timeout_ms'),
    },
    agent: {
      mode: get('agent.mode'),
      namespace: get('agent.namespace'),
      testbedConfig: get('agent.testbed_config'),
      // Python logging names used across the testbed map onto pino's.
      logLevel: level === 'warning' ? 'warn' : level === 'critical' ? 'fatal' : level,
      dataRoots: get('agent.data_roots'),
      catalog: get('agent.catalog'),
      outbox: get('agent.outbox'),
      outboxMaxBytes: get('agent.outbox_max_bytes'),
      outputDir: get('agent.output_dir'),
      stfChecksum: get('agent.stf_checksum'),
      workers: get('agent.workers'),
      inline: get('agent.inline'),
      maxInFlight: get('agent.max_in_flight'),
      maxMessageBytes: get('agent.max_message_bytes'),
      httpHost: get('agent.http_host'),
      httpPort: get('agent.http_port'),
      httpPortSet: false,
      drainTimeoutS: get('agent.drain_timeout_s'),
      summaryIntervalS: get('agent.summary_interval_s'),
      runIdleTimeoutS: get('agent.run_idle_timeout_s'),
      maxRuns: get('agent.max_runs'),
      endRunGraceS: get('agent.end_run_grace_s'),
    },
    scan: {
      watchDirs: get('scan.watch_dirs'),
      patterns: get('scan.patterns'),
      recursive: get('scan.recursive'),
      lookbackMinutes: get('scan.lookback_minutes'),
      shard: get('scan.shard'),
      ledger: get('scan.ledger'),
      settleMs: get('scan.settle_ms'),
      pollIntervalS: get('scan.poll_interval_s'),
      nativeWatcher: get('scan.native_watcher'),
      failExit: get('scan.fail_exit'),
    },
    sampling: {
      stfSelectionFraction: get('sampling.stf_selection_fraction'),
      tfFilesPerStf: get('sampling.tf_files_per_stf'),
      tfSizeFraction: get('sampling.tf_size_fraction'),
      tfCountDefault: get('sampling.tf_count_default'),
      tfSequenceStart: get('sampling.tf_sequence_start'),
      seed: get('sampling.seed'),
      sampleOnlyInPhysics: get('sampling.sample_only_in_physics'),
    },
  };
}

/**
 * The namespace comes, as in swf-common-lib, from `[testbed] namespace` of the testbed TOML:
 * SWF_TESTBED_CONFIG (a bare file name means `workflows/<name>`), else `workflows/testbed.toml`
 * when the agent runs from the testbed directory. A flag or our own file may set it instead.
 * Unlike BaseAgent, no testbed file at all is fine: the agent then has no namespace and
 * processes every message.
 */
function resolveNamespace(config: Config, provenance: Provenance, cwd: string): void {
  if (provenance['agent.namespace'] === 'flag') return;
  let file = config.agent.testbedConfig;
  const explicit = file !== '';
  if (explicit && !file.includes('/')) file = path.join('workflows', file);
  if (!explicit) {
    if (config.agent.namespace !== '') return;
    file = 'workflows/testbed.toml';
    if (!existsSync(path.resolve(cwd, file))) return;
  }
  const resolved = path.resolve(cwd, file);
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(readFileSync(resolved, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new FastmonError('CONFIG_FILE_UNREADABLE', `testbed config ${resolved}: ${messageOf(err)}`, {
      key: 'agent.testbed_config',
    });
  }
  const namespace = (doc.testbed as Record<string, unknown> | undefined)?.namespace;
  if (typeof namespace !== 'string' || namespace.trim() === '') {
    throw new FastmonError(
      'CONFIG_INVALID',
      `testbed config ${resolved}: [testbed] namespace must be a non-empty string, got ${JSON.stringify(namespace)}`,
      { key: 'agent.testbed_config' },
    );
  }
  config.agent.namespace = namespace.trim();
  provenance['agent.namespace'] = 'env';
}

/** The configuration as TOML-shaped sections with secrets masked, for --print-config. */
export function printableConfig(config: Config): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const spec of KEYS) {
    const [section, name] = spec.key.split('.') as [string, string];
    const camelCase = (text: string) => text.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    const value = (config as unknown as Record<string, Record<string, unknown>>)[camelCase(section)]?.[
      camelCase(name)
    ];
    out[section] ??= {};
    out[section][name] = spec.secret && value ? '[redacted]' : value;
  }
  return redactValue(out);
}
