// The worker's own containerd (the embedded default when no --containerd socket is given): config,
// root and state under the worker's data dir, the CRI plugin off. It runs in its own session so the
// shims and containers outlive a daemon crash; a restarted daemon finds it answering on its socket and
// keeps it. A clean stop (`canopy down`, worker exit) stops it by its recorded pid.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync, readFileSync, openSync, closeSync, existsSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { pingContainerd } from './lazy.ts';
import { procRef } from '../../proc.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface EmbeddedContainerd {
  socket: string;
  /** Stops containerd (SIGTERM, then SIGKILL); the shims and their containers are not touched. */
  stop(): Promise<void>;
}

/** A unix socket path must fit in 108 bytes; long data dirs get one under /run named after them. */
export function socketPathFor(dir: string): string {
  const p = join(dir, 'containerd.sock');
  return p.length < 100 ? p : `/run/canopy-containerd-${createHash('sha256').update(dir).digest('hex').slice(0, 12)}.sock`;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function recordedPid(dir: string): number | undefined {
  try {
    const n = Number(readFileSync(join(dir, 'containerd.pid'), 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

export async function stopEmbedded(dataDir: string, timeoutMs = 10_000): Promise<void> {
  const dir = resolve(dataDir, 'containerd');
  const pid = recordedPid(dir);
  if (pid === undefined || !alive(pid) || !readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('containerd')) return;
  process.kill(pid, 'SIGTERM');
  const until = Date.now() + timeoutMs;
  while (alive(pid) && Date.now() < until) await sleep(50);
  if (alive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(join(dir, 'containerd.pid'), { force: true });
}

/** Starts (or finds running) the worker's containerd and waits until it answers. */
export async function startEmbedded(dataDir: string, timeoutMs = 30_000): Promise<EmbeddedContainerd> {
  const dir = resolve(dataDir, 'containerd');
  const socket = socketPathFor(dir);
  const stop = () => stopEmbedded(dataDir);
  // Who keeps this containerd: a cleanup stops it only once this process is gone (embedded-reap.ts).
  const own = (): void => writeFileSync(join(dir, 'owner.json'), JSON.stringify(procRef(process.pid)));
  if (existsSync(socket) && (await pingContainerd(socket, 2000))) {
    own();
    return { socket, stop };
  }
  mkdirSync(join(dir, 'root'), { recursive: true });
  mkdirSync(join(dir, 'state'), { recursive: true });
  const config = join(dir, 'config.toml');
  writeFileSync(config, [
    'version = 2',
    `root = "${join(dir, 'root')}"`,
    `state = "${join(dir, 'state')}"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    // containerd's OOM score adjustment as its systemd unit sets it: the daemon is not what the
    // kernel should kill first.
    'oom_score = -999',
    '[grpc]',
    `  address = "${socket}"`,
    '',
  ].join('\n'));
  const log = openSync(join(dir, 'containerd.log'), 'a');
  let child;
  try {
    child = spawn('containerd', ['--config', config], { detached: true, stdio: ['ignore', log, log] });
  } finally {
    closeSync(log);
  }
  const failed = new Promise<never>((_, reject) => {
    child.once('error', (e) => reject(new Error(`cannot start containerd: ${e.message}`)));
    child.once('exit', (code) => reject(new Error(`containerd exited with code ${code} at start (see ${join(dir, 'containerd.log')})`)));
  });
  failed.catch(() => {});
  child.unref();
  writeFileSync(join(dir, 'containerd.pid'), String(child.pid));
  own();
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await Promise.race([pingContainerd(socket, 500), failed])) return { socket, stop };
    if (Date.now() > until) {
      await stop();
      throw new Error(`containerd did not answer on ${socket} within ${timeoutMs} ms`);
    }
    await Promise.race([sleep(100), failed]);
  }
}
