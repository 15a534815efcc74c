// The `process` runtime: a descriptor's command in its own network namespace (plus mount, PID and UTS
// namespaces where the host allows), inside the sandbox's cgroup that enforces `memory` and `vcpus`.
//
// A small shell wrapper writes its own pid into the cgroup before anything else runs, then enters the
// namespaces and runs the command; when the command ends it records the exit status in a file. The
// wrapper runs in its own session with its output going straight to files, so instances outlive a
// daemon restart and the next daemon can re-adopt them (watching the cgroup, reading the exit file).
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { openSync, closeSync, rmSync, accessSync, statSync, constants } from 'node:fs';
import { join } from 'node:path';
import { exitReason, type ExitInfo, type RunHandle } from './runtime/exit.ts';
import { Sandbox, type SandboxOptions } from './runtime/sandbox.ts';
import { Runtimes, type InstanceRuntime, type RunSpec } from './runtime/types.ts';

export { instanceKey } from './runtime/exit.ts';
export type { ExitInfo, RunHandle } from './runtime/exit.ts';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const WRAPPER = [
  'for f in $CANOPY_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done',
  'unset CANOPY_CGROUP_PROCS',
  'exitfile=$CANOPY_EXIT_FILE; unset CANOPY_EXIT_FILE',
  'if [ -n "$CANOPY_UNSHARE" ]; then unset CANOPY_UNSHARE;',
  '  ip netns exec "$CANOPY_NETNS" unshare --mount --pid --uts --fork --kill-child --mount-proc -- "$@";',
  'else ip netns exec "$CANOPY_NETNS" "$@"; fi',
  'rc=$?',
  'echo $rc > "$exitfile"',
  'exit $rc',
].join('\n');

/**
 * Where the shell would find `name` on `path`, or undefined. Checked before the wrapper runs so a
 * missing program fails the start itself: found only after RUNNING (exit 127), a `deploy --wait`
 * could see RUNNING and call the deployment up before the failure arrived.
 */
export function findCommand(name: string, path: string): string | undefined {
  const runnable = (file: string): boolean => {
    try {
      accessSync(file, constants.X_OK);
      return statSync(file).isFile();
    } catch {
      return false;
    }
  };
  if (name.includes('/')) return runnable(name) ? name : undefined;
  for (const dir of path.split(':')) {
    const file = join(dir === '' ? '.' : dir, name);
    if (runnable(file)) return file;
  }
  return undefined;
}

let unshareWorks: boolean | undefined;

async function probeUnshare(): Promise<boolean> {
  if (unshareWorks === undefined) {
    try {
      await run('unshare', ['--mount', '--pid', '--uts', '--fork', '--kill-child', '--mount-proc', '--', 'true'], { timeout: 5000 });
      unshareWorks = true;
    } catch {
      unshareWorks = false;
    }
  }
  return unshareWorks;
}

export class ProcessRuntime implements InstanceRuntime {
  readonly kind = 'process';

  constructor(readonly sandbox: Sandbox) {}

  async prepare(key: string, spec: RunSpec): Promise<{ netns: string }> {
    const { netns } = await this.sandbox.prepare(key, spec);
    return { netns };
  }

  /** Starts the command; the namespace and cgroup must exist (prepare). */
  async start(key: string, spec: RunSpec): Promise<RunHandle> {
    const cgroup = this.sandbox.cgroup(key);
    if (!cgroup) throw new Error(`cgroup for ${key} is missing`);
    const cmd = [...spec.cmd, ...spec.args];
    if (cmd.length === 0) throw new Error('empty command');
    const dir = this.sandbox.dir(key);
    const exitFile = this.sandbox.exitFile(key);
    rmSync(exitFile, { force: true });
    const oomBefore = cgroup.oomKills();
    // Instances see the worker daemon's PATH, so the commands an operator installed are found.
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: process.env.HOME ?? '/root',
    };
    for (const kv of spec.environment) {
      const i = kv.indexOf('=');
      if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
    }
    env.CANOPY_CGROUP_PROCS = cgroup.procsFiles.join(' ');
    env.CANOPY_EXIT_FILE = exitFile;
    env.CANOPY_NETNS = this.sandbox.netnsName(key);
    if (findCommand(cmd[0]!, env.PATH!) === undefined) {
      // Not permanent: the operator may install it, and the next restart then finds it.
      throw new Error(`command not found: ${cmd[0]} (searched ${cmd[0]!.includes('/') ? 'that path' : `PATH ${env.PATH}`})`);
    }
    if (await probeUnshare()) env.CANOPY_UNSHARE = '1';
    const out = openSync(join(dir, 'stdout.log'), 'a');
    const err = openSync(join(dir, 'stderr.log'), 'a');
    let child;
    try {
      child = spawn('/bin/sh', ['-c', WRAPPER, 'canopy-wrap', ...cmd], {
        env, stdio: ['ignore', out, err], detached: true,
      });
    } finally {
      closeSync(out);
      closeSync(err);
    }
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('spawn', () => resolve(child.pid!));
      child.once('error', reject);
    });
    let gone = false;
    const exited = new Promise<ExitInfo>((resolve) => {
      child.once('exit', (code, signal) => {
        gone = true;
        const oom = cgroup.oomKills() > oomBefore;
        resolve({ code, signal, oomKilled: oom, reason: exitReason(code, signal, oom, spec.memory) });
      });
    });
    // RUNNING means "in its cgroup": wait for the wrapper to have joined it.
    for (let i = 0; i < 400 && !gone && !cgroup.pids().includes(pid); i++) await sleep(5);
    return { pid, exited };
  }

  /**
   * Re-adopts an instance whose processes survived a daemon restart: its end is noticed by polling
   * the cgroup, and its status read from the exit file. Undefined if nothing of it is running.
   */
  async adopt(key: string, spec: RunSpec, pollMs = 250): Promise<RunHandle | undefined> {
    const cgroup = this.sandbox.cgroup(key);
    const pids = cgroup?.pids() ?? [];
    if (!cgroup || pids.length === 0) return undefined;
    const oomBefore = cgroup.oomKills();
    const exited = (async (): Promise<ExitInfo> => {
      while (cgroup.exists() && cgroup.pids().length > 0) await sleep(pollMs);
      const text = this.sandbox.recordedExit(key) ?? '';
      const code = text === '' ? null : Number(text);
      const oom = cgroup.exists() && cgroup.oomKills() > oomBefore;
      const reason = code === null && !oom ? 'ended while the worker was restarting (no exit status)' : exitReason(code, null, oom, spec.memory);
      return { code, signal: null, oomKilled: oom, reason };
    })();
    return { pid: Math.min(...pids), exited };
  }

  async kill(key: string, graceMs = 0): Promise<void> {
    await this.sandbox.kill(key, graceMs);
  }

  /** A process holds nothing beyond its sandbox. */
  async teardown(_key: string): Promise<void> {}

  async leftovers(): Promise<string[]> {
    return [];
  }

  async close(): Promise<void> {}
}

/** A worker's runtimes with only `process` (tests, hosts without containers). */
export function processRuntimes(o: SandboxOptions): Runtimes {
  const sandbox = new Sandbox(o);
  return new Runtimes(sandbox, [new ProcessRuntime(sandbox)]);
}
