// How the CLI finds root and logs in: root's URL from --root, CANOPY_ROOT, or the local deployment's
// state file; the password from CANOPY_PASSWORD or that state file (user CANOPY_USER, default admin).
// Tokens are cached per root and user (mode 0600) and renewed once when root refuses them.
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { defaultStateDir, readState, type DeploymentState } from './deployment-state.ts';
import { ApiCallError, RootClient } from './root-client.ts';
import { pinCa, pinnedCa } from '../protocol/tls.ts';

export interface SessionOptions {
  /** Root URL given on the command line. */
  root?: string;
  /** State directory of a local deployment (default: CANOPY_UP_DIR or /var/lib/canopy/up). */
  dir?: string;
}

export interface Session {
  client: RootClient;
  /** The local deployment, when the CLI talks to the root that `canopy up` started. */
  deployment: DeploymentState | null;
}

interface CachedToken {
  token: string;
  expires_at: number;
  refresh_token?: string;
  refresh_expires_at?: number;
}

function cacheFile(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'canopy', 'tokens.json');
}

function readCache(): Record<string, CachedToken> {
  try {
    return JSON.parse(readFileSync(cacheFile(), 'utf8')) as Record<string, CachedToken>;
  } catch {
    return {};
  }
}

function writeCache(c: Record<string, CachedToken>): void {
  const f = cacheFile();
  try {
    mkdirSync(dirname(f), { recursive: true, mode: 0o700 });
    writeFileSync(f, JSON.stringify(c), { mode: 0o600 });
  } catch { /* a cache we cannot write only costs a login per command */ }
}

/** Drops the cached tokens for `rootUrl` (its deployment is gone); the cache file and its folder go
 *  when nothing else is cached. */
export function forgetTokens(rootUrl: string): void {
  const f = cacheFile();
  if (!existsSync(f)) return;
  const cache = readCache();
  const prefix = `${rootUrl.replace(/\/+$/, '')}|`;
  for (const k of Object.keys(cache)) if (k.startsWith(prefix)) delete cache[k];
  if (Object.keys(cache).length > 0) { writeCache(cache); return; }
  rmSync(f, { force: true });
  try {
    rmdirSync(dirname(f));
  } catch { /* other files there */ }
}

export function openSession(o: SessionOptions = {}): Session {
  const dir = o.dir ?? defaultStateDir();
  let deployment: DeploymentState | null = null;
  try {
    deployment = existsSync(dir) ? readState(dir) : null;
  } catch {
    deployment = null;
  }
  const url = (o.root || process.env.CANOPY_ROOT || deployment?.rootUrl || 'http://127.0.0.1:10000').replace(/\/+$/, '');
  const local = deployment !== null && deployment.rootUrl === url ? deployment : null;
  // The local deployment's CA, unless --ca or CANOPY_CA chose one: `canopy up` made it for this root.
  if (local?.ca && !pinnedCa()) {
    try {
      pinCa(readFileSync(local.ca, 'utf8'));
    } catch (e) {
      throw new Error(`the deployment's CA ${local.ca} cannot be read (${(e as Error).message}); pass --ca`);
    }
  }
  return { client: new RootClient({ url }), deployment: local };
}

/** Runs `f` with a logged-in client: cached token first, a fresh login if root refuses it. */
export async function withLogin<T>(s: Session, f: (c: RootClient) => Promise<T>): Promise<T> {
  const user = process.env.CANOPY_USER || s.deployment?.username || 'admin';
  const key = `${s.client.url}|${user}`;
  const cache = readCache();
  const save = (a: { token: string; expires_in: number; refresh_token?: string; refresh_expires_in?: number }, keepRefresh?: CachedToken): void => {
    cache[key] = {
      token: a.token, expires_at: Date.now() + a.expires_in * 1000,
      ...(a.refresh_token ? { refresh_token: a.refresh_token, refresh_expires_at: Date.now() + (a.refresh_expires_in ?? 0) * 1000 }
        : keepRefresh?.refresh_token ? { refresh_token: keepRefresh.refresh_token, refresh_expires_at: keepRefresh.refresh_expires_at } : {}),
    };
    writeCache(cache);
  };
  const login = async (): Promise<void> => {
    // A refresh token first: access tokens are short-lived (15 min), the password is asked for rarely.
    const c = cache[key];
    if (c?.refresh_token && (c.refresh_expires_at ?? 0) > Date.now() + 60_000) {
      try {
        save(await s.client.refresh(c.refresh_token), c);
        return;
      } catch { /* expired or revoked: log in */ }
    }
    const password = process.env.CANOPY_PASSWORD || s.deployment?.password;
    if (!password) {
      throw new ApiCallError(401, `no password for ${user} at ${s.client.url}: set CANOPY_PASSWORD (root printed admin's password at its first start), or bring up a local deployment with \`canopy up\``);
    }
    save(await s.client.login(user, password));
  };
  const cached = cache[key];
  if (cached && cached.expires_at > Date.now() + 60_000) s.client.token = cached.token;
  else await login();
  // A refused token (expired during a long `logs -f`, or root restarted with a new key) is renewed
  // once per refusal and the call retried.
  s.client.renew = login;
  return f(s.client);
}
