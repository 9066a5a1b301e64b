import { describe, expect, it } from 'vitest';
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
