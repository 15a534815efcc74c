// Instance states (SPEC §7) and the one table of transitions the cluster and the worker allow.
// Every transition is recorded with a timestamp and a reason, because the API returns them.

export const InstanceState = {
  REQUESTED: 'REQUESTED',
  CLUSTER_SCHEDULED: 'CLUSTER_SCHEDULED',
  NODE_SCHEDULED: 'NODE_SCHEDULED',
  CREATING: 'CREATING',
  RUNNING: 'RUNNING',
  COMPLETED: 'COMPLETED',
  FAILED: 'FAILED',
  UNDEPLOYED: 'UNDEPLOYED',
  NO_CLUSTER_FOUND: 'NO_CLUSTER_FOUND',
  NO_WORKER_CAPACITY: 'NO_WORKER_CAPACITY',
  NO_QUALIFIED_WORKER: 'NO_QUALIFIED_WORKER',
} as const;
export type InstanceState = (typeof InstanceState)[keyof typeof InstanceState];

export const ALL_STATES: readonly InstanceState[] = Object.values(InstanceState);

const S = InstanceState;

/**
 * Allowed transitions. Backward edges exist on purpose: a FAILED process is restarted (→ CREATING),
 * an instance whose worker died goes back to CLUSTER_SCHEDULED while the cluster re-places it, and an
 * instance no worker can take goes back to REQUESTED so that root can try another cluster.
 */
const ALLOWED: Readonly<Record<InstanceState, readonly InstanceState[]>> = {
  REQUESTED: [S.CLUSTER_SCHEDULED, S.NO_CLUSTER_FOUND, S.UNDEPLOYED],
  CLUSTER_SCHEDULED: [S.NODE_SCHEDULED, S.NO_WORKER_CAPACITY, S.NO_QUALIFIED_WORKER, S.REQUESTED, S.UNDEPLOYED],
  NODE_SCHEDULED: [S.CREATING, S.RUNNING, S.FAILED, S.CLUSTER_SCHEDULED, S.UNDEPLOYED],
  CREATING: [S.RUNNING, S.FAILED, S.COMPLETED, S.CLUSTER_SCHEDULED, S.UNDEPLOYED],
  RUNNING: [S.COMPLETED, S.FAILED, S.CREATING, S.CLUSTER_SCHEDULED, S.UNDEPLOYED],
  FAILED: [S.CREATING, S.CLUSTER_SCHEDULED, S.UNDEPLOYED],
  COMPLETED: [S.UNDEPLOYED],
  UNDEPLOYED: [],
  NO_CLUSTER_FOUND: [S.REQUESTED, S.UNDEPLOYED],
  NO_WORKER_CAPACITY: [S.REQUESTED, S.CLUSTER_SCHEDULED, S.UNDEPLOYED],
  NO_QUALIFIED_WORKER: [S.REQUESTED, S.CLUSTER_SCHEDULED, S.UNDEPLOYED],
};

export function isInstanceState(s: unknown): s is InstanceState {
  return typeof s === 'string' && Object.hasOwn(ALLOWED, s);
}

export function canTransition(from: InstanceState, to: InstanceState): boolean {
  return ALLOWED[from].includes(to);
}

/** States after which the instance holds no resources on any worker. */
export function isTerminal(s: InstanceState): boolean {
  return s === S.UNDEPLOYED || s === S.COMPLETED;
}

/** States in which the instance occupies (or is about to occupy) a worker. */
export function isOnWorker(s: InstanceState): boolean {
  return s === S.NODE_SCHEDULED || s === S.CREATING || s === S.RUNNING || s === S.FAILED;
}

export interface Transition {
  readonly state: InstanceState;
  /** Milliseconds since the epoch. */
  readonly ts: number;
  readonly reason: string;
}

export class IllegalTransition extends Error {
  constructor(readonly from: InstanceState, readonly to: InstanceState, reason: string) {
    super(`illegal instance transition ${from} → ${to} (${reason})`);
  }
}

/** The state of one instance and how it got there (bounded history: the last `maxHistory`). */
export class Lifecycle {
  private readonly entries: Transition[];

  constructor(initial: InstanceState, reason: string, private readonly maxHistory = 50, ts = Date.now()) {
    this.entries = [{ state: initial, ts, reason }];
  }

  get state(): InstanceState {
    return this.entries[this.entries.length - 1]!.state;
  }

  get last(): Transition {
    return this.entries[this.entries.length - 1]!;
  }

  get history(): readonly Transition[] {
    return this.entries;
  }

  /** Moves to `to`; throws IllegalTransition if the table forbids it. Same-state moves are no-ops. */
  to(to: InstanceState, reason: string, ts = Date.now()): boolean {
    const from = this.state;
    if (from === to) return false;
    if (!canTransition(from, to)) throw new IllegalTransition(from, to, reason);
    this.entries.push({ state: to, ts, reason });
    if (this.entries.length > this.maxHistory) this.entries.splice(0, this.entries.length - this.maxHistory);
    return true;
  }

  /** Like to(), but answers false instead of throwing when the table forbids the move. */
  tryTo(to: InstanceState, reason: string, ts = Date.now()): boolean {
    if (this.state !== to && !canTransition(this.state, to)) return false;
    return this.to(to, reason, ts);
  }
}
