// Users of the root API and their passwords (scrypt). No default password exists: the first start
// creates `admin` with the operator's password, or a generated one that is shown once.
import { randomBytes, randomUUID, scryptSync, timingSafeEqual } from 'node:crypto';
import { StoreConflict, type Role, type RootStore, type UserRecord } from './store.ts';

const N = 16384;

export function hashPassword(password: string): string {
  const salt = randomBytes(16);
  const hash = scryptSync(password, salt, 32, { N });
  return `scrypt$${N}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

export function verifyPassword(password: string, stored: string): boolean {
  const [scheme, n, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || !n || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64');
  const got = scryptSync(password, Buffer.from(salt, 'base64'), expected.length, { N: Number(n) });
  return timingSafeEqual(expected, got);
}

export const USERNAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
export const MIN_PASSWORD = 8;

export class Users {
  constructor(private readonly store: RootStore) {}

  /** Creates `admin` on the first start; returns the generated password if one had to be made up. */
  async bootstrap(adminPassword: string | undefined): Promise<{ created: boolean; generated?: string }> {
    if (await this.store.userByName('admin')) return { created: false };
    if (adminPassword && adminPassword.length < MIN_PASSWORD) throw new Error(`the admin password must be at least ${MIN_PASSWORD} characters`);
    const generated = adminPassword ? undefined : randomBytes(12).toString('base64url');
    try {
      await this.create('admin', adminPassword || (generated as string), 'admin');
    } catch (err) {
      // Another replica starting at the same moment created it first.
      if (err instanceof StoreConflict) return { created: false };
      throw err;
    }
    return { created: true, generated };
  }

  async create(username: string, password: string, role: Role): Promise<UserRecord> {
    const u: UserRecord = { id: randomUUID(), username, password_hash: hashPassword(password), role, created_at: Date.now() };
    await this.store.insertUser(u);
    return u;
  }

  /**
   * The user if the password is right; undefined otherwise (same work either way). Names are stored
   * lower-case and match in any case: Oakestra's clients log in as `Admin`.
   */
  async login(username: string, password: string): Promise<UserRecord | undefined> {
    const u = await this.store.userByName(username.toLowerCase());
    const ok = verifyPassword(password, u?.password_hash ?? DUMMY);
    return ok && u ? u : undefined;
  }

  async exists(username: string): Promise<boolean> {
    return (await this.store.userByName(username)) !== undefined;
  }

  list(): Promise<UserRecord[]> {
    return this.store.listUsers();
  }

  /**
   * Every authenticated request asks: found users are kept a few seconds (users are never deleted,
   * and a token names its user by id, so a stale entry can only be a stale password hash, unused here).
   */
  async byId(id: string): Promise<UserRecord | undefined> {
    const hit = this.recent.get(id);
    if (hit && hit.until > Date.now()) return hit.user;
    const user = await this.store.userById(id);
    if (user) {
      if (this.recent.size > 1000) this.recent.clear();
      this.recent.set(id, { user, until: Date.now() + 5000 });
    }
    return user;
  }

  private readonly recent = new Map<string, { user: UserRecord; until: number }>();
}

const DUMMY = hashPassword(randomBytes(8).toString('hex'));
