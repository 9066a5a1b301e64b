// Vitest globalSetup: make sure the real broker the tests use (FASTMON_TEST_BROKER=artemis|classic) answers
// STOMP, and tell the tests which one and where through inject('brokerKind'), inject('stompPort'), ...
import { existsSync, readFileSync } from 'node:fs';
import { isIP, Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
// The empty type import lets TypeScript (NodeNext) resolve 'vitest' for the augmentation below.
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';
import { providePostgres } from './postgres-probe.js';

/** The two brokers the tests run against: ActiveMQ Artemis (the testbed's) and ActiveMQ Classic. */
export type BrokerKind = 'artemis' | 'classic';

/**
 * How the STOMP acceptor maps destinations. 'prefixed': `/topic/x` is the multicast address `x` and
 * `/queue/x` the anycast address `x` (Classic always; Artemis with anycastPrefix/multicastPrefix).
 * 'literal': the destination is the address name itself (`artemis create`'s default acceptor).
 */
export type AcceptorStyle = 'prefixed' | 'literal';

declare module 'vitest' {
  export interface ProvidedContext {
    /** false only when FASTMON_TESTS_WITHOUT_BROKER=1 outside CI and no broker answers. */
    brokerAvailable: boolean;
    /** The broker selected by FASTMON_TEST_BROKER (default artemis). */
    brokerKind: BrokerKind;
    /** The destination style of the acceptor on stompPort. */
    stompStyle: AcceptorStyle;
    stompHost: string;
    stompPort: number;
    /** Artemis only: the port of the acceptor of the other style (0 on Classic or when it does not answer). */
    stompOtherStylePort: number;
    /** 0 when no STOMP+TLS connector answers. */
    stompTlsPort: number;
    /** Path of the PEM CA certificate that signed the broker's TLS certificate ('' without TLS). */
    stompTlsCa: string;
  }
}

const DEFAULT_HOST = '127.0.0.1';
/** Where test/setup/activemq.sh and test/setup/artemis.sh put each broker. */
const BROKERS = {
  classic: {
    name: 'ActiveMQ Classic',
    script: 'test/setup/activemq.sh',
    port: 61613,
    tlsPort: 61614,
    otherStylePort: 0,
    tlsCa: '/etc/activemq/instances-available/main/fastmon-test-ca.pem',
  },
  artemis: {
    name: 'ActiveMQ Artemis',
    script: 'test/setup/artemis.sh',
    // The default acceptor of `artemis create` (no prefix stripping), as the testbed's docker image.
    port: 61713,
    tlsPort: 61714,
    // The acceptor with anycastPrefix=/queue/;multicastPrefix=/topic/.
    otherStylePort: 61715,
    tlsCa: '/var/lib/artemis-fastmon/etc/fastmon-test-ca.pem',
  },
} as const;
const PROBE_TIMEOUT_MS = 2_000;

/** FASTMON_TEST_BROKER, checked: the one switch between the two test brokers. */
export function selectedBroker(env: NodeJS.ProcessEnv = process.env): BrokerKind {
  const raw = env.FASTMON_TEST_BROKER;
  if (raw === undefined || raw === '') return 'artemis';
  if (raw === 'artemis' || raw === 'classic') return raw;
  throw new Error(`FASTMON_TEST_BROKER=${raw}: expected artemis or classic`);
}

function portFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new Error(`${name}=${raw} is not a valid TCP port`);
  }
  return port;
}

/**
 * Sends a STOMP CONNECT on a fresh socket and resolves with null when the server answers CONNECTED,
 * or with the reason it did not. Never rejects.
 */
function probeStomp(open: () => Socket, readyEvent: 'connect' | 'secureConnect'): Promise<string | null> {
  return new Promise((resolve) => {
    let settled = false;
    let received = '';
    const socket = open();
    const finish = (reason: string | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (reason === null) {
        socket.end('DISCONNECT\n\n\0');
      } else {
        socket.destroy();
      }
      resolve(reason);
    };
    const timer = setTimeout(() => finish(`no STOMP answer within ${PROBE_TIMEOUT_MS} ms`), PROBE_TIMEOUT_MS);
    socket.setEncoding('utf8');
    socket.once('error', (error: NodeJS.ErrnoException) => finish(error.code ?? error.message));
    socket.once('close', () => finish('connection closed before CONNECTED'));
    socket.on('data', (chunk: string) => {
      received += chunk;
      const start = received.replace(/^[\r\n]+/, '');
      const eol = start.search(/\r?\n/);
      if (eol < 0) return;
      const command = start.slice(0, eol);
      if (command === 'CONNECTED') {
        finish(null);
      } else {
        const message = /\nmessage:([^\r\n]*)/.exec(start)?.[1];
        finish(`answered ${command}${message ? `: ${message}` : ''}`);
      }
    });
    socket.once(readyEvent, () => {
      socket.write(
        'CONNECT\naccept-version:1.1,1.2\nhost:/\nlogin:admin\npasscode:admin\nheart-beat:0,0\n\n\0',
      );
    });
  });
}

export default async function setup({ provide }: TestProject): Promise<void> {
  const kind = selectedBroker();
  const broker = BROKERS[kind];
  const host = process.env.FASTMON_TEST_STOMP_HOST || DEFAULT_HOST;
  const port = portFromEnv('FASTMON_TEST_STOMP_PORT', broker.port);
  const tlsPort = portFromEnv('FASTMON_TEST_STOMP_TLS_PORT', broker.tlsPort);
  const tlsCa = process.env.FASTMON_TEST_STOMP_TLS_CA || broker.tlsCa;
  provide('brokerKind', kind);
  provide('stompHost', host);
  provide('stompPort', port);
  provide('stompStyle', kind === 'artemis' && port === BROKERS.artemis.port ? 'literal' : 'prefixed');
  provide('stompOtherStylePort', 0);
  process.stderr.write(`Test broker: ${broker.name} (FASTMON_TEST_BROKER=${kind}), STOMP ${host}:${port}\n`);
  await providePostgres(provide); // test/setup/postgres.sh's cluster (issue 14)

  const failure = await probeStomp(() => new Socket().connect(port, host), 'connect');
  if (failure !== null) {
    const diagnosis =
      `No ${broker.name} broker answers STOMP on ${host}:${port} (${failure}).\n` +
      `The tests need a real ${broker.name} broker (FASTMON_TEST_BROKER=${kind}) with STOMP on ` +
      `${DEFAULT_HOST}:${broker.port}. Install/configure/start it with:\n\n` +
      `    sudo bash ${broker.script}\n\n` +
      '(`npm test` runs that script through its `pretest` step; `npx vitest` does not.)\n' +
      'FASTMON_TEST_BROKER=artemis|classic selects the broker (default artemis); ' +
      'FASTMON_TEST_STOMP_HOST / FASTMON_TEST_STOMP_PORT point the tests at another one.';
    if (process.env.CI !== 'true' && process.env.FASTMON_TESTS_WITHOUT_BROKER === '1') {
      const bar = '!'.repeat(100);
      process.stderr.write(
        `\n${bar}\n!!! FASTMON_TESTS_WITHOUT_BROKER=1: running WITHOUT a broker; broker tests will not run.\n` +
          `${diagnosis}\n${bar}\n\n`,
      );
      provide('brokerAvailable', false);
      provide('stompTlsPort', 0);
      provide('stompTlsCa', '');
      return;
    }
    throw new Error(
      `${diagnosis}\nOnly outside CI, FASTMON_TESTS_WITHOUT_BROKER=1 runs the suite without a broker.`,
    );
  }
  provide('brokerAvailable', true);

  if (broker.otherStylePort !== 0) {
    const other = await probeStomp(() => new Socket().connect(broker.otherStylePort, host), 'connect');
    if (other !== null) {
      throw new Error(
        `${broker.name}'s second STOMP acceptor on ${host}:${broker.otherStylePort} does not answer (${other}): ` +
          `rerun sudo bash ${broker.script} restart`,
      );
    }
    provide('stompOtherStylePort', broker.otherStylePort);
  }

  let tlsFailure: string | null = `CA certificate ${tlsCa} not found`;
  if (existsSync(tlsCa)) {
    const ca = readFileSync(tlsCa);
    tlsFailure = await probeStomp(
      () => tlsConnect({ host, port: tlsPort, ca, ...(isIP(host) ? {} : { servername: host }) }),
      'secureConnect',
    );
  }
  provide('stompTlsPort', tlsFailure === null ? tlsPort : 0);
  provide('stompTlsCa', tlsFailure === null ? tlsCa : '');
  if (tlsFailure !== null) {
    process.stderr.write(
      `STOMP+TLS on ${host}:${tlsPort} not available (${tlsFailure}): TLS tests will skip.\n`,
    );
  }
}
