// Instance states (SPEC §7) and the one table of transitions that root, the cluster and the worker
// allow. Every transition is recorded with a timestamp and a reason, because the API returns them. A
// report that asks for a transition not in the table is logged and ignored, so a confused or replaying
// cluster or worker cannot walk an instance backwards.

export const INSTANCE_STATES = [
  'REQUESTED',
  'CLUSTER_SCHEDULED',
  'NODE_SCHEDULED',
  'CREATING',
  'RUNNING',
  'COMPLETED',
  'FAILED',
  'UNDEPLOYED',
  'NO_CLUSTER_FOUND',
  'NO_WORKER_CAPACITY',
  'NO_QUALIFIED_WORKER',
] as const;
export type InstanceState = (typeof INSTANCE_STATES)[number];

export const ALL_STATES: readonly InstanceState[] = INSTANCE_STATES;

const PLACED = ['CLUSTER_SCHEDULED', 'NODE_SCHEDULED', 'CREATING', 'RUNNING'] as const;
const NEGATIVE = ['NO_CLUSTER_FOUND', 'NO_WORKER_CAPACITY', 'NO_QUALIFIED_WORKER'] as const;

/**
 * Allowed transitions. Backward edges exist on purpose: a FAILED process is restarted (→ CREATING),
 * an instance whose worker died goes back to CLUSTER_SCHEDULED (or straight to NODE_SCHEDULED) while
 * the cluster re-places it, and an instance no worker can take goes back to REQUESTED so that root can
 * try another cluster. From a placed state an instance may move to any other placed state, because a
 * report may carry several steps at once (CLUSTER_SCHEDULED → RUNNING) when messages were lost.
 */
const ALLOWED: Readonly<Record<InstanceState, readonly InstanceState[]>> = {
  REQUESTED: ['CLUSTER_SCHEDULED', ...NEGATIVE, 'FAILED', 'UNDEPLOYED'],
  CLUSTER_SCHEDULED: [...PLACED, 'COMPLETED', 'FAILED', 'UNDEPLOYED', 'REQUESTED', 'NO_WORKER_CAPACITY', 'NO_QUALIFIED_WORKER'],
  NODE_SCHEDULED: [...PLACED, 'COMPLETED', 'FAILED', 'UNDEPLOYED', 'REQUESTED', 'NO_WORKER_CAPACITY', 'NO_QUALIFIED_WORKER'],
  CREATING: [...PLACED, 'COMPLETED', 'FAILED', 'UNDEPLOYED', 'REQUESTED', 'NO_WORKER_CAPACITY', 'NO_QUALIFIED_WORKER'],
  RUNNING: [...PLACED, 'COMPLETED', 'FAILED', 'UNDEPLOYED', 'REQUESTED', 'NO_WORKER_CAPACITY', 'NO_QUALIFIED_WORKER'],
  // A failed instance can be restarted or re-placed by its cluster, or retried by root.
  FAILED: [...PLACED, 'REQUESTED', 'UNDEPLOYED'],
  // Root retries an unplaced instance in place: the retry ends placed or in another negative outcome.
  NO_CLUSTER_FOUND: ['REQUESTED', 'CLUSTER_SCHEDULED', ...NEGATIVE, 'UNDEPLOYED'],
  NO_WORKER_CAPACITY: ['REQUESTED', ...PLACED, ...NEGATIVE, 'UNDEPLOYED'],
  NO_QUALIFIED_WORKER: ['REQUESTED', ...PLACED, ...NEGATIVE, 'UNDEPLOYED'],
  COMPLETED: ['UNDEPLOYED'],
  UNDEPLOYED: [],
};

export function isInstanceState(s: unknown): s is InstanceState {
  return typeof s === 'string' && Object.hasOwn(ALLOWED, s);
}

/** Whether the table has the edge `from` → `to` (a same-state move is no edge: callers treat it as a no-op). */
export function canTransition(from: InstanceState, to: InstanceState): boolean {
  return from !== to && ALLOWED[from].includes(to);
}

/** States after which the instance holds no resources on any worker. */
export function isTerminal(s: InstanceState): boolean {
  return s === 'UNDEPLOYED' || s === 'COMPLETED';
}

/** States in which the instance occupies (or is about to occupy) a worker. */
export function isOnWorker(s: InstanceState): boolean {
  return s === 'NODE_SCHEDULED' || s === 'CREATING' || s === 'RUNNING' || s === 'FAILED';
}

/** States in which an instance holds (or is about to hold) resources on some cluster. */
export function isPlaced(state: InstanceState): boolean {
  return (PLACED as readonly string[]).includes(state);
}

/** States from which nothing more will happen without a new request. */
export function isSettled(state: InstanceState): boolean {
  return state === 'UNDEPLOYED' || state === 'COMPLETED' || state === 'FAILED' || (NEGATIVE as readonly string[]).includes(state);
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
