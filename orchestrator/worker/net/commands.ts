// iproute2 and nftables as child processes. Several changes go through one `ip -batch` each, so an
// attach costs a few process starts, not one per address and route.
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export class CommandError extends Error {}

async function run(cmd: string, args: string[]): Promise<string> {
  try {
    const r = await execFileP(cmd, args, { timeout: 30_000, maxBuffer: 4 << 20 });
    return r.stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new CommandError(`${cmd} ${args.join(' ')}: ${(err.stderr ?? '').trim() || err.message}`);
  }
}

async function withInput(cmd: string, args: string[], input: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    p.on('error', (e) => reject(new CommandError(`${cmd}: ${e.message}`)));
    p.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new CommandError(`${cmd} ${args.join(' ')} failed (${code}): ${stderr.trim()}\n--- input ---\n${input}`));
    });
    p.stdin.end(input);
  });
}

export function ip(args: string[]): Promise<string> {
  return run('ip', args);
}

/** Runs `ip [-n netns] -batch -`; stops at the first failing line. */
export function ipBatch(lines: string[], netns?: string): Promise<void> {
  if (lines.length === 0) return Promise.resolve();
  return withInput('ip', [...(netns ? ['-n', netns] : []), '-batch', '-'], `${lines.join('\n')}\n`);
}

/** Loads a ruleset with `nft -f -` (one transaction: all or nothing). */
export function nft(text: string): Promise<void> {
  return withInput('nft', ['-f', '-'], text);
}

export async function linkExists(name: string, netns?: string): Promise<boolean> {
  try {
    await run('ip', [...(netns ? ['-n', netns] : []), 'link', 'show', 'dev', name]);
    return true;
  } catch {
    return false;
  }
}

/** The global addresses on `dev` inside `netns` (empty when there is no such device). */
export async function netnsAddresses(netns: string, dev: string): Promise<string[]> {
  const out = await run('ip', ['-n', netns, '-j', 'addr', 'show', 'dev', dev]);
  const parsed = JSON.parse(out || '[]') as Array<{ addr_info?: Array<{ local?: string; scope?: string }> }>;
  return parsed.flatMap((l) => (l.addr_info ?? []).filter((a) => a.scope === 'global' && a.local).map((a) => a.local as string));
}

/** The MAC address of `dev` inside `netns`. */
export async function netnsMac(netns: string, dev: string): Promise<string> {
  const out = await run('ip', ['-n', netns, '-j', 'link', 'show', 'dev', dev]);
  const mac = (JSON.parse(out || '[]') as Array<{ address?: string }>)[0]?.address;
  if (!mac) throw new CommandError(`no MAC address on ${dev} in ${netns}`);
  return mac;
}
