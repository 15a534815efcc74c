// A PostgreSQL server of Canopy's own, in a folder of its choosing: `canopy up --store postgres`
// keeps one in its state directory, the tests make a throwaway one. Debian's binaries (initdb,
// pg_ctl) run as an unprivileged user (PostgreSQL refuses root): `postgres` when root starts it.
// Only loopback TCP on a port of its own and a socket in its own folder: it never meets the
// machine's own PostgreSQL, if there is one.
import { execFile, execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { userInfo } from 'node:os';
import pg from 'pg';

const run = promisify(execFile);

/** Where Debian keeps the server binaries (they are not on PATH): the newest version first. */
export function pgBinDir(): string | null {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return null;
  const versions = readdirSync(base).filter((v) => /^\d+$/.test(v) && existsSync(join(base, v, 'bin', 'pg_ctl'))).sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(base, versions[0], 'bin') : null;
}

export interface LocalPostgres {
  dir: string;
  port: number;
  /** postgres://… for the `canopy` database. */
  url: string;
}

function systemUser(name: string): { uid: number; gid: number } | null {
  try {
    // Node has no getpwnam: `id` answers for a name.
    const id = (flag: string) => Number(execFileSync('id', [flag, name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    const uid = id('-u');
    const gid = id('-g');
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : null;
  } catch {
    return null;
  }
}

/** Runs a PostgreSQL binary as the server's user (root cannot run the server). */
async function pgRun(bin: string, args: string[], asUser: string | null, timeout = 60_000): Promise<void> {
  const dir = pgBinDir();
  if (!dir) throw new Error('PostgreSQL is not installed: apt-get install -y postgresql (Debian 12 ships 15)');
  const file = join(dir, bin);
  try {
    if (asUser) await run('runuser', ['-u', asUser, '--', file, ...args], { timeout });
    else await run(file, args, { timeout });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${bin} failed: ${(err.stderr || err.message).trim().split('\n').slice(-3).join(' / ')}`);
  }
}

/**
 * Creates the server's folder on the first call (initdb, trust on loopback only) and starts it on
 * `port`; the database `canopy` exists afterwards. Idempotent for a running server in `dir`.
 */
export async function startLocalPostgres(dir: string, port: number): Promise<LocalPostgres> {
  const asUser = userInfo().uid === 0 ? 'postgres' : null;
  const owner = asUser ? systemUser(asUser) : null;
  if (asUser && !owner) throw new Error(`running as root, PostgreSQL needs the unprivileged user ${asUser} (created by Debian's postgresql package)`);
  const data = join(dir, 'data');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (owner) chownSync(dir, owner.uid, owner.gid);
  if (!existsSync(join(data, 'PG_VERSION'))) {
    rmSync(data, { recursive: true, force: true });
    await pgRun('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-instructions'], asUser);
    writeFileSync(join(dir, 'port'), String(port));
  }
  const opts = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${dir} -c fsync=on -c max_connections=200`;
  const running = existsSync(join(data, 'postmaster.pid'));
  if (!running) await pgRun('pg_ctl', ['-D', data, '-l', join(dir, 'server.log'), '-o', opts, '-w', '-t', '60', 'start'], asUser);
  const url = `postgres://postgres@127.0.0.1:${port}/canopy`;
  // The database of Canopy's own, once.
  const admin = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres` });
  await admin.connect();
  try {
    const r = await admin.query("SELECT 1 FROM pg_database WHERE datname = 'canopy'");
    if (r.rowCount === 0) await admin.query('CREATE DATABASE canopy');
  } finally {
    await admin.end();
  }
  return { dir, port, url };
}

/** The same, synchronously (for `canopy down`); a server that will not stop is killed by its pid file. */
export function stopLocalPostgresSync(dir: string): void {
  const data = join(dir, 'data');
  const pidFile = join(data, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const bin = pgBinDir();
  const asUser = userInfo().uid === 0 ? 'postgres' : null;
  try {
    if (!bin) throw new Error('pg_ctl not installed');
    const args = ['-D', data, '-m', 'fast', '-w', '-t', '30', 'stop'];
    if (asUser) execFileSync('runuser', ['-u', asUser, '--', join(bin, 'pg_ctl'), ...args], { stdio: 'ignore', timeout: 40_000 });
    else execFileSync(join(bin, 'pg_ctl'), args, { stdio: 'ignore', timeout: 40_000 });
  } catch (err) {
    const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
    if (Number.isInteger(pid) && pid > 1) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch { /* gone */ }
    }
    throw err;
  }
}

/** Stops the server in `dir` (fast shutdown: open connections are cut). */
export async function stopLocalPostgres(dir: string, mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
  const data = join(dir, 'data');
  if (!existsSync(join(data, 'postmaster.pid'))) return;
  const asUser = userInfo().uid === 0 ? 'postgres' : null;
  await pgRun('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '60', 'stop'], asUser);
}
