// JSON Schema of the descriptor: shapes and types only. Meaning (names, ranges, ports, constraint
// fields, references) is checked in semantics.ts so each error can say exactly why.
//
// Oakestra's own descriptors are loose about numbers (`"memory": "100"` is seen in the wild), so
// numeric fields take a number or a decimal string; unknown fields are accepted and ignored, except in
// `addresses` and constraints, where an unknown key is almost always a typo that would silently do
// nothing.

const text = (maxLength: number) => ({ type: 'string', maxLength }) as const;

/** A non-negative number, or a string spelling one. */
const quantity = {
  type: ['number', 'string'],
  minimum: 0,
  pattern: '^[0-9]{1,12}(\\.[0-9]{1,6})?$',
} as const;

/** A non-negative integer, or a string spelling one. */
const count = {
  type: ['integer', 'string'],
  minimum: 0,
  pattern: '^[0-9]{1,9}$',
} as const;

const stringList = (maxItems: number, maxLength: number) =>
  ({ type: 'array', maxItems, items: { type: 'string', maxLength } }) as const;

export const microserviceSchema = {
  type: 'object',
  required: ['microservice_name', 'microservice_namespace', 'virtualization'],
  properties: {
    microserviceID: text(64),
    microservice_name: text(64),
    microservice_namespace: text(64),
    virtualization: { type: 'string', enum: ['container', 'process'] },
    code: text(512),
    cmd: stringList(256, 4096),
    args: stringList(256, 4096),
    environment: stringList(256, 8192),
    memory: quantity,
    vcpus: quantity,
    vgpus: count,
    vtpus: count,
    storage: quantity,
    bandwidth_in: quantity,
    bandwidth_out: quantity,
    port: { type: ['string', 'integer'], maxLength: 1024 },
    one_shot: { type: 'boolean' },
    addresses: {
      type: 'object',
      additionalProperties: false,
      properties: {
        rr_ip: text(45),
        rr_ip_v6: text(45),
        closest_ip: text(45),
        closest_ip_v6: text(45),
      },
    },
    constraints: {
      type: 'array',
      maxItems: 32,
      items: {
        type: 'object',
        required: ['type'],
        properties: { type: { type: 'string', enum: ['direct', 'clusters', 'geo', 'latency', 'anti_affinity', 'arch'] } },
      },
    },
    connectivity: {
      type: 'array',
      maxItems: 64,
      items: {
        type: 'object',
        required: ['target_microservice_id', 'con_constraints'],
        properties: {
          target_microservice_id: text(64),
          con_constraints: {
            type: 'array',
            minItems: 1,
            maxItems: 8,
            items: {
              type: 'object',
              required: ['type', 'threshold'],
              additionalProperties: false,
              properties: { type: { type: 'string', enum: ['latency', 'geo'] }, threshold: quantity },
            },
          },
        },
      },
    },
  },
} as const;

export const descriptorSchema = {
  type: 'object',
  required: ['sla_version', 'applications'],
  properties: {
    sla_version: { type: 'string', const: 'v2.0' },
    customerID: text(128),
    applications: {
      type: 'array',
      minItems: 1,
      maxItems: 64,
      items: {
        type: 'object',
        required: ['application_name', 'application_namespace', 'microservices'],
        properties: {
          applicationID: text(64),
          application_name: text(64),
          application_namespace: text(64),
          application_desc: text(4096),
          microservices: { type: 'array', maxItems: 128, items: microserviceSchema },
        },
      },
    },
  },
} as const;
