// What `canopy lab status` shows: every lab in the registry, its hosts, impairments and relay
// counters, and whether it is alive (with a reason when it is not).
import { listNetnsSync } from './iproute.ts';
import { requestRelayStats } from './lab.ts';
import { isAlive } from '../orchestrator/proc.ts';
import { type HostRecord, type LabRecord, type LinkRecord, listPrefixes, readRecord } from './registry.ts';
import type { RelayStats } from './impair/stats.ts';

export interface LabStatus {
  prefix: string;
  persistent: boolean;
  created: string;
  ownerPid: number;
  ownerAlive: boolean;
  /** 'up', or 'broken: <why>' (missing namespaces, dead relays, dead owner of a test lab). */
  state: string;
  hosts: (HostRecord & { relay: RelayStats | null; relayAlive: boolean | null })[];
  links: LinkRecord[];
}

export async function labStatus(): Promise<LabStatus[]> {
  const out: LabStatus[] = [];
  const present = new Set(listNetnsSync());
  for (const prefix of listPrefixes()) {
    const rec = readRecord(prefix);
    if (!rec) continue;
    out.push(await one(rec, present));
  }
  return out;
}

async function one(rec: LabRecord, present: Set<string>): Promise<LabStatus> {
  const problems: string[] = [];
  const ownerAlive = isAlive(rec.owner);
  if (!rec.persistent && !ownerAlive) problems.push(`owner ${rec.owner.pid} is dead (run the sweeper)`);
  const missing = rec.namespaces.filter((n) => !present.has(n));
  if (missing.length > 0) problems.push(`namespaces missing: ${missing.join(', ')}`);
  const hosts = await Promise.all(rec.hosts.map(async (h) => {
    const relayRef = rec.procs.find((p) => p.role === 'relay' && p.where === h.name);
    if (!relayRef) return { ...h, relay: null, relayAlive: null };
    const alive = isAlive(relayRef);
    if (!alive) problems.push(`relay of ${h.name} (pid ${relayRef.pid}) is not running`);
    let relay: RelayStats | null = null;
    try {
      relay = await requestRelayStats(relayRef);
    } catch {
      relay = null;
    }
    return { ...h, relay, relayAlive: alive };
  }));
  return {
    prefix: rec.prefix, persistent: rec.persistent, created: rec.created, ownerPid: rec.owner.pid, ownerAlive,
    state: problems.length === 0 ? 'up' : `broken: ${problems.join('; ')}`, hosts, links: rec.links,
  };
}
