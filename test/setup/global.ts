// Vitest globalSetup: make sure the real ActiveMQ broker the tests use answers STOMP, and tell the
// tests where it is through inject('stompHost'), inject('stompPort'), inject('stompTlsPort'), ...
import { existsSync, readFileSync } from 'node:fs';
import { isIP, Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
// The empty type import lets TypeScript (NodeNext) resolve 'vitest' for the augmentation below.
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';
import { providePostgres } from './postgres-probe.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** false only when FASTMON_TESTS_WITHOUT_BROKER=1 outside CI and no broker answers. */
    brokerAvailable: boolean;
    stompHost: string;
    stompPort: number;
    /** 0 when no STOMP+TLS connector answers. */
    stompTlsPort: number;
    /** Path of the PEM CA certificate that signed the broker's TLS certificate ('' without TLS). */
    stompTlsCa: string;
  }
}

const DEFAULT_HOST = '127.0.0.1';
const DEFAULT_PORT = 61613;
const DEFAULT_TLS_PORT = 61614;
const DEFAULT_TLS_CA = '/etc/activemq/instances-available/main/fastmon-test-ca.pem';
const PROBE_TIMEOUT_MS = 2_000;

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
  const host = process.env.FASTMON_TEST_STOMP_HOST || DEFAULT_HOST;
  const port = portFromEnv('FASTMON_TEST_STOMP_PORT', DEFAULT_PORT);
  const tlsPort = portFromEnv('FASTMON_TEST_STOMP_TLS_PORT', DEFAULT_TLS_PORT);
  const tlsCa = process.env.FASTMON_TEST_STOMP_TLS_CA || DEFAULT_TLS_CA;
  provide('stompHost', host);
  provide('stompPort', port);
  await providePostgres(provide); // test/setup/postgres.sh's cluster (issue 14)

  const failure = await probeStomp(() => new Socket().connect(port, host), 'connect');
  if (failure !== null) {
    const diagnosis =
      `No ActiveMQ broker answers STOMP on ${host}:${port} (${failure}).\n` +
      'The tests need a real ActiveMQ Classic broker (Debian package `activemq`) with STOMP on ' +
      `${DEFAULT_HOST}:${DEFAULT_PORT}. Install/configure/start it with:\n\n` +
      '    sudo bash test/setup/activemq.sh\n\n' +
      '(`npm test` runs that script through its `pretest` step; `npx vitest` does not.)\n' +
      'Point the tests at another broker with FASTMON_TEST_STOMP_HOST / FASTMON_TEST_STOMP_PORT.';
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
