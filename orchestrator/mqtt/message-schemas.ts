// The JSON schemas of the node-engine topics' payloads (their types are in messages.ts). They are
// compiled to validation code ahead of time (scripts/gen-validators.ts writes
// message-validators.generated.js), so that neither a worker nor a cluster loads ajv or compiles
// schemas at start (issue 16: ajv and the compiled validators cost a worker ~5 MB). A unit test fails
// when the generated code no longer matches these schemas.
import { ALL_STATES } from '../protocol/instance-states.ts';

const id = { type: 'string', minLength: 1, maxLength: 128 } as const;
const str = (max: number) => ({ type: 'string', maxLength: max }) as const;
const nonneg = { type: 'number', minimum: 0 } as const;
const nstr = { type: ['string', 'null'], maxLength: 64 } as const;
const ref = {
  service_id: id,
  instance_n: { type: 'integer', minimum: 0, maximum: 1_000_000 },
};
const state = { type: 'string', enum: ALL_STATES };

export const schemas = {
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

