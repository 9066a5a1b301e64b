// The slice of stompit 1.0 we use, typed here once: @types/stompit lags the library (README).

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

export interface StompitClient {
  headers?: Record<string, string>;
  on(event: 'error', listener: (err: Error) => void): void;
  on(event: 'end', listener: () => void): void;
  send(headers: Record<string, string>, options?: { onReceipt?: () => void }): StompitWriter;
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
