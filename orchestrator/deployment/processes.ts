// Detached daemons of a local deployment: each in its own process group, stdout+stderr appended to a
// log file, identified by pid + start time so a reused pid is never signalled.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, realpathSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { isAlive, procRef, signalRef, sleepSync } from '../proc.ts';
import type { ProcessRecord } from '../client/deployment-state.ts';

/** bin/canopy.js of this checkout: daemons run the same code as the CLI that starts them. */
export const CANOPY_BIN = join(import.meta.dirname, '../../bin/canopy.js');

/**
 * How a user runs this checkout's CLI, for printed hints: `canopy` when that name on PATH is this
 * bin/canopy.js (scripts/install-deps.sh links it), else `node <path to bin/canopy.js>`.
 */
export function cliCommand(): string {
  let bin: string;
  try {
    bin = realpathSync(CANOPY_BIN);
  } catch {
    return `node ${CANOPY_BIN}`;
  }
  for (const d of (process.env.PATH ?? '').split(':').filter(Boolean)) {
    try {
      if (realpathSync(join(d, 'canopy')) === bin) return 'canopy';
    } catch { /* not in this directory */ }
    // The first `canopy` on PATH is the one the shell runs: another clone's is not ours.
    if (existsSync(join(d, 'canopy'))) break;
  }
  const rel = relative(process.cwd(), CANOPY_BIN);
  return `node ${rel.startsWith('..') ? CANOPY_BIN : rel}`;
}

/**
 * Environment every daemon starts with (an operator's own value of the same variable wins).
 * MALLOC_TRIM_THRESHOLD_: glibc's default (128 KB), pinned. Left to itself glibc raises the threshold
 * after a large block is freed (up to 32 MB), and then keeps freed memory at the top of the heap for
 * good: root held 19.5 MB of malloc heap idle, 3.5 MB with this; worker −2.5 MB (issue 16,
 * docs/decisions.md "Daemon memory").
 */
export const DAEMON_ENV: Readonly<Record<string, string>> = { MALLOC_TRIM_THRESHOLD_: '131072' };

/**
 * Node flags of every daemon `canopy up` starts. --max-semi-space-size=2: V8's young generation
 * grows to 2 × 16 MB under a burst of deploys and undeploys and does not shrink again; capped at
 * 2 × 2 MB the worker ended 1 000 cycles at 64.6 MB (idle 62.3 MB) instead of 95.1 MB (issue 16,
 * docs/decisions.md "Memory after 1 000 deploy/undeploy cycles"). An operator's own NODE_OPTIONS
 * setting for it wins (a flag on the command line would override NODE_OPTIONS).
 */
export function daemonNodeFlags(env: NodeJS.ProcessEnv = process.env): string[] {
  return /semi-space-size/.test(env.NODE_OPTIONS ?? '') ? [] : ['--max-semi-space-size=2'];
}

export function spawnDetached(argv: string[], log: string, env: Record<string, string> = {}): ProcessRecord {
  const fd = openSync(log, 'a', 0o600);
  try {
    const child = spawn(argv[0]!, argv.slice(1), {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { ...DAEMON_ENV, ...process.env, ...env },
      cwd: join(import.meta.dirname, '../..'),
    });
    if (child.pid === undefined) throw new Error(`cannot start ${argv[0]}`);
    child.unref();
    return { ...procRef(child.pid), argv, log };
  } finally {
    closeSync(fd);
  }
}

/** The last `lines` lines of a log, for error messages. */
export function logTail(file: string, lines = 15): string {
  try {
    const text = readFileSync(file, 'utf8');
    return text.split('\n').filter((l) => l.length > 0).slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * SIGTERM to all at once, then SIGKILL to whatever still runs after graceMs. Returns the indices of
 * those that had to be killed. Synchronous.
 */
export function stopProcesses(ps: readonly (ProcessRecord | null)[], graceMs: number): number[] {
  const live = ps.map((p) => p !== null && signalRef(p, 'SIGTERM'));
  const until = Date.now() + graceMs;
  while (ps.some((p, i) => live[i] && isAlive(p!)) && Date.now() < until) sleepSync(20);
  const killed: number[] = [];
  ps.forEach((p, i) => {
    if (live[i] && isAlive(p!)) {
      signalRef(p!, 'SIGKILL');
      killed.push(i);
    }
  });
  const killUntil = Date.now() + 3000;
  while (killed.some((i) => isAlive(ps[i]!)) && Date.now() < killUntil) sleepSync(10);
  return killed;
}

/** Mount points of every cgroup hierarchy (v1 controllers and v2). */
function cgroupMounts(): string[] {
  let text = '';
  try {
    text = readFileSync('/proc/mounts', 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').map((l) => l.split(' ')).filter((f) => f[2] === 'cgroup' || f[2] === 'cgroup2').map((f) => f[1]!);
}

function subdirs(dir: string): string[] {
  try {
    return readdirSync(dir).map((n) => join(dir, n)).filter((p) => statSync(p).isDirectory());
  } catch {
    return [];
  }
}

function killGroupTree(dir: string): void {
  for (const d of subdirs(dir)) killGroupTree(d);
  const procs = join(dir, 'cgroup.procs');
  if (!existsSync(procs)) return;
  for (const pid of readFileSync(procs, 'utf8').split('\n').map(Number).filter((n) => n > 0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch { /* already gone */ }
  }
}

function removeGroupTree(dir: string): void {
  for (const d of subdirs(dir)) removeGroupTree(d);
  for (let i = 0; i < 50; i++) {
    try {
      rmdirSync(dir);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      // A frozen v1 group must be thawed before its killed members can leave.
      const freezer = join(dir, 'freezer.state');
      if (existsSync(freezer)) {
        try {
          writeFileSync(freezer, 'THAWED');
        } catch { /* not a freezer group */ }
      }
      sleepSync(20);
    }
  }
}

/**
 * What a worker that died without undeploying leaves: its instances' cgroups (`canopy/<worker>` in
 * every hierarchy, see orchestrator/worker/process-runtime.ts) with their processes. Kills them and
 * removes the groups. Returns how many groups existed.
 */
export function removeWorkerCgroups(workerId: string): number {
  let found = 0;
  for (const m of cgroupMounts()) {
    const dir = join(m, 'canopy', workerId);
    if (!existsSync(dir)) continue;
    found++;
    killGroupTree(dir);
    removeGroupTree(dir);
    // The shared parent too, once no other worker has groups under it.
    try {
      rmdirSync(join(m, 'canopy'));
    } catch { /* another worker's groups, or gone */ }
  }
  return found;
}
