// `gen --publish` as the workflow runner: a WorkflowDefinition and a WorkflowExecution row before any lifecycle message.

import { isFastmonError } from '../errors.js';
import { alreadyExists, type MonitorClient } from '../monitor/client.js';
import { readAnswer } from '../monitor/rows.js';

/** The definition gen's executions point at (WorkflowDefinition is unique on name + version). */
export const GEN_WORKFLOW = 'swf_fastmon_gen';

export interface ExecutionSpec {
  executionId: string;
  /** Version of the definition: the package version. */
  version: string;
  namespace: string | null;
  executedBy: string;
  parameters: Record<string, unknown>;
  startTime: Date;
}

/**
 * The workflow runner registers its definition (GET by name and version, else POST), then POSTs the
 * execution with status `running` before its first message, and PATCHes it `completed` with an
 * end_time at the end. swf-monitor's listener joins lifecycle messages to that row by
 * `execution_id`; without it, it logs an error for every lifecycle message. A rerun of the same
 * command finds its execution (the id is derived from user and run) and sets it running again.
 */
export async function startExecution(
  monitor: MonitorClient,
  spec: ExecutionSpec,
): Promise<{ created: boolean }> {
  const definition = await ensureDefinition(monitor, spec);
  const row = {
    execution_id: spec.executionId,
    workflow_definition: definition,
    parameter_values: spec.parameters,
    status: 'running',
    start_time: spec.startTime.toISOString(),
    executed_by: spec.executedBy,
    namespace: spec.namespace,
  };
  try {
    await monitor.http.request('POST', '/workflow-executions/', { body: row });
    return { created: true };
  } catch (err) {
    if (!alreadyExists(err, 'execution_id')) throw err;
    await monitor.http.request('PATCH', `/workflow-executions/${encodeURIComponent(spec.executionId)}/`, {
      body: { status: 'running', start_time: row.start_time, end_time: null },
    });
    return { created: false };
  }
}

/** The runner's last word on an execution: `completed` (or `terminated` when interrupted) with its end_time. */
export async function endExecution(
  monitor: MonitorClient,
  executionId: string,
  status: 'completed' | 'terminated',
  endTime: Date,
): Promise<void> {
  await monitor.http.request('PATCH', `/workflow-executions/${encodeURIComponent(executionId)}/`, {
    body: { status, end_time: endTime.toISOString() },
  });
}

async function ensureDefinition(monitor: MonitorClient, spec: ExecutionSpec): Promise<number> {
  const find = async (): Promise<number | undefined> => {
    const { body } = await monitor.http.request('GET', '/workflow-definitions/', {
      query: { workflow_name: GEN_WORKFLOW, version: spec.version },
    });
    const rows = readAnswer('definitions', body, 'GET /workflow-definitions/');
    // Matched here, not trusted to the query: a list without that filter returns every definition.
    return rows.find((r) => r.workflow_name === GEN_WORKFLOW && r.version === spec.version)?.id;
  };
  const existing = await find();
  if (existing !== undefined) return existing;
  try {
    const { body } = await monitor.http.request('POST', '/workflow-definitions/', {
      body: {
        workflow_name: GEN_WORKFLOW,
        version: spec.version,
        workflow_type: 'simulation',
        definition: 'swf-fastmon gen --publish: synthetic STFs with the DAQ and data-agent messages',
        parameter_values: {},
        created_by: spec.executedBy,
      },
    });
    return readAnswer('definition', body, 'POST /workflow-definitions/').id;
  } catch (err) {
    // Another gen registered it meanwhile (unique name + version).
    if (!isFastmonError(err, 'MONITOR_REJECTED')) throw err;
    const raced = await find();
    if (raced === undefined) throw err;
    return raced;
  }
}
