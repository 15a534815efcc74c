// Payloads on the node-engine topics between cluster and worker: their types, and one decoder that
// validates every message on receipt against its JSON schema (message-schemas.ts, compiled ahead of time). (The `net/…` topics and `jobs/…/updates` carry
// the semantic layer's route messages, validated by proxy/route-messages.ts.) A payload that fails is described (JSON path and why) so the
// receiver can log it and drop it; nothing here throws on bad input.
import { validators } from './message-validators.generated.js';
import type { InstanceState } from '../protocol/instance-states.ts';
import type { NetCoordinate } from '../protocol/network.ts';

/** Largest payload accepted on any topic: a heartbeat with a few thousand instances fits. */
export const MAX_PAYLOAD_BYTES = 1 << 20;

export interface InstanceRef {
  service_id: string;
  instance_n: number;
}

export interface InventoryEntry extends InstanceRef {
  state: InstanceState;
  /** Set while the instance keeps hitting its CPU quota (SPEC §5.3): `closest` then avoids it. */
  overloaded?: boolean;
  /** Why it is overloaded, for status. */
  overload_reason?: string;
}

/** nodes/<id>/information, every second. */
export interface Heartbeat {
  ts: number;
  seq: number;
  arch: string;
  virtualizations: string[];
  /** "lat,long" */
  location?: string;
  cpu: { cores: number; free: number; usage_pct: number };
  memory_mb: { total: number; free: number };
  /** Everything the worker runs: the cluster reconciles against it. */
  instances: InventoryEntry[];
  /** host:port of the worker's tunnel socket, once its net manager runs. */
  tunnel_endpoint?: string;
  /** Its Vivaldi coordinate, learned from the tunnel's RTT probes (once its net manager runs). */
  coord?: NetCoordinate;
}

/** nodes/<id>/net/probe: measure the RTT to an address outside the overlay (a `latency` target). */
export interface ProbeRequest {
  probe_id: string;
  target: string;
}

/** nodes/<id>/net/probe/result: the answer; `rtt_ms` null when the target did not answer. */
export interface ProbeResult {
  probe_id: string;
  target: string;
  rtt_ms: number | null;
  /** How it was measured: ICMP echo, or a TCP connect where echo got no answer. */
  method: 'icmp' | 'tcp' | 'none';
  error?: string;
}

/** nodes/<id>/job: one instance changed state on the worker. */
export interface JobStatus extends InstanceRef {
  state: InstanceState;
  reason: string;
  ts: number;
  ns_ip?: string;
  ns_ip_v6?: string;
}

/** What a worker needs to run an instance (a subset of the descriptor's microservice). */
export interface InstanceSpec {
  virtualization: string;
  cmd: string[];
  args?: string[];
  environment?: string[];
  code?: string;
  /** MB; 0 = no limit. */
  memory: number;
  /** 0 = no limit. */
  vcpus: number;
  one_shot?: boolean;
  port?: string;
}

export interface ServiceName {
  app: string;
  appns: string;
  svc: string;
  svcns: string;
}

/** nodes/<id>/control/deploy */
export interface DeployOrder extends InstanceRef {
  name: ServiceName;
  instance_ip?: string;
  instance_ip_v6?: string;
  spec: InstanceSpec;
}

/** nodes/<id>/control/delete */
export interface DeleteOrder extends InstanceRef {
  reason: string;
}

/** nodes/<id>/net/subnet (retained) */
export interface SubnetAssignment {
  subnet_v4: string;
  subnet_v6?: string | null;
}

export interface MessageTypes {
  heartbeat: Heartbeat;
  job: JobStatus;
  deploy: DeployOrder;
  remove: DeleteOrder;
  subnet: SubnetAssignment;
  probe: ProbeRequest;
  probe_result: ProbeResult;
}
export type MessageKind = keyof MessageTypes;

export type Decoded<T> = { ok: true; value: T } | { ok: false; error: string };

function describe(errors: ReadonlyArray<{ instancePath: string; message?: string }> | null | undefined): string {
  return (errors ?? []).slice(0, 5).map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}`).join('; ');
}

/** Parses and validates one payload. Never throws. */
export function decode<K extends MessageKind>(kind: K, payload: Uint8Array | string): Decoded<MessageTypes[K]> {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength;
  if (size > MAX_PAYLOAD_BYTES) return { ok: false, error: `payload of ${size} bytes exceeds ${MAX_PAYLOAD_BYTES}` };
  let value: unknown;
  try {
    value = JSON.parse(typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8'));
  } catch (e) {
    return { ok: false, error: `not JSON: ${(e as Error).message}` };
  }
  const v = validators[kind];
  if (!v(value)) return { ok: false, error: `invalid ${kind}: ${describe(v.errors)}` };
  return { ok: true, value: value as MessageTypes[K] };
}

export function encode<K extends MessageKind>(_kind: K, value: MessageTypes[K]): string {
  return JSON.stringify(value);
}
