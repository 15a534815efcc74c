// Payloads on the node-engine topics between cluster and worker: their types, their JSON schemas, and
// one decoder that validates every message on receipt. (The `net/…` topics and `jobs/…/updates` carry
// the semantic layer's route messages, validated by proxy/route-messages.ts.) A payload that fails is described (JSON path and why) so the
// receiver can log it and drop it; nothing here throws on bad input.
import { Ajv, type ValidateFunction, type ErrorObject } from 'ajv';
import type { InstanceState } from '../protocol/instance-states.ts';
import { ALL_STATES } from '../protocol/instance-states.ts';
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

const id = { type: 'string', minLength: 1, maxLength: 128 } as const;
const str = (max: number) => ({ type: 'string', maxLength: max }) as const;
const nonneg = { type: 'number', minimum: 0 } as const;
const nstr = { type: ['string', 'null'], maxLength: 64 } as const;
const ref = {
  service_id: id,
  instance_n: { type: 'integer', minimum: 0, maximum: 1_000_000 },
};
const state = { type: 'string', enum: ALL_STATES };

const schemas = {
  heartbeat: {
    type: 'object',
    required: ['ts', 'seq', 'arch', 'virtualizations', 'cpu', 'memory_mb', 'instances'],
    properties: {
      ts: nonneg,
      seq: { type: 'integer', minimum: 0 },
      arch: { type: 'string', minLength: 1, maxLength: 32 },
      virtualizations: { type: 'array', maxItems: 8, items: str(32) },
      location: str(64),
      tunnel_endpoint: str(64),
      coord: {
        type: 'object', required: ['vec', 'height', 'error'],
        properties: {
          vec: { type: 'array', minItems: 2, maxItems: 2, items: { type: 'number', minimum: -1e6, maximum: 1e6 } },
          height: { type: 'number', minimum: 0, maximum: 1e6 },
          error: { type: 'number', minimum: 0, maximum: 10 },
        },
      },
      cpu: {
        type: 'object', required: ['cores', 'free', 'usage_pct'],
        properties: { cores: nonneg, free: nonneg, usage_pct: { type: 'number', minimum: 0, maximum: 100 } },
      },
      memory_mb: { type: 'object', required: ['total', 'free'], properties: { total: nonneg, free: nonneg } },
      instances: {
        type: 'array', maxItems: 10_000,
        items: {
          type: 'object', required: ['service_id', 'instance_n', 'state'],
          properties: { ...ref, state, overloaded: { type: 'boolean' }, overload_reason: str(200) },
        },
      },
    },
  },
  job: {
    type: 'object',
    required: ['service_id', 'instance_n', 'state', 'reason', 'ts'],
    properties: { ...ref, state, reason: str(2000), ts: nonneg, ns_ip: str(64), ns_ip_v6: str(64) },
  },
  deploy: {
    type: 'object',
    required: ['service_id', 'instance_n', 'name', 'spec'],
    properties: {
      ...ref,
      name: {
        type: 'object', required: ['app', 'appns', 'svc', 'svcns'],
        properties: { app: str(30), appns: str(30), svc: str(30), svcns: str(30) },
      },
      instance_ip: str(64),
      instance_ip_v6: str(64),
      spec: {
        type: 'object', required: ['virtualization', 'cmd', 'memory', 'vcpus'],
        properties: {
          virtualization: str(32),
          cmd: { type: 'array', maxItems: 256, items: str(65536) },
          args: { type: 'array', maxItems: 256, items: str(65536) },
          environment: { type: 'array', maxItems: 256, items: { type: 'string', maxLength: 65536, pattern: '^[A-Za-z_][A-Za-z0-9_]*=' } },
          code: str(1024),
          memory: nonneg,
          vcpus: nonneg,
          one_shot: { type: 'boolean' },
          port: str(1024),
        },
      },
    },
  },
  remove: {
    type: 'object', required: ['service_id', 'instance_n', 'reason'],
    properties: { ...ref, reason: str(2000) },
  },
  subnet: {
    type: 'object', required: ['subnet_v4'], properties: { subnet_v4: str(64), subnet_v6: nstr },
  },
  probe: {
    type: 'object', required: ['probe_id', 'target'], properties: { probe_id: id, target: { type: 'string', minLength: 2, maxLength: 45 } },
  },
  probe_result: {
    type: 'object', required: ['probe_id', 'target', 'rtt_ms', 'method'],
    properties: {
      probe_id: id, target: str(45), rtt_ms: { type: ['number', 'null'], minimum: 0, maximum: 600_000 },
      method: { type: 'string', enum: ['icmp', 'tcp', 'none'] }, error: str(500),
    },
  },
};

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

const ajv = new Ajv({ allErrors: true, strict: false });
const validators = Object.fromEntries(
  Object.entries(schemas).map(([k, s]) => [k, ajv.compile(s)]),
) as { [K in MessageKind]: ValidateFunction<MessageTypes[K]> };

export type Decoded<T> = { ok: true; value: T } | { ok: false; error: string };

function describe(errors: ErrorObject[] | null | undefined): string {
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
