import { describe, expect, it } from 'vitest';
import {
  decodeMessage,
  fastmonStatus,
  finalizeOutgoing,
  runFromFilename,
  tfFileRegistered,
} from '../src/messaging/codec.js';

describe('message decoding', () => {
  it('accepts the example data agent stf_ready: per file, nulls for size and checksum, run_id a string', () => {
    const m = decodeMessage(
      JSON.stringify({
        msg_type: 'stf_ready',
        namespace: 'torre2',
        sender: 'data-agent-wenauseic-483',
        filename: 'swf.101993.000001.stf',
        run_id: '101993',
        file_url: null,
        checksum: null,
        size_bytes: null,
        start: null,
        end: null,
        state: 'run',
        substate: 'physics',
        sequence: 1,
        simulation_tick: 12.5,
        processed_by: 'data-agent-wenauseic-483',
      }),
    );
    expect(m).toMatchObject({
      msgType: 'stf_ready',
      runId: '101993',
      namespace: 'torre2',
      filename: 'swf.101993.000001.stf',
      fileUrl: null,
      sizeBytes: null,
      checksum: null,
      state: 'run',
      substate: 'physics',
      sequence: 1,
      executionId: null,
    });
  });

  it("accepts daqsim's size and ad: checksum and an integer run_id", () => {
    const m = decodeMessage(
      JSON.stringify({
        msg_type: 'stf_ready',
        run_id: 100958,
        filename: 'swf.100958.000000.stf',
        size: 191,
        checksum: 'ad:3915264619',
        start: '20250914185722420185',
        end: '20250914185724420185',
        req_id: 1,
      }),
    );
    expect(m).toMatchObject({ runId: '100958', sizeBytes: 191, checksum: 'ad:3915264619', namespace: null });
  });

  it('accepts the Rucio per-run stf_ready without filename', () => {
    const m = decodeMessage(
      JSON.stringify({ msg_type: 'stf_ready', run_id: '101993', namespace: 'torre2', req_id: 1 }),
    );
    expect(m).toMatchObject({ msgType: 'stf_ready', filename: null, runId: '101993' });
  });

  it('takes the run from a testbed STF name when the message has none', () => {
    expect(
      decodeMessage(JSON.stringify({ msg_type: 'stf_ready', filename: 'swf.101993.000007.stf' })),
    ).toMatchObject({
      runId: '101993',
    });
    expect(runFromFilename('swf.100958.000000.stf')).toBe('100958');
    expect(runFromFilename('swf.20250914.185727.197966.run.physics.stf')).toBeNull();
  });

  it('decodes the run lifecycle messages with their state', () => {
    for (const type of ['run_imminent', 'start_run', 'pause_run', 'resume_run', 'end_run']) {
      const m = decodeMessage(
        JSON.stringify({
          msg_type: type,
          run_id: '7',
          execution_id: 'e-1',
          state: 'run',
          total_stf_files: 3,
        }),
      );
      expect(m).toMatchObject({ msgType: type, runId: '7', executionId: 'e-1', state: 'run' });
    }
  });

  it('ignores unrelated message types after reading only the envelope', () => {
    // Even with fields of types the stf_ready schema would refuse.
    expect(
      decodeMessage(JSON.stringify({ msg_type: 'slice', run_id: { nested: true }, namespace: 'x' })),
    ).toEqual({
      msgType: 'slice',
      namespace: 'x',
      ignored: true,
    });
  });

  it('refuses bodies that are not JSON objects or lack msg_type, with the reason', () => {
    expect(() => decodeMessage('{not json')).toThrow(/message body is not JSON/);
    expect(() => decodeMessage('[1,2]')).toThrow(/not a JSON object/);
    expect(() => decodeMessage('{"run_id": 1}')).toThrow('message has no msg_type string');
    expect(() => decodeMessage(JSON.stringify({ msg_type: 'stf_ready', size_bytes: 'big' }))).toThrow(
      /stf_ready has fields of the wrong type: size_bytes/,
    );
    expect(() => decodeMessage(JSON.stringify({ msg_type: 'stf_ready', run_id: 1.5 }))).toThrow(/run_id/);
  });
});

describe('outgoing messages', () => {
  const fields = {
    processedBy: 'fastmon-agent-u-5',
    runId: '101993',
    executionId: 'stf_datataking-u-0001',
    stfFilename: 'swf.101993.000001.stf',
    tfFileId: '5d6c0a52-0000-4000-8000-000000000001',
    tfFilename: 'swf.101993.000001_tf_001.tf',
    tfFirst: 10,
    tfLast: 30,
    tfCount: 21,
    fileSizeBytes: 42_000_000,
    checksum: null,
    status: 'registered',
  };

  it('builds tf_file_registered with the fields the fast processing agent and the SSE relay read', () => {
    const body = tfFileRegistered(fields, new Date(2026, 0, 15, 14, 30, 25, 123));
    expect(body).toEqual({
      msg_type: 'tf_file_registered',
      processed_by: 'fastmon-agent-u-5',
      run_id: '101993',
      execution_id: 'stf_datataking-u-0001',
      stf_filename: 'swf.101993.000001.stf',
      tf_file_id: '5d6c0a52-0000-4000-8000-000000000001',
      tf_filename: 'swf.101993.000001_tf_001.tf',
      tf_first: 10,
      tf_last: 30,
      tf_count: 21,
      file_size_bytes: 42_000_000,
      status: 'registered',
      timestamp: '2026-01-15T14:30:25.123000',
    });
  });

  it('adds sender and namespace like BaseAgent, and never carries agent_name with status', () => {
    const out = finalizeOutgoing(tfFileRegistered(fields), 'fastmon-agent-u-5', 'torre2');
    expect(out.sender).toBe('fastmon-agent-u-5');
    expect(out.namespace).toBe('torre2');
    expect(out).not.toHaveProperty('agent_name');
    expect(() => finalizeOutgoing({ agent_name: 'x', status: 'OK' }, 's', null)).toThrow(/heartbeat/);
    const status = fastmonStatus({
      processedBy: 'a',
      status: 'completed',
      message: 'm',
      runId: '1',
      executionId: null,
    });
    expect(finalizeOutgoing(status, 'a', null)).not.toHaveProperty('agent_name');
  });
});
