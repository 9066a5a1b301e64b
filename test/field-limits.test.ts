import { describe, expect, it } from 'vitest';
import type { FastmonError } from '../src/errors.js';
import { decodeMessage } from '../src/messaging/codec.js';
import { FIELD_LIMITS } from '../src/messaging/limits.js';

function refusal(body: Record<string, unknown>): FastmonError | null {
  try {
    decodeMessage(JSON.stringify(body));
    return null;
  } catch (err) {
    return err as FastmonError;
  }
}

const STF = { msg_type: 'stf_ready', run_id: '101993', filename: 'swf.101993.000001.stf' };
const STF_FIELDS = [
  'run_id',
  'execution_id',
  'namespace',
  'sender',
  'state',
  'substate',
  'file_url',
  'checksum',
] as const;
const LIFECYCLE_FIELDS = ['run_id', 'execution_id', 'namespace', 'sender', 'state', 'substate'] as const;

describe('field length limits at the message boundary', () => {
  it.each(STF_FIELDS)(
    'takes stf_ready.%s at its limit and refuses one character more, naming it',
    (field) => {
      const limit = FIELD_LIMITS[field];
      expect(refusal({ ...STF, [field]: 'a'.repeat(limit) })).toBeNull();
      const err = refusal({ ...STF, [field]: 'a'.repeat(limit + 1) });
      expect(err?.code).toBe('MESSAGE_INVALID');
      expect(err?.details).toEqual({ field, length: limit + 1, limit });
    },
  );

  it.each(LIFECYCLE_FIELDS)('refuses a lifecycle message whose %s is over its limit', (field) => {
    const err = refusal({ msg_type: 'start_run', run_id: '1', [field]: 'b'.repeat(FIELD_LIMITS[field] + 1) });
    expect(err?.details).toMatchObject({ field });
  });

  it('limits the STF name without its directory and the whole path separately', () => {
    const base = `${'s'.repeat(FIELD_LIMITS.filename_base - 4)}.stf`;
    expect(refusal({ ...STF, filename: `/data/${base}` })).toBeNull();
    expect(refusal({ ...STF, filename: `/data/x${base}` })?.details).toMatchObject({
      field: 'filename_base',
    });
    const deep = `${'/d'.repeat(2100)}/swf.101993.000001.stf`;
    expect(refusal({ ...STF, filename: deep })?.details).toMatchObject({ field: 'filename' });
  });

  it('refuses an over-long msg_type, and an over-long namespace even on a message it would ignore', () => {
    expect(refusal({ msg_type: 'x'.repeat(FIELD_LIMITS.msg_type + 1) })?.details).toMatchObject({
      field: 'msg_type',
    });
    expect(
      refusal({ msg_type: 'slice', namespace: 'n'.repeat(FIELD_LIMITS.namespace + 1) })?.details,
    ).toMatchObject({
      field: 'namespace',
    });
    expect(refusal({ msg_type: 'x'.repeat(FIELD_LIMITS.msg_type) })).toBeNull();
  });

  it('keeps an integer run_id, whatever its size, short', () => {
    expect(refusal({ ...STF, run_id: Number.MAX_SAFE_INTEGER })).toBeNull();
    expect(refusal({ ...STF, run_id: 1e300 })?.code).toBe('MESSAGE_INVALID');
  });
});
