// The Subscriber resource of the monitor double: /api/subscribers/, `subscriber_name` unique.

import {
  type Body,
  checkUnique,
  counter,
  type Field,
  hasErrors,
  now,
  type Outcome,
  optional,
  optionalText,
  readFields,
} from './drf.js';
import { json, type Route, route, saved } from './http.js';

export interface SubscriberRow {
  subscriber_id: number;
  subscriber_name: string;
  fraction: number | null;
  description: string | null;
  is_active: boolean;
  delivery_type: 'activemq' | 'sse';
  client_ip: string | null;
  client_location: string | null;
  connected_at: string | null;
  disconnected_at: string | null;
  last_activity: string | null;
  message_filters: unknown;
  messages_received: number;
  messages_sent: number;
  messages_dropped: number;
  created_at: string;
  updated_at: string;
}

const SUBSCRIBER_FIELDS: Record<string, Field> = {
  subscriber_name: { kind: 'string', maxLength: 255, required: true },
  fraction: optional('float'),
  description: optionalText(),
  is_active: { kind: 'bool', default: () => true },
  delivery_type: { kind: 'choice', choices: ['activemq', 'sse'], default: () => 'activemq' },
  client_ip: optionalText(39),
  client_location: optionalText(255),
  connected_at: optional('datetime'),
  disconnected_at: optional('datetime'),
  last_activity: optional('datetime'),
  message_filters: optional('json'),
  messages_received: counter,
  messages_sent: counter,
  messages_dropped: counter,
};

export class SubscriberTable {
  readonly rows: SubscriberRow[] = [];
  private readonly byName = new Map<string, SubscriberRow>();
  private nextId = 1;

  reset(): void {
    this.rows.length = 0;
    this.byName.clear();
    this.nextId = 1;
  }

  create(body: Body): Outcome<SubscriberRow> {
    const { values, errors } = readFields(SUBSCRIBER_FIELDS, body, 'create');
    const taken = 'subscriber with this subscriber name already exists.';
    checkUnique(errors, 'subscriber_name', values, this.byName, undefined, taken);
    if (hasErrors(errors)) return { errors };
    const stamp = now();
    const row = { subscriber_id: this.nextId++, ...values, created_at: stamp, updated_at: stamp };
    const subscriber = row as unknown as SubscriberRow;
    this.rows.push(subscriber);
    this.byName.set(subscriber.subscriber_name, subscriber);
    return { row: subscriber };
  }

  routes(): Route[] {
    return [
      route('subscribers', 'writes', {
        GET: () => json(200, this.rows),
        POST: (call) => saved(this.create(call.body), 201),
      }),
    ];
  }
}
