// Removing a lab from its registry record alone, so that the owner, the sweeper and `canopy lab down`
// share one path. Synchronous on purpose: it also runs from a process 'exit' handler.
import { rmSync } from 'node:fs';
import { ipBatchForce, netnsPidsSync } from './iproute.ts';
import { type ProcRef, procRef, terminateSync } from '../orchestrator/proc.ts';
import { type LabRecord, removeRecord } from './registry.ts';

/** Kills every process the record names, then anything else still inside its namespaces, then deletes them. */
export function teardownSync(rec: LabRecord): void {
  terminateSync(rec.procs, 500);
  removeNamespacesSync(rec.namespaces);
  removeRecord(rec.prefix);
}

/**
 * Deletes namespaces after killing the processes inside them (a namespace with a live process keeps
 * its interfaces after `ip netns del`). Only namespaces the lab made are ever passed here.
 */
export function removeNamespacesSync(namespaces: readonly string[]): void {
  const inside: ProcRef[] = [];
  for (const ns of namespaces) {
    for (const pid of netnsPidsSync(ns)) if (pid !== process.pid) inside.push(procRef(pid));
  }
  if (inside.length > 0) terminateSync(inside, 200);
  ipBatchForce(namespaces.map((ns) => `netns delete ${ns}`));
  // `ip netns del` leaves the mount point when it cannot unmount (e.g. the namespace is already gone).
  for (const ns of namespaces) {
    rmSync(`/run/netns/${ns}`, { force: true });
    // Per-namespace files `ip netns exec` bind-mounts (e.g. a resolv.conf a test wrote for the namespace).
    rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
  }
}
