// Stopping an embedded containerd whose worker is gone. The embedded containerd outlives its worker on
// purpose (a restarted daemon keeps it, for the shims), so a worker that is SIGKILLed and never comes
// back leaves it running with its shims, containers and rootfs mounts under the data dir. `canopy down`,
// the test sweepers and the lab harness call this: it finds the daemon by its config path and the
// shims by its socket (command lines under /proc), never by a broad name, and is synchronous because
// `canopy down` and teardown hooks are.
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { basename, join, resolve } from 'node:path';
import { isAlive, procRef, terminateSync, type ProcRef } from '../../proc.ts';
import { socketPathFor } from './embedded.ts';

export const OWNER_FILE = 'owner.json';

function cmdline(pid: string): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
  } catch {
    return [];
  }
}

function ppid(pid: string): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1];
  } catch {
    return undefined;
  }
}

const argAfter = (argv: string[], flag: string): string | undefined => {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
};

const pids = (): string[] => readdirSync('/proc').filter((n) => /^\d+$/.test(n));

/** Data dirs of every embedded containerd running on this machine (from `containerd --config <data>/containerd/config.toml`). */
export function runningEmbedded(): string[] {
  const out: string[] = [];
  for (const pid of pids()) {
    const argv = cmdline(pid);
    const config = argAfter(argv, '--config');
    if (argv[0] && basename(argv[0]) === 'containerd' && config && config.endsWith('/containerd/config.toml')) out.push(resolve(config, '../..'));
  }
  return out;
}

/**
 * The worker that last started or adopted this data dir's containerd is still running. Without an
 * owner record (a containerd started before workers wrote one) nothing says it is orphaned: kept.
 */
export function embeddedOwnerAlive(dataDir: string): boolean {
  let text: string;
  try {
    text = readFileSync(join(resolve(dataDir, 'containerd'), OWNER_FILE), 'utf8');
  } catch {
    return true;
  }
  try {
    return isAlive(JSON.parse(text) as ProcRef);
  } catch {
    return false; // unreadable record: its writer is gone
  }
}

/**
 * Stops the data dir's containerd (SIGTERM, then SIGKILL), then its shims and the containers under
 * them, then unmounts what it left mounted under its root. Returns what it stopped or unmounted.
 */
export function reapEmbeddedSync(dataDir: string): string[] {
  const dir = resolve(dataDir, 'containerd');
  const config = join(dir, 'config.toml');
  const socket = socketPathFor(dir);
  const done: string[] = [];
  const daemons: ProcRef[] = [];
  const shims: string[] = [];
  for (const pid of pids()) {
    const argv = cmdline(pid);
    if (argv[0] && basename(argv[0]) === 'containerd' && argAfter(argv, '--config') === config) daemons.push(procRef(Number(pid)));
    else if (argv[0] && basename(argv[0]).startsWith('containerd-shim') && argAfter(argv, '-address') === socket) shims.push(pid);
  }
  if (daemons.length > 0) {
    terminateSync(daemons, 5000);
    done.push(...daemons.map((d) => `containerd ${d.pid}`));
  }
  if (shims.length > 0) {
    // A shim is its containers' subreaper: their inits are its children. They go first, then the shim.
    const children = pids().filter((p) => shims.includes(ppid(p) ?? ''));
    terminateSync(children.map((p) => procRef(Number(p))), 0);
    terminateSync(shims.map((p) => procRef(Number(p))), 500);
    done.push(...shims.map((p) => `shim ${p}`), ...children.map((p) => `container process ${p}`));
  }
  // Rootfs and snapshot mounts, deepest first.
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '')
    .map((t) => t.replace(/\\040/g, ' ')).filter((t) => t.startsWith(`${dir}/`)).sort((a, b) => b.length - a.length);
  for (const t of mounts) {
    try {
      execFileSync('umount', ['-l', t], { stdio: 'ignore' });
      done.push(`mount ${t}`);
    } catch { /* already gone */ }
  }
  rmSync(join(dir, 'containerd.pid'), { force: true });
  if (!socket.startsWith(`${dir}/`) && existsSync(socket)) rmSync(socket, { force: true });
  return done;
}

/** Every embedded containerd whose worker is gone: stopped and unmounted. Returns their data dirs. */
export function reapOrphanedEmbeddedSync(): string[] {
  const reaped: string[] = [];
  for (const d of runningEmbedded()) {
    if (embeddedOwnerAlive(d)) continue;
    reapEmbeddedSync(d);
    reaped.push(d);
  }
  return reaped;
}
