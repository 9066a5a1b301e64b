// `gen --publish`: the DAQ and data-agent roles: Run and StfFile rows in swf-monitor, lifecycle and stf_ready messages.

import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Logger } from '../log/logger.js';
import { localIsoTimestamp } from '../messaging/codec.js';
import type { MonitorClient } from '../monitor/client.js';
import { stfFileRow } from '../monitor/rows.js';
import type { Broadcaster } from '../sinks/broadcast.js';
import { endExecution, startExecution } from './execution.js';

/** One STF as written, with what the messages and rows say about it. */
export interface WrittenStf {
  /** Absolute path. */
  path: string;
  sequence: number;
  sizeBytes: number;
  adler32: number;
  tfCount: number;
  /** ISO-8601 (UTC) bounds of the data in the STF. */
  start: string;
  end: string;
}

export interface DaqRoleOptions {
  run: number;
  state: string;
  substate: string;
  executionId: string;
  /** Adds `sender` and `namespace` to every body (finalizeOutgoing) and publishes on the receipt. */
  broadcaster: Broadcaster;
  /** Null: messages only, no rows (SWF_MONITOR_URL unset). */
  monitor: MonitorClient | null;
  runConditions: Record<string, unknown>;
  /** For the WorkflowExecution row created before the first message (with a monitor). */
  execution: { version: string; namespace: string | null; executedBy: string };
  logger: Logger;
  now?: () => Date;
}

export interface Registrations {
  executionCreated: boolean;
  runCreated: boolean;
  stfCreated: number;
  /** Rows already there from an earlier run of the same command. */
  stfExisting: number;
}

/**
 * Follows the testbed's order (docs/gen.md; docs/testbed-interface.md, "Run states and the usual
 * sequence", "stf_ready"): the WorkflowExecution row exists before any lifecycle message
 * (src/gen/execution.ts), the Run row before run_imminent,
 * each StfFile row before its stf_ready, and the Run's end_time is set after end_run, as the
 * example data agent does. Every write is idempotent, so running the same command twice adds
 * no rows and does not fail.
 */
export class DaqRole {
  readonly registrations: Registrations = {
    executionCreated: false,
    runCreated: false,
    stfCreated: 0,
    stfExisting: 0,
  };
  private runPk: number | null = null;
  private readonly now: () => Date;

  constructor(private readonly o: DaqRoleOptions) {
    this.now = o.now ?? (() => new Date());
  }

  async startRun(): Promise<void> {
    if (this.o.monitor) {
      const execution = await startExecution(this.o.monitor, {
        executionId: this.o.executionId,
        ...this.o.execution,
        parameters: { run: this.o.run, ...this.o.runConditions },
        startTime: this.now(),
      });
      this.registrations.executionCreated = execution.created;
      const run = await this.o.monitor.ensureRun(this.o.run, this.now(), undefined, this.o.runConditions);
      this.runPk = run.runId;
      this.registrations.runCreated = run.created;
    }
    await this.send({ msg_type: 'run_imminent', state: 'beam', substate: 'not_ready' });
    await this.send({ msg_type: 'start_run', state: 'run', substate: 'physics' });
  }

  async stfReady(stf: WrittenStf): Promise<void> {
    const filename = path.basename(stf.path);
    const checksum = `ad:${stf.adler32 >>> 0}`;
    if (this.o.monitor && this.runPk !== null)
      await this.registerStf(this.o.monitor, this.runPk, stf, checksum);
    // The example data agent's stf_ready (docs/testbed-interface.md, "stf_ready") with the values its producer left null filled in;
    // tf_count is ours: fastmon reads it when the file itself is out of reach.
    await this.send({
      msg_type: 'stf_ready',
      filename,
      file_url: pathToFileURL(stf.path).href,
      size_bytes: stf.sizeBytes,
      checksum,
      state: this.o.state,
      substate: this.o.substate,
      sequence: stf.sequence,
      tf_count: stf.tfCount,
      start: stf.start,
      end: stf.end,
    });
  }

  async endRun(totalStfFiles: number): Promise<void> {
    await this.send({ msg_type: 'end_run', total_stf_files: totalStfFiles });
    if (this.o.monitor && this.runPk !== null) {
      await this.o.monitor.http.request('PATCH', `/runs/${this.runPk}/`, {
        body: { end_time: this.now().toISOString() },
      });
    }
    if (this.o.monitor) await endExecution(this.o.monitor, this.o.executionId, 'completed', this.now());
  }

  /** Common fields of the lifecycle messages (docs/testbed-interface.md); `run_id` is a string, as the workflow runner sends it. */
  private async send(fields: Record<string, unknown>): Promise<void> {
    await this.o.broadcaster.publish({
      ...fields,
      run_id: String(this.o.run),
      execution_id: this.o.executionId,
      timestamp: localIsoTimestamp(this.now()),
    });
  }

  private async registerStf(
    monitor: MonitorClient,
    runPk: number,
    stf: WrittenStf,
    checksum: string,
  ): Promise<void> {
    // The example data agent's metadata (docs/testbed-interface.md, "Run, StfFile and FastMonFile").
    const created = await monitor.ensureStfFile(
      stfFileRow(runPk, {
        stfFilename: path.basename(stf.path),
        sizeBytes: stf.sizeBytes,
        checksum,
        tfCount: stf.tfCount,
        state: this.o.state,
        substate: this.o.substate,
        metadata: {
          created_by: 'swf-fastmon gen',
          substate: this.o.substate,
          sequence: stf.sequence,
          start: stf.start,
          end: stf.end,
        },
      }),
    );
    if (created) {
      this.registrations.stfCreated++;
    } else {
      // stf_filename is unique: a rerun (or a retried POST that had gone through) finds its row.
      this.registrations.stfExisting++;
      await this.checkExisting(monitor, runPk, stf, checksum);
    }
  }

  /** A row left by a run with other settings describes other bytes: say so, since it is not rewritten. */
  private async checkExisting(
    monitor: MonitorClient,
    runPk: number,
    stf: WrittenStf,
    checksum: string,
  ): Promise<void> {
    const filename = path.basename(stf.path);
    const row = await monitor.findStfFile(filename);
    if (row && (row.file_size_bytes !== stf.sizeBytes || row.checksum !== checksum || row.run !== runPk)) {
      this.o.logger.warn(
        {
          stf: filename,
          registered: { run: row.run, file_size_bytes: row.file_size_bytes, checksum: row.checksum },
          file: { run: runPk, file_size_bytes: stf.sizeBytes, checksum },
        },
        'StfFile row already registered with other values; left as it is',
      );
    }
  }
}
