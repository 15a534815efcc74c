// Where the tests and benchmarks find the project's own SLA descriptors (Oakestra's format). Kept in
// the repository so a clone runs its tests anywhere; every test reads them through this one path.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const SLA_FIXTURES = join(import.meta.dirname, '../test/fixtures/sla');

/** The shape the tests edit before submitting a fixture (constraints, cmd, …). */
export interface SlaFixture {
  applications: Array<{ microservices: Array<Record<string, unknown>> }>;
}

/** A fixture parsed afresh, so one test's edits never reach another's. */
export function readSlaFixture(name: string): SlaFixture {
  return JSON.parse(readFileSync(join(SLA_FIXTURES, name), 'utf8')) as SlaFixture;
}
