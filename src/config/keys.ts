// Every configuration key: where it comes from (flag, env, TOML), its default, and how it is checked.

/**
 * The table is the single source of truth: the loader, `--print-config`, `--help` and the README's
 * configuration table (checked by a test) are all derived from it.
 */
export type KeyType = 'string' | 'int' | 'number' | 'bool' | 'list' | 'enum';

export interface KeySpec {
  /** TOML path `section.key`; also the name used in error messages. */
  key: string;
  type: KeyType;
  default: string | number | boolean | string[];
  env?: string;
  flag?: string;
  secret?: boolean;
  choices?: readonly string[];
  min?: number;
  max?: number;
  /** Extra check on the parsed value; returns what is wrong, or undefined. */
  check?: (value: never) => string | undefined;
  doc: string;
}

const destination = (value: string): string | undefined =>
  value.startsWith('/topic/') || value.startsWith('/queue/') || value.includes('::')
    ? undefined
    : 'a destination must start with /topic/ or /queue/ (bare names are refused, as by BaseAgent)';

export const KEYS: readonly KeySpec[] = [
  // Broker (names and defaults of swf-common-lib's BaseAgent, except that no host means no broker).
  {
    key: 'broker.host',
    type: 'string',
    default: '',
    env: 'ACTIVEMQ_HOST',
    flag: 'broker-host',
    doc: 'ActiveMQ host. Empty: no broker (notifications are printed to stdout).',
  },
  {
    key: 'broker.port',
    type: 'int',
    default: 61612,
    env: 'ACTIVEMQ_PORT',
    flag: 'broker-port',
    min: 1,
    max: 65535,
    doc: 'STOMP port (61612 on the BNL Artemis, 61613 in docker-compose and Debian ActiveMQ).',
  },
  {
    key: 'broker.user',
    type: 'string',
    default: 'admin',
    env: 'ACTIVEMQ_USER',
    flag: 'broker-user',
    doc: 'STOMP login.',
  },
  {
    key: 'broker.password',
    type: 'string',
    default: 'admin',
    env: 'ACTIVEMQ_PASSWORD',
    flag: 'broker-password',
    secret: true,
    doc: 'STOMP passcode (never logged).',
  },
  {
    key: 'broker.use_ssl',
    type: 'bool',
    default: false,
    env: 'ACTIVEMQ_USE_SSL',
    flag: 'broker-ssl',
    doc: 'Connect with TLS; there is no plaintext fallback.',
  },
  {
    key: 'broker.ssl_ca_certs',
    type: 'string',
    default: '',
    env: 'ACTIVEMQ_SSL_CA_CERTS',
    flag: 'broker-ca-certs',
    doc: 'PEM CA bundle that verifies the broker (empty: the system CAs).',
  },
  {
    key: 'broker.heartbeat_ms',
    type: 'int',
    default: 10000,
    env: 'FASTMON_BROKER_HEARTBEAT_MS',
    flag: 'broker-heartbeat-ms',
    min: 0,
    doc: 'STOMP heart-beat offered both ways, in ms (0: none). BaseAgent uses 30000.',
  },
  {
    key: 'broker.reconnect_max_ms',
    type: 'int',
    default: 30000,
    env: 'FASTMON_RECONNECT_MAX_MS',
    flag: 'reconnect-max-ms',
    min: 100,
    doc: 'Upper bound of the exponential reconnect backoff (starts at 250 ms).',
  },
  {
    key: 'broker.subscription',
    type: 'string',
    default: '/topic/epictopic',
    env: 'FASTMON_SUBSCRIPTION',
    flag: 'subscription',
    check: destination as (v: never) => string | undefined,
    doc: 'Destination the agent consumes stf_ready and run lifecycle messages from.',
  },
  {
    key: 'broker.broadcast',
    type: 'list',
    default: ['/topic/epictopic'],
    env: 'FASTMON_BROADCAST',
    flag: 'broadcast',
    check: ((list: string[]) => list.map(destination).find((e) => e !== undefined)) as (
      v: never,
    ) => string | undefined,
    doc: 'Destinations of tf_file_registered and fastmon_status; add /topic/fastmon_client for the original client.',
  },
  {
    key: 'broker.skip_own_broadcasts',
    type: 'bool',
    default: true,
    env: 'FASTMON_SKIP_OWN_BROADCASTS',
    flag: 'skip-own-broadcasts',
    doc: 'Subscribe with a selector that keeps fastmon broadcasts (msg_type header) away from the agent.',
  },
  // swf-monitor.
  {
    key: 'monitor.url',
    type: 'string',
    default: '',
    env: 'SWF_MONITOR_URL',
    flag: 'monitor-url',
    doc: 'swf-monitor base URL including any sub-path. Empty: register into the local catalog.',
  },
  {
    key: 'monitor.token',
    type: 'string',
    default: '',
    env: 'SWF_API_TOKEN',
    flag: 'monitor-token',
    secret: true,
    doc: 'DRF token sent as `Authorization: Token …` (never logged).',
  },
  {
    key: 'monitor.timeout_ms',
    type: 'int',
    default: 10000,
    env: 'FASTMON_MONITOR_TIMEOUT_MS',
    flag: 'monitor-timeout-ms',
    min: 100,
    doc: 'Per-request timeout (headers and body), as BaseAgent.',
  },
  {
    key: 'monitor.connections',
    type: 'int',
    default: 8,
    env: 'FASTMON_MONITOR_CONNECTIONS',
    flag: 'monitor-connections',
    min: 1,
    max: 256,
    doc: 'Keep-alive connections to swf-monitor; registrations of all in-flight STFs share them.',
  },
  {
    key: 'monitor.retries',
    type: 'int',
    default: 4,
    env: 'FASTMON_MONITOR_RETRIES',
    flag: 'monitor-retries',
    min: 0,
    max: 20,
    doc: 'Retries of a request after a timeout, connection error or 5xx (4xx are not retried).',
  },
  {
    key: 'monitor.retry_delay_ms',
    type: 'int',
    default: 500,
    env: 'FASTMON_MONITOR_RETRY_DELAY_MS',
    flag: 'monitor-retry-delay-ms',
    min: 0,
    doc: 'First retry delay; doubles each retry, with jitter.',
  },
  {
    key: 'monitor.heartbeat_interval_s',
    type: 'number',
    default: 60,
    env: 'FASTMON_HEARTBEAT_INTERVAL_S',
    flag: 'heartbeat-interval-s',
    min: 0.05,
    doc: 'Seconds between heartbeats to /api/systemagents/heartbeat/ (swf-monitor marks agents silent for 3 min as EXITED).',
  },
  // The agent.
  {
    key: 'agent.mode',
    type: 'enum',
    default: 'message',
    env: 'FASTMON_MODE',
    flag: 'mode',
    choices: ['message', 'continuous'],
    doc: 'message: driven by stf_ready; continuous: scan and watch directories.',
  },
  {
    key: 'agent.namespace',
    type: 'string',
    default: '',
    flag: 'namespace',
    doc: 'Testbed namespace; by default `[testbed] namespace` of the testbed config.',
  },
  {
    key: 'agent.testbed_config',
    type: 'string',
    default: '',
    env: 'SWF_TESTBED_CONFIG',
    flag: 'testbed-config',
    doc: 'Testbed TOML (a bare name means workflows/<name>); workflows/testbed.toml is used when present.',
  },
  {
    key: 'agent.log_level',
    type: 'enum',
    default: 'info',
    env: 'SWF_LOG_LEVEL',
    flag: 'log-level',
    choices: ['trace', 'debug', 'info', 'warn', 'warning', 'error', 'critical', 'fatal', 'silent'],
    doc: 'Log level; Python names (WARNING, CRITICAL) are accepted.',
  },
  {
    key: 'agent.data_roots',
    type: 'list',
    default: [],
    env: 'FASTMON_DATA_ROOTS',
    flag: 'data-root',
    doc: 'Directories STF files may be read from (env: separated by ":"); paths outside them are refused.',
  },
  {
    key: 'agent.output_dir',
    type: 'string',
    default: '',
    env: 'FASTMON_OUTPUT_DIR',
    flag: 'out',
    doc: 'Extract each TF sample of a binary STF to <out>/<run>/<tf_filename> (empty: no extraction).',
  },
  {
    key: 'agent.stf_checksum',
    type: 'bool',
    default: false,
    env: 'FASTMON_STF_CHECKSUM',
    flag: 'stf-checksum',
    doc: 'Compute the adler32 of STFs whose stf_ready has no checksum (reads the whole file, streaming).',
  },
  {
    key: 'agent.catalog',
    type: 'string',
    default: 'fastmon-catalog.jsonl',
    env: 'FASTMON_CATALOG',
    flag: 'catalog',
    doc: 'Local catalog file, used instead of swf-monitor when monitor.url is empty.',
  },
  {
    key: 'agent.workers',
    type: 'int',
    default: 0,
    env: 'FASTMON_WORKERS',
    flag: 'workers',
    min: 0,
    max: 256,
    doc: 'Worker threads reading STFs (0: one per available core).',
  },
  {
    key: 'agent.max_in_flight',
    type: 'int',
    default: 64,
    env: 'FASTMON_MAX_IN_FLIGHT',
    flag: 'max-in-flight',
    min: 1,
    doc: 'STFs processed at once (reading, registering, broadcasting); more wait in order.',
  },
  {
    key: 'agent.max_message_bytes',
    type: 'int',
    default: 1048576,
    env: 'FASTMON_MAX_MESSAGE_BYTES',
    flag: 'max-message-bytes',
    min: 1024,
    doc: 'Messages larger than this are refused unparsed.',
  },
  {
    key: 'agent.http_host',
    type: 'string',
    default: '127.0.0.1',
    env: 'FASTMON_HTTP_HOST',
    flag: 'http-host',
    doc: 'Address of the /healthz and /metrics endpoint.',
  },
  {
    key: 'agent.http_port',
    type: 'int',
    default: 9464,
    env: 'FASTMON_HTTP_PORT',
    flag: 'http-port',
    min: -1,
    max: 65535,
    doc: 'Port of /healthz and /metrics (0: any free port, -1: off).',
  },
  {
    key: 'agent.drain_timeout_s',
    type: 'number',
    default: 8,
    env: 'FASTMON_DRAIN_TIMEOUT_S',
    flag: 'drain-timeout-s',
    min: 0,
    doc: 'On SIGINT/SIGTERM/SIGQUIT, how long in-flight work may take to finish (supervisord waits 10 s).',
  },
  // Sampling.
  {
    key: 'sampling.stf_selection_fraction',
    type: 'number',
    default: 1.0,
    env: 'FASTMON_STF_SELECTION_FRACTION',
    flag: 'stf-selection-fraction',
    min: 0,
    max: 1,
    doc: 'Fraction of STFs sampled, chosen deterministically from seed, run and STF name.',
  },
  {
    key: 'sampling.tf_files_per_stf',
    type: 'int',
    default: 7,
    env: 'FASTMON_TF_FILES_PER_STF',
    flag: 'tf-files-per-stf',
    min: 1,
    max: 10000,
    doc: 'TF samples (FastMonFile rows) per STF.',
  },
  {
    key: 'sampling.tf_size_fraction',
    type: 'number',
    default: 0.15,
    env: 'FASTMON_TF_SIZE_FRACTION',
    flag: 'tf-size-fraction',
    min: 0.0001,
    max: 1,
    doc: 'Each sample spans about this fraction of its 1/N partition of the STF.',
  },
  {
    key: 'sampling.tf_count_default',
    type: 'int',
    default: 1000,
    env: 'FASTMON_TF_COUNT_DEFAULT',
    flag: 'tf-count-default',
    min: 1,
    doc: 'TFs per STF when neither the message nor the file says.',
  },
  {
    key: 'sampling.tf_sequence_start',
    type: 'int',
    default: 1,
    env: 'FASTMON_TF_SEQUENCE_START',
    flag: 'tf-sequence-start',
    min: 0,
    doc: 'Number of the first sample in TF file names (`…_tf_001.tf`).',
  },
  {
    key: 'sampling.seed',
    type: 'string',
    default: 'swf-fastmon',
    env: 'FASTMON_SEED',
    flag: 'seed',
    doc: 'Sampling seed: the same seed, run, STF and settings give the same ranges everywhere.',
  },
  {
    key: 'sampling.sample_only_in_physics',
    type: 'bool',
    default: true,
    env: 'FASTMON_SAMPLE_ONLY_IN_PHYSICS',
    flag: 'sample-only-in-physics',
    doc: 'Skip STFs known to be outside run/physics; unknown state is sampled.',
  },
];

export const KEYS_BY_NAME: ReadonlyMap<string, KeySpec> = new Map(KEYS.map((k) => [k.key, k]));
