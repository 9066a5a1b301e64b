// The monitor double's database: one table per swf-monitor resource, wired where one refers to another,
// and the API's routes in the order DRF's router tries them.

import { AgentTable } from './agents.js';
import { FastmonFileTable } from './fastmon-files.js';
import type { Route } from './http.js';
import { AppLogTable } from './logs.js';
import { RunTable } from './runs.js';
import { PersistentState } from './state.js';
import { StfFileTable } from './stf-files.js';
import { SubscriberTable } from './subscribers.js';
import { WorkflowTables } from './workflows.js';

export class Tables {
  readonly state = new PersistentState();
  readonly appLogs = new AppLogTable();
  readonly workflows = new WorkflowTables();
  readonly agents = new AgentTable();
  readonly subscribers = new SubscriberTable();
  readonly runs = new RunTable();
  readonly stfFiles: StfFileTable;
  readonly fastmonFiles: FastmonFileTable;

  /** `retainFastmonFiles`: see MonitorDoubleOptions. */
  constructor(retainFastmonFiles?: number) {
    this.stfFiles = new StfFileTable(this.runs, (stf) => this.fastmonFiles.followParent(stf));
    this.fastmonFiles = new FastmonFileTable(this.stfFiles, retainFastmonFiles);
  }

  /** Empty tables, every sequence restarted. */
  reset(): void {
    this.state.reset();
    this.appLogs.reset();
    this.workflows.reset();
    this.agents.reset();
    this.subscribers.reset();
    this.runs.reset();
    this.stfFiles.reset();
    this.fastmonFiles.reset();
  }

  routes(proposedBulk: boolean): Route[] {
    return [
      ...this.state.routes(),
      ...this.appLogs.routes(),
      ...this.workflows.routes(),
      ...this.agents.routes(),
      ...this.subscribers.routes(),
      ...this.runs.routes(),
      ...this.stfFiles.routes(),
      ...this.fastmonFiles.routes(proposedBulk),
    ];
  }
}
