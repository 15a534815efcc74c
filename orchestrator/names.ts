// SPEC §2: names of applications, application namespaces, services and service namespaces.
// Input is case-insensitive and stored lower-case, so `Web` and `web` are the same service.

export const NAME_PATTERN = /^[a-z0-9]{1,30}$/;
export const NAME_MAX = 30;

/** Why `value` is not a valid name, or null when it is (after lower-casing). */
export function nameProblem(value: unknown): string | null {
  if (typeof value !== 'string') return 'must be a string';
  if (value.length === 0) return 'must not be empty';
  if (value.length > NAME_MAX) return `must be at most ${NAME_MAX} characters (got ${value.length})`;
  if (!NAME_PATTERN.test(value.toLowerCase())) return 'must contain only letters a-z and digits 0-9';
  return null;
}

export function isValidName(value: unknown): value is string {
  return nameProblem(value) === null;
}

/** The stored form of a name. Throws on an invalid name: callers validate first. */
export function normalizeName(value: string): string {
  const problem = nameProblem(value);
  if (problem) throw new Error(`invalid name ${JSON.stringify(value)}: ${problem}`);
  return value.toLowerCase();
}

/** `<app>.<appns>.<svc>.<svcns>` */
export function serviceFullName(app: string, appns: string, svc: string, svcns: string): string {
  return `${app}.${appns}.${svc}.${svcns}`;
}

/** `<app>.<appns>.<svc>.<svcns>.instance.<n>` */
export function instanceFullName(app: string, appns: string, svc: string, svcns: string, n: number): string {
  return `${serviceFullName(app, appns, svc, svcns)}.instance.${n}`;
}
