// A folder of certificates for a fleet (`canopy certs`, `canopy up`): ca.pem and ca-key.pem, and
// <name>.pem + <name>-key.pem per tier. Re-running keeps what is still right (the CA, and each leaf
// that the CA signed, is valid for a month more and names every SAN asked for), so it is idempotent;
// a CA that is there is never replaced unless `force` says so, because every link pins it.
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { certFacts, checkSans, createCa, issueCert, signedBy, type CertRequest, type Pem } from './certs.ts';

export interface FleetPaths {
  dir: string;
  ca: string;
  caKey: string;
  cert(name: string): string;
  key(name: string): string;
}

export function fleetPaths(dir: string): FleetPaths {
  return {
    dir,
    ca: join(dir, 'ca.pem'),
    caKey: join(dir, 'ca-key.pem'),
    cert: (n) => join(dir, `${n}.pem`),
    key: (n) => join(dir, `${n}-key.pem`),
  };
}

export interface FleetResult {
  paths: FleetPaths;
  /** What was written this run ("ca", tier names) and what was kept. */
  made: string[];
  kept: string[];
}

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const MONTH_MS = 30 * 86_400_000;

function writeAtomic(path: string, text: string, mode: number): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, text, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}

function read(path: string): string | undefined {
  return existsSync(path) ? readFileSync(path, 'utf8') : undefined;
}

function stillRight(cert: string | undefined, key: string | undefined, ca: string, want: string[]): boolean {
  if (!cert || !key || !signedBy(cert, ca)) return false;
  const f = certFacts(cert);
  if (f.notAfter.getTime() - Date.now() < MONTH_MS) return false;
  const have = new Set(f.sans.map((s) => s.toLowerCase()));
  return want.every((s) => have.has(s.toLowerCase()));
}

/**
 * Makes (or keeps) the CA and one certificate per request in `dir`. Throws, writing nothing, when a
 * name is not a file name, when a SAN is not a name or an address, or when ca.pem exists but cannot
 * be used (unreadable, no key, not a CA, expired) and `force` is not given.
 */
export function ensureFleetCerts(dir: string, requests: CertRequest[], o: { force?: boolean; newCa?: boolean } = {}): FleetResult {
  for (const r of requests) if (!NAME.test(r.name) || r.name === 'ca' || r.name.endsWith('-key')) throw new Error(`certificate name ${JSON.stringify(r.name)}: use a-z 0-9 . _ - (not "ca", not ending in -key)`);
  const names = new Set(requests.map((r) => r.name));
  if (names.size !== requests.length) throw new Error('each certificate name may be given once');
  const p = fleetPaths(dir);
  const made: string[] = [];
  const kept: string[] = [];
  let ca: Pem | undefined;
  const caPem = read(p.ca);
  const caKey = read(p.caKey);
  if (caPem !== undefined || caKey !== undefined) {
    let problem: string | undefined;
    if (caPem === undefined || caKey === undefined) problem = `${caPem === undefined ? p.ca : p.caKey} is missing`;
    else {
      try {
        const f = certFacts(caPem);
        if (!f.isCa) problem = `${p.ca} is not a CA certificate`;
        else if (f.notAfter.getTime() < Date.now()) problem = `${p.ca} expired on ${f.notAfter.toISOString()}`;
      } catch (e) {
        problem = `${p.ca} is not a PEM certificate (${(e as Error).message})`;
      }
    }
    if (o.newCa && !problem) problem = `${p.ca} exists and a new CA was asked for`;
    if (problem) {
      if (!o.force) throw new Error(`${problem}; every link trusts this CA, so it is replaced only with --force (then every certificate is re-issued and every tier needs the new ca.pem)`);
    } else ca = { cert: caPem!, key: caKey! };
  }
  // Every SAN is checked before anything is written: issueCert would throw halfway through otherwise.
  for (const r of requests) checkSans(r);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!ca) {
    ca = createCa();
    writeAtomic(p.caKey, ca.key, 0o600);
    writeAtomic(p.ca, ca.cert, 0o644);
    made.push('ca');
  } else kept.push('ca');
  for (const r of requests) {
    if (stillRight(read(p.cert(r.name)), read(p.key(r.name)), ca.cert, r.sans)) {
      kept.push(r.name);
      continue;
    }
    const leaf = issueCert(ca, r);
    writeAtomic(p.key(r.name), leaf.key, 0o600);
    writeAtomic(p.cert(r.name), leaf.cert, 0o644);
    made.push(r.name);
  }
  return { paths: p, made, kept };
}

/** `name=san,san,…` (the CLI's --cert) as a request. */
export function parseCertSpec(spec: string): CertRequest {
  const eq = spec.indexOf('=');
  if (eq <= 0) throw new Error(`--cert ${JSON.stringify(spec)}: expected <name>=<name or address>[,…], e.g. root=root.example.org,203.0.113.7`);
  const sans = spec.slice(eq + 1).split(',').map((s) => s.trim()).filter(Boolean);
  if (sans.length === 0) throw new Error(`--cert ${spec}: no names or addresses after "="`);
  return { name: spec.slice(0, eq), sans };
}
