// DRF's field validation for the monitor double: a ModelSerializer's conversions and error messages for the
// field kinds swf-monitor's models use, and the helpers every resource's serializer shares.

export type Errors = Record<string, string[]>;
export type Body = Record<string, unknown>;
export type Mode = 'create' | 'put' | 'patch';

class FieldError extends Error {}

export interface Field {
  kind: 'int' | 'bigint' | 'float' | 'bool' | 'string' | 'choice' | 'datetime' | 'uuid' | 'json' | 'ref';
  required?: boolean;
  nullable?: boolean;
  blank?: boolean;
  maxLength?: number;
  min?: number;
  choices?: readonly string[];
  /** The model default, applied on create when the field is absent (null otherwise). */
  default?: () => unknown;
}

const INT32_MAX = 2147483647;
// Python's int() after DRF strips a trailing '.0', so "12" and "12.0" are integers but "1.5" is not.
const INTEGER_TEXT = /^\s*[-+]?\d+(\.0*)?\s*$/;
const ISO_DATETIME =
  /^(\d{4})-(\d{1,2})-(\d{1,2})[T ](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:[.,](\d{1,6})\d*)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;
const UUID_TEXT = /^([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})$/i;
const TRUE_TEXT = new Set(['t', 'y', 'yes', 'true', 'on', '1']);
const FALSE_TEXT = new Set(['f', 'n', 'no', 'false', 'off', '0']);
const DATETIME_ERROR =
  'Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].';

function toInteger(value: unknown, field: Field): number {
  let n: number;
  if (typeof value === 'number' && Number.isInteger(value)) n = value;
  else if (typeof value === 'string' && INTEGER_TEXT.test(value)) n = Number.parseInt(value, 10);
  else throw new FieldError('A valid integer is required.');
  const max = field.kind === 'int' ? INT32_MAX : Number.MAX_SAFE_INTEGER;
  const min = field.min ?? (field.kind === 'int' ? -INT32_MAX - 1 : Number.MIN_SAFE_INTEGER);
  if (n > max) throw new FieldError(`Ensure this value is less than or equal to ${max}.`);
  if (n < min) throw new FieldError(`Ensure this value is greater than or equal to ${min}.`);
  return n;
}

function toText(value: unknown, field: Field): string {
  if (typeof value !== 'string' && typeof value !== 'number') throw new FieldError('Not a valid string.');
  const text = String(value).trim(); // DRF CharField trims by default
  if (text === '' && !field.blank) throw new FieldError('This field may not be blank.');
  if (field.maxLength !== undefined && text.length > field.maxLength) {
    throw new FieldError(`Ensure this field has no more than ${field.maxLength} characters.`);
  }
  return text;
}

function toBoolean(value: unknown): boolean {
  if (value === true || value === 1) return true;
  if (value === false || value === 0) return false;
  if (typeof value === 'string' && TRUE_TEXT.has(value.toLowerCase())) return true;
  if (typeof value === 'string' && FALSE_TEXT.has(value.toLowerCase())) return false;
  throw new FieldError('Must be a valid boolean.');
}

function toFloat(value: unknown): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isFinite(n)) throw new FieldError('A valid number is required.');
  return n;
}

/** DRF renders datetimes as ISO 8601 in UTC with 'Z' and microseconds only when non-zero. */
function formatDateTime(epochMs: number, micros = ''): string {
  const fraction = /^0*$/.test(micros) ? '' : `.${micros.padEnd(6, '0')}`;
  return `${new Date(epochMs).toISOString().slice(0, 19)}${fraction}Z`;
}

export function now(): string {
  const ms = Date.now();
  return formatDateTime(ms, String(ms % 1000).padStart(3, '0'));
}

/** Django's parse_datetime; naive values are taken as UTC (the double's TIME_ZONE). */
function toDateTime(value: unknown): string {
  const m = typeof value === 'string' ? ISO_DATETIME.exec(value.trim()) : null;
  const parts = (m?.slice(1, 7) ?? []).map((part) => Number(part ?? 0));
  const [year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0] = parts;
  const wallClock = Date.UTC(year, month - 1, day, hour, minute, second);
  const date = new Date(wallClock);
  // Date.UTC rolls 02-30 over into March; Django refuses such dates with the same message as a bad format.
  const real = date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
  if (!m || !real || hour > 23 || minute > 59 || second > 59) throw new FieldError(DATETIME_ERROR);
  return formatDateTime(wallClock - zoneOffsetMinutes(m[8]) * 60_000, m[7] ?? '');
}

/** 'Z', '+HH', '+HHMM' or '+HH:MM' as minutes east of UTC. */
function zoneOffsetMinutes(zone: string | undefined): number {
  if (zone === undefined || zone.toUpperCase() === 'Z') return 0;
  const digits = zone.slice(1).replace(':', '');
  const minutes = Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2) || 0);
  return zone.startsWith('-') ? -minutes : minutes;
}

export function toUuid(value: unknown): string | undefined {
  const m = typeof value === 'string' ? UUID_TEXT.exec(value) : null;
  return m ? m.slice(1, 6).join('-').toLowerCase() : undefined;
}

function convert(field: Field, value: unknown): unknown {
  if (value === null) {
    if (field.nullable) return null;
    throw new FieldError('This field may not be null.');
  }
  switch (field.kind) {
    case 'int':
    case 'bigint':
      return toInteger(value, field);
    case 'float':
      return toFloat(value);
    case 'bool':
      return toBoolean(value);
    case 'string':
      return toText(value, field);
    case 'choice':
      if (
        (typeof value === 'string' || typeof value === 'number') &&
        field.choices?.includes(String(value))
      ) {
        return String(value);
      }
      throw new FieldError(`"${String(value)}" is not a valid choice.`);
    case 'datetime':
      return toDateTime(value);
    case 'uuid': {
      const uuid = toUuid(value);
      if (uuid === undefined) throw new FieldError('Must be a valid UUID.');
      return uuid;
    }
    default:
      return value; // json, and relations resolved by the table that owns them
  }
}

/** Field-level validation of a serializer: every field is checked and every error reported at once. */
export function readFields(
  spec: Record<string, Field>,
  body: Body,
  mode: Mode,
): { values: Body; errors: Errors } {
  const values: Body = {};
  const errors: Errors = {};
  for (const [name, field] of Object.entries(spec)) {
    if (!Object.hasOwn(body, name)) {
      if (field.required && mode !== 'patch') errors[name] = ['This field is required.'];
      else if (mode === 'create') values[name] = field.default ? field.default() : null;
      continue;
    }
    try {
      values[name] = convert(field, body[name]);
    } catch (error) {
      if (!(error instanceof FieldError)) throw error;
      errors[name] = [error.message];
    }
  }
  return { values, errors };
}

/**
 * A UniqueValidator; `self` is the row being updated, which does not collide with itself. `message` is
 * Django's "<model verbose name> with this <field verbose name> already exists."
 */
export function checkUnique<K, T>(
  errors: Errors,
  field: string,
  values: Body,
  index: Map<K, T>,
  self: T | undefined,
  message: string,
) {
  if (errors[field] || !Object.hasOwn(values, field)) return;
  const other = index.get(values[field] as K);
  if (other !== undefined && other !== self) errors[field] = [message];
}

export const hasErrors = (errors: Errors) => Object.keys(errors).length > 0;

/** Python's name for a JSON value's type, as DRF prints it in type errors. */
export function pythonType(value: unknown): string {
  if (value === null) return 'NoneType';
  if (Array.isArray(value)) return 'list';
  if (typeof value === 'number') return Number.isInteger(value) ? 'int' : 'float';
  return { string: 'str', boolean: 'bool', object: 'dict' }[typeof value as string] ?? typeof value;
}

/** A serializer given something other than a JSON object as its data. */
export function notADictionary(value: unknown): Errors | undefined {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) return undefined;
  return { non_field_errors: [`Invalid data. Expected a dictionary, but got ${pythonType(value)}.`] };
}

export type Outcome<T> = { row: T } | { errors: Errors };
export type Listed<T> = { rows: readonly T[] } | { errors: Errors };

/** django-filter ChoiceFilter: empty means no filter, an unknown value is a 400. */
export function choiceFilter(
  query: URLSearchParams,
  name: string,
  choices: readonly string[],
  errors: Errors,
) {
  const value = query.get(name) || undefined;
  if (value !== undefined && !choices.includes(value)) {
    errors[name] = [`Select a valid choice. ${value} is not one of the available choices.`];
  }
  return value;
}

export const optionalText = (maxLength?: number): Field => ({
  kind: 'string',
  nullable: true,
  blank: true,
  maxLength,
});
export const optional = (kind: Field['kind']): Field => ({ kind, nullable: true });
export const counter: Field = { kind: 'int', default: () => 0 };
