// Instance lifecycle (SPEC §7): the one table of allowed transitions. Root moves an instance through
// scheduling itself; clusters report the rest. A report that asks for a transition not in the table is
// logged and ignored, so a confused or replaying cluster cannot walk an instance backwards.

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

const PLACED = ['CLUSTER_SCHEDULED', 'NODE_SCHEDULED', 'CREATING', 'RUNNING'] as const;
const NEGATIVE = ['NO_CLUSTER_FOUND', 'NO_WORKER_CAPACITY', 'NO_QUALIFIED_WORKER'] as const;

// From a placed state an instance may move to any other placed state: a cluster re-places an instance
// whose worker failed (RUNNING → NODE_SCHEDULED) and may report several steps at once
// (CLUSTER_SCHEDULED → RUNNING). Root puts it back to REQUESTED when it must pick a cluster again.
const TRANSITIONS: Record<InstanceState, readonly InstanceState[]> = {
  REQUESTED: ['CLUSTER_SCHEDULED', ...NEGATIVE, 'FAILED', 'UNDEPLOYED'],
  CLUSTER_SCHEDULED: [...PLACED, 'COMPLETED', 'FAILED', 'UNDEPLOYED', 'REQUESTED', 'NO_WORKER_CAPACITY', 'NO_QUALIFIED_WORKER'],
  NODE_SCHEDULED: [...PLACED, 'COMPLETED', 'FAILED', 'UNDEPLOYED', 'REQUESTED', 'NO_WORKER_CAPACITY', 'NO_QUALIFIED_WORKER'],
  CREATING: [...PLACED, 'COMPLETED', 'FAILED', 'UNDEPLOYED', 'REQUESTED', 'NO_WORKER_CAPACITY', 'NO_QUALIFIED_WORKER'],
  RUNNING: [...PLACED, 'COMPLETED', 'FAILED', 'UNDEPLOYED', 'REQUESTED', 'NO_WORKER_CAPACITY', 'NO_QUALIFIED_WORKER'],
  // A failed instance can be re-placed by its cluster or retried by root.
  FAILED: [...PLACED, 'REQUESTED', 'UNDEPLOYED'],
  // Root retries an unplaced instance in place: the retry ends placed or in another negative outcome.
  NO_CLUSTER_FOUND: ['REQUESTED', 'CLUSTER_SCHEDULED', ...NEGATIVE, 'UNDEPLOYED'],
  NO_WORKER_CAPACITY: ['REQUESTED', ...PLACED, ...NEGATIVE, 'UNDEPLOYED'],
  NO_QUALIFIED_WORKER: ['REQUESTED', ...PLACED, ...NEGATIVE, 'UNDEPLOYED'],
  COMPLETED: ['UNDEPLOYED'],
  UNDEPLOYED: [],
};

export function isInstanceState(value: unknown): value is InstanceState {
  return typeof value === 'string' && (INSTANCE_STATES as readonly string[]).includes(value);
}

export function canTransition(from: InstanceState, to: InstanceState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** States in which an instance holds (or is about to hold) resources on some cluster. */
export function isPlaced(state: InstanceState): boolean {
  return (PLACED as readonly string[]).includes(state);
}

/** States from which nothing more will happen without a new request. */
export function isSettled(state: InstanceState): boolean {
  return state === 'UNDEPLOYED' || state === 'COMPLETED' || state === 'FAILED' || (NEGATIVE as readonly string[]).includes(state);
}
