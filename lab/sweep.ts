// The sweeper: removes labs whose owner died (crash, SIGKILL) and namespaces with a lab's name but no
// registry. Labs of live owners are never touched; persistent labs (`canopy lab up`) only with `all`.
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { listNetnsSync } from './iproute.ts';
import { prefixOfNetns } from './names.ts';
import { isAlive, procStartTime } from '../orchestrator/proc.ts';
import { type LabRecord, REGISTRY_DIR, listPrefixes, readRecord, removeRecord } from './registry.ts';
import { removeNamespacesSync, teardownSync } from './teardown.ts';

export interface SweepOptions {
  /** Also remove persistent labs. */
  all?: boolean;
}

export interface SweepReport {
  /** Labs removed through their registry (owner dead, or persistent with `all`). */
  labs: string[];
  /** Namespaces removed because no registry claimed them. */
  orphans: string[];
  /** Labs left alone (owner alive, or persistent without `all`). */
  kept: string[];
}

/**
 * A test lab goes when its owner is dead; a persistent lab only with `all`. A live owner's test lab
 * is never removed, even with `all`: another run is using it.
 */
export function sweepVerdict(rec: Pick<LabRecord, 'persistent'>, ownerAlive: boolean, all: boolean): 'keep' | 'remove' {
  if (rec.persistent) return all ? 'remove' : 'keep';
  return ownerAlive ? 'keep' : 'remove';
}

export function sweep(opts: SweepOptions = {}): SweepReport {
  const report: SweepReport = { labs: [], orphans: [], kept: [] };
  for (const prefix of listPrefixes()) {
    const rec = readRecord(prefix);
    if (rec === null) {
      // Unreadable registry: nothing to trust in it; its namespaces are removed as orphans below.
      removeRecord(prefix);
      continue;
    }
    if (sweepVerdict(rec, isAlive(rec.owner), opts.all ?? false) === 'keep') {
      report.kept.push(prefix);
      continue;
    }
    teardownSync(rec);
    report.labs.push(prefix);
  }
  const claimed = new Set(listPrefixes());
  const orphans = listNetnsSync().filter((ns) => {
    const p = prefixOfNetns(ns);
    return p !== null && !claimed.has(p);
  });
  if (orphans.length > 0) removeNamespacesSync(orphans);
  report.orphans = orphans;
  // /etc/netns entries of lab namespaces that no longer exist.
  for (const name of listDirSync('/etc/netns')) {
    const p = prefixOfNetns(name);
    if (p !== null && !claimed.has(p)) rmSync(join('/etc/netns', name), { recursive: true, force: true });
  }
  // Scratch directories whose registry is gone (a crash between the two removals).
  for (const name of listDirSync(REGISTRY_DIR)) {
    const m = /^(cl[0-9a-f]{4})\.d$/.exec(name);
    if (m && !claimed.has(m[1]!)) rmSync(join(REGISTRY_DIR, name), { recursive: true, force: true });
    // A half-written record of a writer that died mid-write.
    const t = /^cl[0-9a-f]{4}\.json\.(\d+)\.tmp$/.exec(name);
    if (t && procStartTime(Number(t[1])) === null) rmSync(join(REGISTRY_DIR, name), { force: true });
  }
  return report;
}

function listDirSync(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
