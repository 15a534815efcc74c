// Proof that a test's traffic stays on the machine: the test process (and every child it starts from
// now on, e.g. `ctr` pulling an image) moves into its own cgroup-v2 group, and an nftables rule drops
// and counts any packet that group sends to an address outside loopback. Dropping means nothing leaves
// even when the code under test is wrong; counting lets the test assert that nothing tried.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

export interface EgressGuard {
  /** Packets the group tried to send off loopback since the guard was set up. */
  attempts(): number;
  /** Moves the process back and removes the rule and the group. */
  close(): void;
}

/** The cgroup-v2 hierarchy as nftables names it (paths relative to /sys/fs/cgroup). */
function v2Root(): { dir: string; rel: string } {
  if (existsSync('/sys/fs/cgroup/cgroup.controllers')) return { dir: '/sys/fs/cgroup', rel: '' };
  if (existsSync('/sys/fs/cgroup/unified/cgroup.procs')) return { dir: '/sys/fs/cgroup/unified', rel: 'unified/' };
  throw new Error('no cgroup v2 hierarchy (neither /sys/fs/cgroup nor /sys/fs/cgroup/unified) to tell this test\'s packets apart');
}

export function guardEgress(): EgressGuard {
  const root = v2Root();
  const name = `canopy-egress-${process.pid}`;
  const dir = join(root.dir, name);
  const table = name.replace(/-/g, '_');
  mkdirSync(dir, { recursive: true });
  const home = readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'))?.slice(3) ?? '/';
  writeFileSync(join(dir, 'cgroup.procs'), String(process.pid));
  const rule = (family: string, local: string): string => `socket cgroupv2 level 1 "${root.rel}${name}" ${family} daddr != ${local} counter drop`;
  execFileSync('nft', ['-f', '-'], {
    input: `table inet ${table} {\n chain out {\n  type filter hook output priority 0; policy accept;\n  ${rule('ip', '127.0.0.0/8')}\n  ${rule('ip6', '::1')}\n }\n}\n`,
  });
  return {
    attempts() {
      const out = execFileSync('nft', ['list', 'table', 'inet', table]).toString();
      return [...out.matchAll(/counter packets (\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
    },
    close() {
      try { execFileSync('nft', ['delete', 'table', 'inet', table], { stdio: 'ignore' }); } catch { /* gone */ }
      try { writeFileSync(join(root.dir, home, 'cgroup.procs'), String(process.pid)); } catch { writeFileSync(join(root.dir, 'cgroup.procs'), String(process.pid)); }
      try { rmdirSync(dir); } catch { /* a child still inside: it goes with its process */ }
    },
  };
}

/** One UDP datagram off loopback (to TEST-NET-1, RFC 5737), which the guard must count and drop. */
export function probeEgress(): void {
  try {
    execFileSync('bash', ['-c', 'echo probe > /dev/udp/192.0.2.254/9'], { stdio: 'ignore', timeout: 3000 });
  } catch { /* EPERM: dropped, as it should be */ }
}
