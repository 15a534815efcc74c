// What this host offers: CPUs, memory, architecture (in OCI names), measured CPU use, and the
// virtualizations it can really run (checked, not assumed).
import { cpus, totalmem, freemem, arch as nodeArch } from 'node:os';
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

const OCI_ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

export function hostArch(): string {
  return OCI_ARCH[nodeArch()] ?? nodeArch();
}

/**
 * `process` needs root (namespaces, cgroups), `ip netns` and a usable cgroup hierarchy. `container`
 * is claimed by the node engine only while its containerd answers (container/runtime.ts).
 */
export function runnableVirtualizations(cgroupsUsable: boolean): string[] {
  const out: string[] = [];
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  let ipOk = false;
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
    ipOk = true;
  } catch {
    ipOk = false;
  }
  if (isRoot && ipOk && cgroupsUsable && existsSync('/bin/sh')) out.push('process');
  return out;
}

/** CPU use of the whole host between two calls, in percent. */
export class CpuMeter {
  private last = this.sample();

  private sample(): { idle: number; total: number } {
    let idle = 0;
    let total = 0;
    for (const c of cpus()) {
      idle += c.times.idle;
      total += c.times.user + c.times.nice + c.times.sys + c.times.irq + c.times.idle;
    }
    return { idle, total };
  }

  usagePct(): number {
    const now = this.sample();
    const dt = now.total - this.last.total;
    const di = now.idle - this.last.idle;
    this.last = now;
    if (dt <= 0) return 0;
    return Math.min(100, Math.max(0, (1 - di / dt) * 100));
  }
}

export interface Capacity {
  vcpus: number;
  memory_mb: number;
}

export function hostCapacity(): Capacity {
  return { vcpus: cpus().length, memory_mb: Math.floor(totalmem() / 1048576) };
}

export function hostFreeMemoryMb(): number {
  return Math.floor(freemem() / 1048576);
}
