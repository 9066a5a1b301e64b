// The workflow resources of the monitor double, as the testbed's workflow runner writes them:
// /api/workflow-definitions/ and /api/workflow-executions/, and what swf-monitor's ActiveMQ listener
// makes of a lifecycle message naming an execution.

import {
  type Body,
  type Field,
  hasErrors,
  type Mode,
  now,
  type Outcome,
  optional,
  optionalText,
  readFields,
} from './drf.js';
import { detail, json, PK, type Route, route, saved } from './http.js';

export interface WorkflowDefinitionRow {
  id: number;
  workflow_name: string;
  version: string;
  workflow_type: string;
  definition: string;
  parameter_values: unknown;
  created_by: string;
  created_at: string;
  updated_at: string;
}

export interface WorkflowExecutionRow {
  execution_id: string;
  /** The WorkflowDefinition's id. */
  workflow_definition: number;
  namespace: string | null;
  parameter_values: unknown;
  performance_metrics: unknown;
  status: string;
  start_time: string;
  end_time: string | null;
  executed_by: string;
}

const DEFINITION_FIELDS: Record<string, Field> = {
  workflow_name: { kind: 'string', maxLength: 200, required: true },
  version: { kind: 'string', maxLength: 50, required: true },
  workflow_type: { kind: 'string', maxLength: 100, required: true },
  definition: { kind: 'string', maxLength: 5000, required: true },
  parameter_values: { kind: 'json', default: () => ({}) },
  created_by: { kind: 'string', maxLength: 100, required: true },
};

const EXECUTION_FIELDS: Record<string, Field> = {
  execution_id: { kind: 'string', maxLength: 100, required: true },
  workflow_definition: { kind: 'ref', required: true },
  namespace: optionalText(100),
  parameter_values: { kind: 'json', required: true },
  performance_metrics: optional('json'),
  status: { kind: 'string', maxLength: 50, default: () => 'pending' },
  start_time: { kind: 'datetime', required: true },
  end_time: optional('datetime'),
  executed_by: { kind: 'string', maxLength: 100, required: true },
};

export class WorkflowTables {
  readonly definitions: WorkflowDefinitionRow[] = [];
  readonly executions: WorkflowExecutionRow[] = [];
  private readonly executionById = new Map<string, WorkflowExecutionRow>();
  private nextDefinitionId = 1;

  reset(): void {
    this.definitions.length = 0;
    this.executions.length = 0;
    this.executionById.clear();
    this.nextDefinitionId = 1;
  }

  definitionByPk = (pk: string) => this.definitions.find((row) => String(row.id) === pk);

  saveDefinition(body: Body, mode: Mode, row?: WorkflowDefinitionRow): Outcome<WorkflowDefinitionRow> {
    const { values, errors } = readFields(DEFINITION_FIELDS, body, mode);
    if (hasErrors(errors)) return { errors };
    const merged = { ...row, ...values } as WorkflowDefinitionRow;
    const twin = this.definitions.find(
      (other) =>
        other !== row && other.workflow_name === merged.workflow_name && other.version === merged.version,
    );
    if (twin)
      return { errors: { non_field_errors: ['The fields workflow_name, version must make a unique set.'] } };
    const stamp = now();
    if (row) {
      Object.assign(row, values, { updated_at: stamp });
      return { row };
    }
    const created = { id: this.nextDefinitionId++, ...values, created_at: stamp, updated_at: stamp };
    this.definitions.push(created as unknown as WorkflowDefinitionRow);
    return { row: created as unknown as WorkflowDefinitionRow };
  }

  executionByPk = (pk: string) => this.executionById.get(pk);

  saveExecution(body: Body, mode: Mode, row?: WorkflowExecutionRow): Outcome<WorkflowExecutionRow> {
    const { values, errors } = readFields(EXECUTION_FIELDS, body, mode);
    if (!errors.workflow_definition && Object.hasOwn(values, 'workflow_definition')) {
      const pk = values.workflow_definition;
      if (!this.definitionByPk(String(pk))) {
        errors.workflow_definition = [`Invalid pk "${String(pk)}" - object does not exist.`];
      } else values.workflow_definition = Number(pk);
    }
    if (!errors.execution_id && Object.hasOwn(values, 'execution_id')) {
      const other = this.executionById.get(values.execution_id as string);
      if (other && other !== row) {
        errors.execution_id = ['workflow execution with this execution id already exists.'];
      }
    }
    if (hasErrors(errors)) return { errors };
    if (row) {
      this.executionById.delete(row.execution_id);
      Object.assign(row, values);
      this.executionById.set(row.execution_id, row);
      return { row };
    }
    const created = values as unknown as WorkflowExecutionRow;
    this.executions.push(created);
    this.executionById.set(created.execution_id, created);
    return { row: created };
  }

  listExecutions(query: URLSearchParams): WorkflowExecutionRow[] {
    const filters = ['status', 'namespace', 'executed_by'] as const;
    return this.executions.filter((row) =>
      filters.every((name) => !query.get(name) || row[name] === query.get(name)),
    );
  }

  /** See MonitorDouble.listenerError. */
  listenerError(body: Record<string, unknown>): string | null {
    const lifecycle = ['run_imminent', 'start_run', 'pause_run', 'resume_run', 'end_run'];
    const id = body.execution_id;
    if (!lifecycle.includes(String(body.msg_type)) || id === undefined || id === null || id === '')
      return null;
    return this.executionById.has(String(id))
      ? null
      : `WorkflowExecution matching query does not exist (execution_id ${String(id)}, ${String(body.msg_type)})`;
  }

  routes(): Route[] {
    return [
      route('workflow-definitions', 'writes', {
        GET: () => json(200, this.definitions),
        POST: (call) => saved(this.saveDefinition(call.body, 'create'), 201),
      }),
      route(
        `workflow-definitions/${PK}`,
        'writes',
        detail('WorkflowDefinition', this.definitionByPk, (body, mode, row) =>
          this.saveDefinition(body, mode, row),
        ),
      ),
      route('workflow-executions', 'writes', {
        GET: (call) => json(200, this.listExecutions(call.query)),
        POST: (call) => saved(this.saveExecution(call.body, 'create'), 201),
      }),
      route(
        `workflow-executions/${PK}`,
        'writes',
        detail('WorkflowExecution', this.executionByPk, (body, mode, row) =>
          this.saveExecution(body, mode, row),
        ),
      ),
    ];
  }
}
