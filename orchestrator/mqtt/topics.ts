// Topic names between a cluster and its workers (SPEC §6, docs/protocols.md), and the access rule
// each worker's credentials get: a worker publishes only its own upward topics, subscribes only to its
// own downward topics and to service route updates.

/** Worker ids double as MQTT usernames and topic levels: no wildcards, no slashes, short. */
export const WORKER_ID_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** Service ids appear as a topic level too. */
export const SERVICE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export const topics = {
  // worker → cluster
  information: (w: string) => `nodes/${w}/information`,
  job: (w: string) => `nodes/${w}/job`,
  tableQueryRequest: (w: string) => `nodes/${w}/net/tablequery/request`,
  interest: (w: string) => `nodes/${w}/net/interest`,
  coordinates: (w: string) => `nodes/${w}/net/coordinates`,
  logs: (w: string) => `nodes/${w}/logs`,
  probeResult: (w: string) => `nodes/${w}/net/probe/result`,
  // cluster → worker
  deploy: (w: string) => `nodes/${w}/control/deploy`,
  remove: (w: string) => `nodes/${w}/control/delete`,
  tableQueryResult: (w: string) => `nodes/${w}/net/tablequery/result`,
  subnet: (w: string) => `nodes/${w}/net/subnet`,
  coordinatePeers: (w: string) => `nodes/${w}/net/coordinates/peers`,
  overlayKey: (w: string) => `nodes/${w}/net/overlay-key`,
  // the cluster's own tunnel key, when it is rotated after a revocation (retained)
  tunnelKey: (w: string) => `nodes/${w}/net/tunnel-key`,
  logsRequest: (w: string) => `nodes/${w}/control/logs`,
  probe: (w: string) => `nodes/${w}/net/probe`,
  // cluster → interested workers (route_update, route_withdraw)
  serviceUpdates: (serviceId: string) => `jobs/${serviceId}/updates`,
};

/** Suffixes under nodes/<id>/ that a worker may publish (the cluster subscribes to them). */
export const WORKER_PUBLISHES = ['information', 'job', 'net/tablequery/request', 'net/interest', 'net/coordinates', 'net/probe/result', 'logs'] as const;
/** Suffixes under nodes/<id>/ that a worker may subscribe to (the cluster publishes them). */
export const WORKER_RECEIVES = ['control/deploy', 'control/delete', 'net/tablequery/result', 'net/subnet', 'net/coordinates/peers', 'net/overlay-key', 'net/tunnel-key', 'net/probe', 'control/logs'] as const;

/** The cluster's subscriptions: every worker's upward topics. */
export const CLUSTER_SUBSCRIPTIONS = WORKER_PUBLISHES.map((s) => `nodes/+/${s}`);

export type WorkerTopicKind = (typeof WORKER_PUBLISHES)[number];

/** Splits `nodes/<id>/<suffix>` for the cluster's dispatch; undefined for anything else. */
export function parseWorkerTopic(topic: string): { worker: string; kind: WorkerTopicKind } | undefined {
  if (!topic.startsWith('nodes/')) return undefined;
  const slash = topic.indexOf('/', 6);
  if (slash < 0) return undefined;
  const worker = topic.slice(6, slash);
  const suffix = topic.slice(slash + 1);
  if (!WORKER_ID_RE.test(worker)) return undefined;
  const kind = (WORKER_PUBLISHES as readonly string[]).includes(suffix) ? (suffix as WorkerTopicKind) : undefined;
  return kind ? { worker, kind } : undefined;
}

/** May worker `w` publish on `topic`? (exact topics only: no wildcards in a publish). */
export function workerMayPublish(w: string, topic: string): boolean {
  const prefix = `nodes/${w}/`;
  return topic.startsWith(prefix) && (WORKER_PUBLISHES as readonly string[]).includes(topic.slice(prefix.length));
}

const UPDATES_RE = /^jobs\/([^/#+]+|\+)\/updates$/;

/**
 * May worker `w` subscribe to `filter`? Only its own downward topics (exactly, or `nodes/<w>/control/#`
 * style filters that cover nothing else) and `jobs/<service>/updates` (one service or `+`).
 */
export function workerMaySubscribe(w: string, filter: string): boolean {
  if (UPDATES_RE.test(filter)) return true;
  const prefix = `nodes/${w}/`;
  if (!filter.startsWith(prefix)) return false;
  const rest = filter.slice(prefix.length);
  if (rest.includes('+')) return false;
  if ((WORKER_RECEIVES as readonly string[]).includes(rest)) return true;
  if (rest.endsWith('/#')) {
    const base = rest.slice(0, -2);
    if (base.includes('#') || base.length === 0) return false;
    // Every topic under `base` must be one the worker may receive.
    const covered = [...WORKER_PUBLISHES, ...WORKER_RECEIVES].filter((s) => s === base || s.startsWith(`${base}/`));
    return covered.length > 0 && covered.every((s) => (WORKER_RECEIVES as readonly string[]).includes(s));
  }
  return false;
}
