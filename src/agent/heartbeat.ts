// Heartbeats to swf-monitor as swf-common-lib's BaseAgent sends them: at start, on a timer, on change, EXITED last.

import { hostname } from 'node:os';
import { messageOf } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { HeartbeatBody, MonitorClient } from '../monitor/client.js';

export type OperationalState = HeartbeatBody['operational_state'];

export interface HeartbeatSource {
  name: () => string;
  namespace: string | null;
  mqConnected: () => boolean;
  /** Broker configured at all; without one "MQ: disconnected" would be a false alarm. */
  usesBroker: boolean;
  operationalState: () => OperationalState;
  /** Counters appended to the description (swf-monitor ignores unknown heartbeat keys). */
  summary: () => string;
  /** The agent's /metrics URL, sent as agent_url (a key the heartbeat view stores); null: none. */
  agentUrl?: () => string | null;
}

/** State-change heartbeats closer together than this are merged into one. */
const MIN_GAP_MS = 2000;

export class Heartbeats {
  private timer: NodeJS.Timeout | null = null;
  private pendingChange: NodeJS.Timeout | null = null;
  private lastSent = 0;
  private lastKey = '';
  private stopped = false;
  private sending: Promise<void> = Promise.resolve();

  constructor(
    private readonly client: MonitorClient,
    private readonly source: HeartbeatSource,
    private readonly intervalMs: number,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.send();
    this.timer = setInterval(() => this.send(), this.intervalMs);
    this.timer.unref();
  }

  /** Call when MQ connectivity or operational state may have changed; sends only on a real change. */
  changed(): void {
    if (this.stopped || this.key() === this.lastKey) return;
    if (this.pendingChange) return;
    const wait = Math.max(0, this.lastSent + MIN_GAP_MS - Date.now());
    this.pendingChange = setTimeout(() => {
      this.pendingChange = null;
      if (this.key() !== this.lastKey) this.send();
    }, wait);
    this.pendingChange.unref();
  }

  /** The last heartbeat: EXITED, as BaseAgent's report_agent_status("EXITED", "Agent shutdown"). */
  async exit(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.pendingChange) clearTimeout(this.pendingChange);
    await this.sending;
    await this.post(this.body('EXITED', 'EXITED', 'Agent shutdown'));
  }

  private key(): string {
    return `${this.source.mqConnected()}/${this.source.operationalState()}`;
  }

  private send(): void {
    if (this.stopped) return;
    const connected = this.source.mqConnected();
    const status = !this.source.usesBroker || connected ? 'OK' : 'WARNING';
    this.lastKey = this.key();
    this.lastSent = Date.now();
    const body = this.body(status, this.source.operationalState());
    this.sending = this.sending.then(() => this.post(body));
  }

  private body(status: HeartbeatBody['status'], state: OperationalState, note?: string): HeartbeatBody {
    const mq = this.source.usesBroker ? (this.source.mqConnected() ? 'connected' : 'disconnected') : 'none';
    const description = [`fastmon agent. MQ: ${mq}`, this.source.summary(), note].filter(Boolean).join('. ');
    const body: HeartbeatBody = {
      instance_name: this.source.name(),
      agent_type: 'fastmon',
      status,
      description,
      mq_connected: this.source.mqConnected(),
      pid: process.pid,
      hostname: hostname(),
      operational_state: state,
      workflow_enabled: true,
    };
    if (this.source.namespace) body.namespace = this.source.namespace;
    const url = this.source.agentUrl?.();
    if (url) body.agent_url = url;
    return body;
  }

  private async post(body: HeartbeatBody): Promise<void> {
    try {
      await this.client.heartbeat(body);
      this.logger.debug({ status: body.status, state: body.operational_state }, 'heartbeat sent');
    } catch (err) {
      // A missed heartbeat is not fatal: the next one follows, and swf-monitor waits 3 min.
      this.logger.warn(
        { err: { message: messageOf(err), code: (err as { code?: string }).code } },
        'heartbeat failed',
      );
    }
  }
}
