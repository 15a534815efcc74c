// Whether a test may skip for a missing facility (root, /dev/net/tun, a Debian binary). Outside CI a
// skip is allowed and counted loudly by test/run.sh; with CI=true a missing facility is a failure with
// its reason, so a CI machine that lacks one cannot go green without running what it skipped.
import { execFileSync } from 'node:child_process';
import type { TestContext } from 'node:test';

export function inCI(): boolean {
  return process.env.CI === 'true' || process.env.CI === '1';
}

/**
 * For `{ skip: unavailable(reason) }`: false when nothing is missing, the reason outside CI, and under
 * CI an error that fails the file with the reason.
 */
export function unavailable(reason: string | null | false | undefined): string | false {
  if (!reason) return false;
  if (inCI()) throw new Error(`CI=true, and a facility the tests need is missing: ${reason}`);
  return reason;
}

/** Inside a test: skip with the reason (outside CI) or fail with it (CI). */
export function skipOrFail(t: TestContext, reason: string): void {
  t.skip(unavailable(reason) || reason);
}

export function needRoot(): string | null {
  return process.getuid?.() === 0 ? null : 'needs root (network namespaces, cgroups)';
}

/** A binary from Debian that a test drives; only its absence (ENOENT) counts as missing. */
export function binaryMissing(name: string, args: string[] = ['--help']): string | null {
  try {
    execFileSync(name, args, { stdio: 'ignore' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return `${name} not installed`;
  }
  return null;
}
