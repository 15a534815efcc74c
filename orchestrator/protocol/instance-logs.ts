// Reading an instance's logs through the tiers (SPEC §10: no side doors): root asks the instance's
// cluster (GET /api/instances/:sid/:n/logs with root's cluster token), the cluster asks the worker
// over MQTT (nodes/<w>/control/logs, answered on nodes/<w>/logs), so a user never reaches a worker
// and a worker's local API needs no network exposure. Declared once for the three tiers.

export type LogStream = 'stdout' | 'stderr';

/** Largest window a read may ask for: a worker keeps at most this much of a stream in memory here. */
export const MAX_LOG_BYTES = 1 << 20;

/** cluster → worker: the newest `bytes` of one stream of one instance. `id` pairs the answer. */
export interface LogRequest {
  id: string;
  service_id: string;
  instance_n: number;
  stream: LogStream;
  bytes: number;
}

/** worker → cluster: the text, or why not (404: the worker runs no such instance). */
export type LogAnswer = { id: string; ok: true; text: string } | { id: string; ok: false; status: number; error: string };

export class LogMessageError extends Error {}

function obj(v: unknown): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new LogMessageError('not a JSON object');
  return v as Record<string, unknown>;
}

const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

export function parseLogRequest(v: unknown): LogRequest {
  const o = obj(v);
  if (typeof o.id !== 'string' || !ID_RE.test(o.id)) throw new LogMessageError('id: 1-64 of [A-Za-z0-9_-]');
  if (typeof o.service_id !== 'string' || o.service_id.length === 0 || o.service_id.length > 128) throw new LogMessageError('service_id: a string of 1-128');
  if (!Number.isInteger(o.instance_n) || (o.instance_n as number) < 0) throw new LogMessageError('instance_n: an integer ≥ 0');
  if (o.stream !== 'stdout' && o.stream !== 'stderr') throw new LogMessageError('stream: stdout or stderr');
  return { id: o.id, service_id: o.service_id, instance_n: o.instance_n as number, stream: o.stream, bytes: logBytes(o.bytes) };
}

export function parseLogAnswer(v: unknown): LogAnswer {
  const o = obj(v);
  if (typeof o.id !== 'string' || !ID_RE.test(o.id)) throw new LogMessageError('id: 1-64 of [A-Za-z0-9_-]');
  if (o.ok === true && typeof o.text === 'string') return { id: o.id, ok: true, text: o.text };
  if (o.ok === false && Number.isInteger(o.status) && typeof o.error === 'string') return { id: o.id, ok: false, status: o.status as number, error: o.error.slice(0, 500) };
  throw new LogMessageError('an answer is {id, ok: true, text} or {id, ok: false, status, error}');
}

/** A window size from a query or a message: 1..MAX_LOG_BYTES, default 64 KiB. */
export function logBytes(v: unknown): number {
  const n = Number(v ?? 65536);
  return Number.isFinite(n) ? Math.min(Math.max(Math.floor(n), 1), MAX_LOG_BYTES) : 65536;
}

/**
 * The part of `cur` (the newest bytes of a log) not in `prev` (the previous read). The window slides
 * and the worker truncates big logs, so the overlap is found by where `cur` starts inside `prev`: the
 * earliest position whose rest of `prev` is a prefix of `cur`. No overlap means all of `cur` is new.
 * Shared by the CLI's `logs --follow` and root's dashboard log stream.
 */
export function unseen(prev: string, cur: string): string {
  if (prev === '') return cur;
  if (cur.startsWith(prev)) return cur.slice(prev.length);
  // The first line of `cur` (possibly cut at its start), short enough to lie inside the overlap.
  const nl = cur.indexOf('\n');
  const anchor = cur.slice(0, Math.min(nl >= 0 ? nl + 1 : cur.length, 64));
  if (anchor === '') return '';
  for (let p = prev.indexOf(anchor); p >= 0; p = prev.indexOf(anchor, p + 1)) {
    if (cur.startsWith(prev.slice(p))) return cur.slice(prev.length - p);
  }
  return cur;
}
