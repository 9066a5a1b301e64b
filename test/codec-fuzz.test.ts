import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FastmonError } from '../src/errors.js';
import { decodeMessage } from '../src/messaging/codec.js';

const field = fc.oneof(
  fc.string(),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 3 }),
);
const msgType = fc.oneof(
  fc.constantFrom(
    'stf_ready',
    'run_imminent',
    'start_run',
    'pause_run',
    'resume_run',
    'end_run',
    'stf_gen',
    'slice',
  ),
  field,
);
const keys = [
  'filename',
  'run_id',
  'namespace',
  'size_bytes',
  'size',
  'checksum',
  'file_url',
  'state',
  'substate',
  'tf_count',
  'sequence',
  'execution_id',
];

describe('message decoder under fuzzing', () => {
  it('returns a typed message or a typed error for any JSON object, never anything else', () => {
    fc.assert(
      fc.property(msgType, fc.dictionary(fc.constantFrom(...keys), field), (type, fields) => {
        const body = JSON.stringify({ ...fields, msg_type: type });
        try {
          const m = decodeMessage(body);
          expect(typeof m.msgType).toBe('string');
          if (m.msgType === 'stf_ready' && !('ignored' in m)) {
            const s = m as { runId: unknown; sizeBytes: unknown; filename: unknown };
            expect(s.runId === null || typeof s.runId === 'string').toBe(true);
            expect(
              s.sizeBytes === null || (Number.isInteger(s.sizeBytes) && (s.sizeBytes as number) >= 0),
            ).toBe(true);
            expect(s.filename === null || typeof s.filename === 'string').toBe(true);
          }
        } catch (err) {
          expect(err).toBeInstanceOf(FastmonError);
          expect(['MESSAGE_INVALID', 'MESSAGE_NOT_JSON']).toContain((err as FastmonError).code);
        }
      }),
      { numRuns: 10_000 },
    );
    // 10,000 runs take a few seconds alone, several times that on a machine busy with the broker
    // tests: the test checks what the decoder returns, never how fast.
  }, 180_000);

  it('refuses arbitrary text with MESSAGE_NOT_JSON or MESSAGE_INVALID', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => {
        try {
          decodeMessage(text);
        } catch (err) {
          expect(err).toBeInstanceOf(FastmonError);
          expect(['MESSAGE_INVALID', 'MESSAGE_NOT_JSON']).toContain((err as FastmonError).code);
        }
      }),
      { numRuns: 10_000 },
    );
    // 10,000 runs take a few seconds alone, several times that on a machine busy with the broker
    // tests: the test checks what the decoder returns, never how fast.
  }, 180_000);
});
