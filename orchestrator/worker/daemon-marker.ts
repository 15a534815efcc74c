// Which worker daemons run on this machine: /run/canopy/workers/<worker id>.json holds the daemon's
// process identity (pid + start time). Instances outlive their daemon on purpose (a restarted daemon
// re-adopts them), so this marker is how a cleanup tells a stopped or killed daemon's leftovers from a
// live deployment's instances.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isAlive, procRef, type ProcRef } from '../proc.ts';

export const DAEMONS_DIR = '/run/canopy/workers';

export function writeDaemonMarker(workerId: string, dir = DAEMONS_DIR): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${workerId}.json`), JSON.stringify(procRef(process.pid)));
}

export function removeDaemonMarker(workerId: string, dir = DAEMONS_DIR): void {
  rmSync(join(dir, `${workerId}.json`), { force: true });
}

/** Ids of workers whose daemon process is running now. */
export function liveDaemons(dir = DAEMONS_DIR): Set<string> {
  const live = new Set<string>();
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return live;
  }
  for (const n of names) {
    if (!n.endsWith('.json')) continue;
    try {
      const ref = JSON.parse(readFileSync(join(dir, n), 'utf8')) as ProcRef;
      if (isAlive(ref)) live.add(n.slice(0, -'.json'.length));
    } catch {
      // unreadable marker: its daemon counts as gone
    }
  }
  return live;
}
