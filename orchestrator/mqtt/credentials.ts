// MQTT credentials: one account for the cluster itself and one per worker, issued at registration.
// Passwords are 128-bit random strings, stored only as Mosquitto-compatible PBKDF2-SHA512 hashes
// ("$7$…", what mosquitto_passwd writes), so the same store backs the embedded broker and the
// password file of an external Mosquitto.
import { randomBytes, pbkdf2Sync, timingSafeEqual } from 'node:crypto';
import { readFileSync, writeFileSync, renameSync, mkdirSync, existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { WORKER_ID_RE } from './topics.ts';

/** The cluster's own broker account: may publish and subscribe everywhere. */
export const CLUSTER_USER = 'canopy-cluster';
const RESERVED = new Set([CLUSTER_USER]);

// Mosquitto 2 uses 101 iterations by default; passwords here are random, so a slow KDF buys nothing.
const ITERATIONS = 101;

export interface Credentials {
  username: string;
  password: string;
}

interface StoredAccount {
  hash: string;
  issued: number;
}

export function hashPassword(password: string, salt = randomBytes(12)): string {
  const h = pbkdf2Sync(password, salt, ITERATIONS, 64, 'sha512');
  return `$7$${ITERATIONS}$${salt.toString('base64')}$${h.toString('base64')}`;
}

export function verifyPassword(password: string, stored: string): boolean {
  const parts = stored.split('$');
  // ['', '7', iterations, salt, hash]
  if (parts.length !== 5 || parts[1] !== '7') return false;
  const iterations = Number(parts[2]);
  if (!Number.isInteger(iterations) || iterations < 1 || iterations > 1_000_000) return false;
  const expected = Buffer.from(parts[4]!, 'base64');
  const got = pbkdf2Sync(password, Buffer.from(parts[3]!, 'base64'), iterations, expected.length, 'sha512');
  return expected.length > 0 && timingSafeEqual(expected, got);
}

export function validWorkerId(id: string): boolean {
  return WORKER_ID_RE.test(id) && !RESERVED.has(id);
}

/** Accounts, kept in memory and (when given a file) persisted atomically after every change. */
export class CredentialStore {
  private readonly accounts = new Map<string, StoredAccount>();
  private readonly listeners: Array<() => void> = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly waiters: Array<() => void> = [];

  constructor(private readonly file?: string) {
    if (file && existsSync(file)) {
      const data = JSON.parse(readFileSync(file, 'utf8')) as Record<string, StoredAccount>;
      for (const [u, a] of Object.entries(data)) this.accounts.set(u, a);
    }
  }

  /** Issues a fresh password for `username` (replacing any earlier one) and returns it once. */
  issue(username: string): Credentials {
    if (username !== CLUSTER_USER && !validWorkerId(username)) throw new Error(`invalid worker id ${JSON.stringify(username)}`);
    const password = randomBytes(16).toString('base64url');
    this.accounts.set(username, { hash: hashPassword(password), issued: Date.now() });
    this.changed();
    return { username, password };
  }

  verify(username: string | undefined, password: string | Buffer | undefined): boolean {
    if (!username || password === undefined) return false;
    const a = this.accounts.get(username);
    if (!a) return false;
    return verifyPassword(typeof password === 'string' ? password : password.toString('utf8'), a.hash);
  }

  has(username: string): boolean {
    return this.accounts.has(username);
  }

  revoke(username: string): void {
    if (this.accounts.delete(username)) this.changed();
  }

  usernames(): string[] {
    return [...this.accounts.keys()];
  }

  /** Lines of a Mosquitto password_file. */
  passwordFile(): string {
    return [...this.accounts].map(([u, a]) => `${u}:${a.hash}\n`).join('');
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  /**
   * Writes are coalesced (a burst of registrations costs one write) and listeners run after the write.
   * Losing the last few ms of issues in a crash is harmless: a worker whose password the cluster
   * forgot is refused by the broker and registers again.
   */
  private changed(): void {
    this.flushTimer ??= setTimeout(() => this.flush(), 50);
  }

  /** Resolves once everything issued so far is written and the listeners have run. */
  flushed(): Promise<void> {
    if (!this.flushTimer) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Persists now and notifies listeners (also called on close). */
  flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const waiters = this.waiters.splice(0);
    if (this.file) {
      mkdirSync(dirname(this.file), { recursive: true });
      const tmp = `${this.file}.tmp`;
      writeFileSync(tmp, JSON.stringify(Object.fromEntries(this.accounts)), { mode: 0o600 });
      renameSync(tmp, this.file);
    }
    for (const l of this.listeners) l();
    for (const w of waiters) w();
  }
}
