// Running iproute2 and other commands (shared by `canopy up` and the test lab). `ip -batch` is used
// wherever many operations run at once: one `ip` exec costs ~2 ms, one batched operation ~17 µs.
import { execFile, execFileSync, spawnSync } from 'node:child_process';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  input?: string;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Runs argv to completion; never rejects for a non-zero exit (the caller reads `code`). */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(argv[0]!, argv.slice(1), {
      timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024, env: opts.env, cwd: opts.cwd,
      killSignal: 'SIGKILL',
    }, (err, stdout, stderr) => {
      if (err && typeof (err as NodeJS.ErrnoException).code === 'string') {
        // Spawn itself failed (ENOENT, …): that is a bug in the caller, not an exit status.
        reject(new Error(`cannot run ${argv[0]}: ${err.message}`));
        return;
      }
      resolve({ code: child.exitCode, signal: child.signalCode, stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Runs argv and throws with its stderr unless it exits 0. */
export async function runOk(argv: readonly string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(argv, opts);
  if (r.code !== 0) {
    throw new Error(`${argv.join(' ')} failed (${r.code ?? r.signal}): ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return r.stdout;
}

/** `ip [-n netns] -batch -` over `lines`; throws naming the failed line. */
export async function ipBatch(lines: readonly string[], netns?: string): Promise<void> {
  if (lines.length === 0) return;
  const argv = netns ? ['ip', '-n', netns, '-batch', '-'] : ['ip', '-batch', '-'];
  const r = await run(argv, { input: lines.join('\n') + '\n' });
  if (r.code !== 0) {
    throw new Error(`ip batch${netns ? ` in ${netns}` : ''} failed: ${r.stderr.trim()}\n  lines:\n  ${lines.join('\n  ')}`);
  }
}

/** Synchronous `ip -batch -` that ignores errors (teardown: delete what exists, skip what is gone). */
export function ipBatchForce(lines: readonly string[]): void {
  if (lines.length === 0) return;
  spawnSync('ip', ['-force', '-batch', '-'], { input: lines.join('\n') + '\n', stdio: ['pipe', 'ignore', 'ignore'] });
}

/** Names from `ip netns list` ("name (id: 3)" lines). */
export function listNetnsSync(): string[] {
  const out = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return out.split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.length > 0);
}

/** Pids of processes running in `netns` (`ip netns pids`). */
export function netnsPidsSync(netns: string): number[] {
  const r = spawnSync('ip', ['netns', 'pids', netns], { encoding: 'utf8' });
  if (r.status !== 0) return [];
  return r.stdout.split('\n').map((s) => Number(s.trim())).filter((n) => Number.isInteger(n) && n > 0);
}
