// Process identity (for `canopy up`'s state file and the test lab's registry): a pid plus its start
// time, so that a pid reused by an unrelated process after a crash is never signalled.
import { readFileSync } from 'node:fs';

/** Start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat), or null if gone. */
export function procStartTime(pid: number): string | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may itself contain spaces or parentheses.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); field 22 is rest[19]. A zombie is as good as gone.
  if (rest[0] === 'Z') return null;
  return rest[19] ?? null;
}

export interface ProcRef {
  pid: number;
  /** procStartTime at spawn; null when the process was already gone. */
  start: string | null;
}

export function procRef(pid: number): ProcRef {
  return { pid, start: procStartTime(pid) };
}

/** True when the very process `ref` names still runs. */
export function isAlive(ref: ProcRef): boolean {
  const now = procStartTime(ref.pid);
  return now !== null && now === ref.start;
}

/**
 * Signals the process group led by `ref` (lab processes are spawned detached, so each leads its own
 * group) and falls back to the single pid. Returns false when the process no longer exists.
 */
export function signalRef(ref: ProcRef, sig: NodeJS.Signals): boolean {
  if (!isAlive(ref)) return false;
  try {
    process.kill(-ref.pid, sig);
    return true;
  } catch {
    try {
      process.kill(ref.pid, sig);
      return true;
    } catch {
      return false;
    }
  }
}

/** Blocks the thread for `ms` (used only by teardown paths that must stay synchronous). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** SIGTERM, then SIGKILL for whatever still runs after `graceMs`. Synchronous. */
export function terminateSync(refs: readonly ProcRef[], graceMs = 500): void {
  const live = refs.filter((r) => signalRef(r, 'SIGTERM'));
  const deadline = Date.now() + graceMs;
  while (live.some(isAlive) && Date.now() < deadline) sleepSync(10);
  for (const r of live) signalRef(r, 'SIGKILL');
  const killDeadline = Date.now() + 2000;
  while (live.some(isAlive) && Date.now() < killDeadline) sleepSync(5);
}
