// swf-monitor's PersistentState counters in the monitor double: /api/state/next-*/, token always.
// Agent ids are handed out from 1 and run numbers from 100010 (docs/testbed-interface.md, "Agent identity
// and heartbeats").

import { json, type Route, route } from './http.js';

export class PersistentState {
  private agentId = 1;
  private runNumber = 100010;
  private executionSequence = 1;

  reset(): void {
    this.agentId = 1;
    this.runNumber = 100010;
    this.executionSequence = 1;
  }

  routes(): Route[] {
    return [
      route('state/next-agent-id', 'always', {
        POST: () => json(200, { agent_id: this.agentId++, status: 'success' }),
      }),
      route('state/next-run-number', 'always', {
        POST: () => json(200, { run_number: this.runNumber++, status: 'success' }),
      }),
      route('state/next-workflow-execution-id', 'always', {
        POST: () => json(200, { sequence: this.executionSequence++, status: 'success' }),
      }),
    ];
  }
}
