import { describe, expect, it } from 'vitest';
import { loadConfig, printableConfig } from '../src/config/load.js';
import { registerSecret } from '../src/log/redact.js';
import { captureLogs } from './support/logs.js';
import { rememberSecret } from './support/secrets.js';

describe('secret redaction in logs', () => {
  it('masks registered secrets, tokens in headers and credentials inside URLs, wherever they appear', () => {
    const token = 'abcdef0123456789abcdef0123456789abcdef01';
    const password = 'brokerpass-9f8e7d';
    registerSecret(token);
    registerSecret(password);
    rememberSecret(token);
    rememberSecret(password);
    rememberSecret('urlsecret77');
    const logs = captureLogs();
    logs.logger.info({ headers: { authorization: `Token ${token}` } }, 'request');
    logs.logger.error(
      { err: new Error(`connect failed for admin:${password}`) },
      `retrying with ${password}`,
    );
    logs.logger.warn({ url: 'https://user:urlsecret77@monitor.example/swf-monitor/api/' }, 'redirected');
    logs.logger.info({ nested: { deeper: [{ token }] }, password }, 'config');
    const text = logs.text();
    expect(text).not.toContain(token);
    expect(text).not.toContain(password);
    expect(text).not.toContain('urlsecret77');
    expect(text.match(/\[redacted\]/g)?.length).toBeGreaterThanOrEqual(4);
  });
});

describe('redaction masks real secrets and only them', () => {
  it('masks secrets in values bound into child loggers', () => {
    const token = 'childtoken-5c4b3a2910fedcba';
    registerSecret(token);
    rememberSecret(token);
    const logs = captureLogs();
    logs.logger
      .child({ source: 'sse', endpoint: `https://monitor.example/stream?key=${token}`, token })
      .info('connecting');
    const text = logs.text();
    expect(text).not.toContain(token);
    expect(logs.records()[0]).toMatchObject({
      source: 'sse',
      endpoint: 'https://monitor.example/stream?key=[redacted]',
      token: '[redacted]',
    });
  });

  it('leaves a short default password like admin alone in paths and user names, but masks it as a password', () => {
    registerSecret('admin');
    const logs = captureLogs();
    logs.logger.info(
      { dirs: ['/tmp/fmadmin/admin-data'], user: 'admin', password: 'admin', msgId: 'admin-1' },
      'scan starting in /tmp/fmadmin',
    );
    logs.logger.warn('CONNECT refused: login:admin passcode:admin; url stomp://admin:admin@broker:61613');
    const [first, second] = logs.records();
    expect(first).toMatchObject({
      dirs: ['/tmp/fmadmin/admin-data'],
      user: 'admin',
      password: '[redacted]',
      msgId: 'admin-1',
      msg: 'scan starting in /tmp/fmadmin',
    });
    expect(second?.msg).toBe(
      'CONNECT refused: login:admin passcode:[redacted]; url stomp://[redacted]@broker:61613',
    );
  });

  it('--print-config shows the user and masks the password and token', () => {
    const { config } = loadConfig({
      env: { ACTIVEMQ_USER: 'admin', ACTIVEMQ_PASSWORD: 'admin', SWF_API_TOKEN: 'printtoken-0123456789' },
      cwd: '/',
    });
    const printed = printableConfig(config);
    expect(printed.broker?.user).toBe('admin');
    expect(printed.broker?.password).toBe('[redacted]');
    expect(printed.monitor?.token).toBe('[redacted]');
    expect(JSON.stringify(printed)).not.toContain('printtoken-0123456789');
  });
});
