// Who a worker is on the tunnel, and the key that admits it (SPEC §5.4, docs/protocols.md "Tunnel
// identity"). The sender id in every tunnel header is the worker's IPv4 subnet base as a 32-bit
// number: root hands out non-overlapping subnets for the whole deployment, so the id is unique
// without another registry, survives restarts with the subnet, and every party can compute it.
// The key is the cluster's: generated once, kept in its state directory, handed to each worker at
// registration (over the join-key-authenticated HTTP call), so only admitted workers can send.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isIPv4 } from 'node:net';

/** The tunnel key as it travels in the registration answer and sits in worker.json. */
export interface TunnelKey {
  /** 0..255, carried in each header so keys can be rotated without a flag day. */
  key_id: number;
  /** 32 bytes, hex. */
  key: string;
  /** Encrypt payloads too (otherwise authenticated only). */
  encrypt: boolean;
}

/** The tunnel sender id of the worker that owns `subnetV4` ("10.18.3.0/24" → 0x0a120300). */
export function tunnelIdForSubnet(subnetV4: string): number {
  const base = subnetV4.split('/')[0] ?? '';
  if (!isIPv4(base)) throw new Error(`not an IPv4 subnet: ${JSON.stringify(subnetV4)}`);
  const id = base.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
  if (id === 0) throw new Error('subnet 0.0.0.0 has no tunnel id');
  return id >>> 0;
}

export function validTunnelKey(v: unknown): v is TunnelKey {
  const k = v as Partial<TunnelKey> | null;
  return typeof k === 'object' && k !== null && Number.isInteger(k.key_id) && (k.key_id as number) >= 0 && (k.key_id as number) <= 255
    && typeof k.key === 'string' && /^[0-9a-f]{64}$/.test(k.key) && typeof k.encrypt === 'boolean';
}

/** The cluster's tunnel key: `<stateDir>/tunnel-key.json` (mode 0600), created on first use. */
export function loadOrCreateTunnelKey(stateDir: string, encrypt = false): TunnelKey {
  const file = join(stateDir, 'tunnel-key.json');
  if (existsSync(file)) {
    const k = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    if (!validTunnelKey(k)) throw new Error(`${file} is not a tunnel key; remove it to generate a new one (workers must then register again)`);
    return k.encrypt === encrypt ? k : { ...k, encrypt };
  }
  const k: TunnelKey = { key_id: 1, key: randomBytes(32).toString('hex'), encrypt };
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(`${file}.tmp`, JSON.stringify(k), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
  return k;
}

/**
 * The key that succeeds `old` after a revocation: new random bytes under the next key id of the same
 * range (cluster keys 1..127, root's overlay keys 128..255, so the two never share an id on a worker).
 */
export function nextTunnelKey(old: TunnelKey): TunnelKey {
  const base = old.key_id >= 128 ? 128 : 1;
  const span = old.key_id >= 128 ? 128 : 127;
  return { key_id: base + ((old.key_id - base + 1) % span), key: randomBytes(32).toString('hex'), encrypt: old.encrypt };
}

/** Writes the cluster's (rotated) tunnel key where loadOrCreateTunnelKey reads it. */
export function saveTunnelKey(stateDir: string, k: TunnelKey): void {
  const file = join(stateDir, 'tunnel-key.json');
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(`${file}.tmp`, JSON.stringify(k), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}
