// One JSON file per lab under /run/canopy-lab: enough for another process (the sweeper, `canopy lab
// down|status`) to find and remove everything the lab made, even after its owner died by SIGKILL.
import { linkSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ProcRef } from '../orchestrator/proc.ts';
import type { Impairment } from './impair/rules.ts';

export const REGISTRY_DIR = process.env.CANOPY_LAB_DIR ?? '/run/canopy-lab';

export interface HostRecord {
  name: string;
  netns: string;
  ip: string;
  ip6: string | null;
  mtu: number;
  /** Joined through an impairment relay rather than a plain veth. */
  relayed: boolean;
}

export interface ProcRecord extends ProcRef {
  role: 'relay' | 'child';
  /** Host (relays: the host they join; children: the namespace they run in). */
  where: string;
  /** The relay's counters file. */
  stats?: string;
}

export interface LinkRecord {
  /** 'w1' for a host's link, 'w1~w2' for a pair; ' (out)' or ' (in)' appended when one-way. */
  what: string;
  impairment: Impairment;
}

export interface LabRecord {
  version: 1;
  prefix: string;
  owner: ProcRef;
  /** Made by `canopy lab up`: outlives its owner; swept only with --all. */
  persistent: boolean;
  created: string;
  /** Switch namespace first; then hosts and extra namespaces. Written before any is created. */
  namespaces: string[];
  hosts: HostRecord[];
  links: LinkRecord[];
  procs: ProcRecord[];
}

export function registryPath(prefix: string): string {
  return join(REGISTRY_DIR, `${prefix}.json`);
}

/** Per-lab scratch directory (relay counters, logs of persistent relays). */
export function labDir(prefix: string): string {
  return join(REGISTRY_DIR, `${prefix}.d`);
}

/** Atomic replace: a reader never sees half a file. */
export function writeRecord(rec: LabRecord): void {
  mkdirSync(REGISTRY_DIR, { recursive: true });
  const path = registryPath(rec.prefix);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(rec, null, 1));
  renameSync(tmp, path);
}

/**
 * Publishes a new lab's record only if its prefix is still free (link() fails on an existing name),
 * so two processes that drew the same prefix cannot both own it. Returns false when taken.
 */
export function claimRecord(rec: LabRecord): boolean {
  mkdirSync(REGISTRY_DIR, { recursive: true });
  const path = registryPath(rec.prefix);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(rec, null, 1));
  try {
    linkSync(tmp, path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  } finally {
    rmSync(tmp, { force: true });
  }
}

export function readRecord(prefix: string): LabRecord | null {
  try {
    const rec = JSON.parse(readFileSync(registryPath(prefix), 'utf8')) as LabRecord;
    return rec.version === 1 && rec.prefix === prefix ? rec : null;
  } catch {
    return null;
  }
}

/** Prefixes that have a registry file (readable or not). */
export function listPrefixes(): string[] {
  let names: string[];
  try {
    names = readdirSync(REGISTRY_DIR);
  } catch {
    return [];
  }
  return names.filter((n) => /^cl[0-9a-f]{4}\.json$/.test(n)).map((n) => n.slice(0, -5)).sort();
}

export function removeRecord(prefix: string): void {
  rmSync(registryPath(prefix), { force: true });
  rmSync(labDir(prefix), { recursive: true, force: true });
}
