// Secrets the tests hand to agents (monitor tokens, broker passwords): none may show up in a log line.

export const knownSecrets = new Set<string>();

export function rememberSecret(value: string | undefined): void {
  if (value && value.length >= 8) knownSecrets.add(value);
}
