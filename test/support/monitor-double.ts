// In-process double of swf-monitor's REST API that enforces its DRF rules and quirks, with fault injection.
//
// Facts come from docs/testbed-interface.md ("Agent identity and heartbeats", "swf-monitor's REST API"); messages
// are DRF's own wording so that a client tested here reacts to the real server's answers. One module per
// resource under monitor-double/ (README.md beside this file); this entry is the public API. No vitest
// import: bench/ uses it as well (built by bench/tsconfig.json, not by the production build).

export type {
  AgentStatus,
  HeartbeatRecord,
  OperationalState,
  SystemAgentRow,
} from './monitor-double/agents.js';
export { BULK_MAX_ROWS, type BulkResult } from './monitor-double/fastmon-bulk.js';
export type { FastMonFileRow } from './monitor-double/fastmon-files.js';
export type { FailRule, FaultMatch } from './monitor-double/faults.js';
export type { AppLogRow } from './monitor-double/logs.js';
export type { RunRow } from './monitor-double/runs.js';
export {
  type FastMonFileSeed,
  type MonitorDouble,
  type MonitorDoubleOptions,
  type RequestRecord,
  type RunSeed,
  type StfFileSeed,
  startMonitorDouble,
} from './monitor-double/server.js';
export type { FileStatus, StfFileRow } from './monitor-double/stf-files.js';
export type { SubscriberRow } from './monitor-double/subscribers.js';
export type { WorkflowDefinitionRow, WorkflowExecutionRow } from './monitor-double/workflows.js';
