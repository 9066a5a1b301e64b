// The slice of stompit 1.0 we use, typed here once (@types/stompit lags the library), and the one place that leans on how it works inside.

import stompitModule from 'stompit';

export interface StompitFrame {
  headers: Record<string, string>;
  readString(encoding: string, callback: (err: Error | null, body?: string) => void): void;
  /** A frame is a Readable of its body. */
  on(event: 'data', listener: (chunk: Buffer) => void): void;
  on(event: 'end', listener: () => void): void;
  on(event: 'error', listener: (err: Error) => void): void;
}

export interface StompitWriter {
  write(chunk: string): boolean;
  end(): void;
}

export interface StompitSubscription {
  unsubscribe(): void;
}

export interface StompitSendOptions {
  onReceipt?: () => void;
}

export interface StompitClient {
  headers?: Record<string, string>;
  on(event: 'error', listener: (err: Error) => void): void;
  on(event: 'end', listener: () => void): void;
  send(headers: Record<string, string>, options?: StompitSendOptions): StompitWriter;
  /** Any frame; `onReceipt` adds a `receipt` header and is called on its RECEIPT (stompit docs/api/client.md). */
  sendFrame(command: string, headers: Record<string, string>, options?: StompitSendOptions): StompitWriter;
  subscribe(
    headers: Record<string, string>,
    listener: (err: Error | null, message: StompitFrame) => void,
  ): StompitSubscription;
  ack(message: StompitFrame): void;
  disconnect(callback?: (err: Error | null) => void): void;
  destroy(err?: Error): void;
}

export const stompit = stompitModule as unknown as {
  connect(
    options: Record<string, unknown>,
    callback: (err: Error | null, client: StompitClient) => void,
  ): StompitClient;
};

/**
 * SUBSCRIBE with a receipt, so that a caller knows when the broker has the subscription: a message
 * sent to a topic before that is not delivered. stompit's subscribe() takes no options; its
 * documented sendFrame(command, headers, { onReceipt }) is how a frame asks for a RECEIPT, and
 * subscribe() sends the SUBSCRIBE through sendFrame, so for that one call sendFrame is given the
 * option. No private field of stompit is read or written. A stompit that stops sending SUBSCRIBE
 * through sendFrame makes this throw at once (test/stompit-adapter.test.ts) instead of leaving every
 * subscription unconfirmed.
 */
export function subscribeWithReceipt(
  client: StompitClient,
  headers: Record<string, string>,
  listener: (err: Error | null, message: StompitFrame) => void,
  onReceipt: () => void,
): StompitSubscription {
  const sendFrame = client.sendFrame;
  const own = Object.hasOwn(client, 'sendFrame');
  let asked = false;
  client.sendFrame = (command, frameHeaders, options) => {
    if (command !== 'SUBSCRIBE' || asked) return sendFrame.call(client, command, frameHeaders, options);
    asked = true;
    // `receipt` keeps its place before `id`, where fastmon always put it: the same frame, byte for byte.
    const { id, ...rest } = frameHeaders;
    const ordered: Record<string, string> = { ...rest, receipt: '' };
    if (id !== undefined) ordered.id = id;
    return sendFrame.call(client, command, ordered, { ...options, onReceipt });
  };
  try {
    const subscription = client.subscribe(headers, listener);
    if (!asked)
      throw new Error('stompit internals changed: subscribe() did not send SUBSCRIBE through sendFrame');
    return subscription;
  } finally {
    if (own) client.sendFrame = sendFrame;
    else delete (client as { sendFrame?: unknown }).sendFrame;
  }
}
