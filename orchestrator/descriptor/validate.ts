// Descriptor validation: JSON Schema for shapes (→ 400), then semantic checks (→ 422). Every error
// carries the JSON pointer of the field and the reason. Pure: what is already taken is asked of the
// caller through ValidationContext, so the same code serves root and cluster.
import { Ajv, type ErrorObject } from 'ajv';
import { descriptorSchema, microserviceSchema } from './schema.ts';
import { normalizeDescriptor, normalizeMicroservice, type ValidationContext } from './semantics.ts';
import type { Descriptor, FieldError, Microservice } from './types.ts';

export type { ValidationContext } from './semantics.ts';

export type Validated<T> = { ok: true; value: T } | { ok: false; status: 400 | 422; errors: FieldError[] };

/** At most this many errors are reported; a body with more has a bigger problem than its fields. */
export const MAX_ERRORS = 50;

const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
const checkDescriptor = ajv.compile<Record<string, unknown>>(descriptorSchema);
const checkMicroservice = ajv.compile<Record<string, unknown>>(microserviceSchema);

function describe(e: ErrorObject): FieldError {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return { path: `${e.instancePath}/${String(p.missingProperty)}`, message: 'is required' };
    case 'additionalProperties':
      return { path: `${e.instancePath}/${String(p.additionalProperty)}`, message: 'is not a known field here' };
    case 'enum':
      return { path: e.instancePath, message: `must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}` };
    case 'const':
      return { path: e.instancePath, message: `must be ${JSON.stringify(p.allowedValue)}` };
    case 'type':
      return { path: e.instancePath, message: `must be of type ${String(p.type).replace(',', ' or ')}` };
    case 'pattern':
      // Only numeric fields have a pattern; their name is in the message too, since "100" is fine and
      // a reader comparing the two needs to see which field was meant.
      return { path: e.instancePath, message: `${e.instancePath.split('/').pop()} must be a non-negative number, or a string of digits such as "100"` };
    default:
      return { path: e.instancePath, message: e.message ?? `fails ${e.keyword}` };
  }
}

function schemaErrors(errors: ErrorObject[] | null | undefined): FieldError[] {
  const out: FieldError[] = [];
  const seen = new Set<string>();
  for (const e of errors ?? []) {
    const fe = describe(e);
    const key = `${fe.path}\0${fe.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(fe);
    if (out.length >= MAX_ERRORS) break;
  }
  return out;
}

/** Validates a whole SLA. */
export function validateDescriptor(input: unknown, ctx: ValidationContext): Validated<Descriptor> {
  if (!checkDescriptor(input)) return { ok: false, status: 400, errors: schemaErrors(checkDescriptor.errors) };
  const errors: FieldError[] = [];
  const value = normalizeDescriptor(input, ctx, errors);
  if (errors.length > 0) return { ok: false, status: 422, errors: errors.slice(0, MAX_ERRORS) };
  return { ok: true, value };
}

/** Validates one microservice object on its own (service updates). Paths start at the object. */
export function validateMicroservice(input: unknown, ctx: ValidationContext, siblings: string[] = []): Validated<Microservice> {
  if (!checkMicroservice(input)) return { ok: false, status: 400, errors: schemaErrors(checkMicroservice.errors) };
  const errors: FieldError[] = [];
  const value = normalizeMicroservice(input, '', ctx, errors, new Map(), siblings);
  if (errors.length > 0) return { ok: false, status: 422, errors: errors.slice(0, MAX_ERRORS) };
  return { ok: true, value };
}
