// After each test file: every log line captured in it is scanned for the secrets the tests used.

import { afterAll, expect } from 'vitest';
import { allCapturedText } from '../support/logs.js';
import { knownSecrets } from '../support/secrets.js';

afterAll(() => {
  const text = allCapturedText.join('');
  for (const secret of knownSecrets) {
    expect(text.includes(secret), `a secret (${secret.slice(0, 3)}…) appears in the captured logs`).toBe(
      false,
    );
  }
});
