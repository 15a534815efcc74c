// The state file of a local deployment (`canopy up`): what was made (namespaces, links, processes,
// directories) so that `canopy down` removes exactly that, and the credentials the CLI logs in with.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ProcRef } from '../proc.ts';

export const STATE_VERSION = 1;

export interface ProcessRecord extends ProcRef {
  /** Command line, for messages. */
  argv: string[];
  log: string;
}

export interface WorkerRecord {
  /** Worker name = worker id at the cluster. */
  name: string;
  netns: string;
  /** Host-side end of its veth (on the bridge). */
  hostVeth: string;
  ip: string;
  apiUrl: string;
  dataDir: string;
  process: ProcessRecord | null;
}

export interface DeploymentState {
  version: number;
  /** Short deployment name; every namespace and link it makes starts with `cup-<name>`. */
  name: string;
  created_at: string;
  dir: string;
  bridge: string;
  /** Underlay subnet, e.g. 198.19.250.0/24; the bridge holds .1. */
  subnet: string;
  hostIp: string;
  rootUrl: string;
  clusterUrl: string;
  mqttUrl: string;
  clusterName: string;
  username: string;
  password: string;
  /** Root (the first replica, when there are several). */
  root: ProcessRecord | null;
  /** Further root replicas (`up --roots N`); `rootUrl` lists them all, comma-separated. */
  rootReplicas?: (ProcessRecord | null)[];
  /** The PostgreSQL server root's replicas share (`up --store postgres`), in `<dir>/postgres`. */
  postgres?: { dir: string; port: number; url: string };
  cluster: ProcessRecord | null;
  /** The DNS relay on the bridge address, the workers' upstream resolver (absent in older state files). */
  dnsRelay?: ProcessRecord | null;
  workers: WorkerRecord[];
  /** The CA every link of the deployment is verified against (TLS on, the default); absent with --no-tls. */
  ca?: string;
  /** The outermost directory `up` had to create for `dir` (e.g. /var/lib/canopy): `down` removes the
   *  empty parents up to it, and nothing above. Absent when `dir`'s parent existed. */
  createdFrom?: string;
}

/** Where `canopy up` keeps its state: CANOPY_UP_DIR, else /var/lib/canopy/up. */
export function defaultStateDir(): string {
  return process.env.CANOPY_UP_DIR || '/var/lib/canopy/up';
}

export function stateFile(dir: string): string {
  return join(dir, 'state.json');
}

export function readState(dir: string): DeploymentState | null {
  const f = stateFile(dir);
  if (!existsSync(f)) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(f, 'utf8'));
  } catch (e) {
    throw new Error(`${f} is not valid JSON (${(e as Error).message}); remove it by hand after checking \`ip netns list\``);
  }
  const s = parsed as Partial<DeploymentState>;
  if (s.version !== STATE_VERSION || typeof s.name !== 'string' || !Array.isArray(s.workers)) {
    throw new Error(`${f} is not a canopy up state file of version ${STATE_VERSION}`);
  }
  return s as DeploymentState;
}

/** Written atomically (rename), mode 0600: it holds the admin password. */
export function writeState(s: DeploymentState): void {
  mkdirSync(s.dir, { recursive: true, mode: 0o700 });
  const f = stateFile(s.dir);
  const tmp = `${f}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(s, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, f);
}
