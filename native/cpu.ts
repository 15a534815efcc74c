// Where kernel work runs: a thread's CPU affinity (sched_setaffinity) and a device's receive packet
// steering (the rps_cpus mask of each of its receive queues in sysfs). Thin: which CPUs is the
// caller's choice (netstack/placement.ts).
import { readdirSync, writeFileSync } from 'node:fs';
import { schedGetaffinity, schedSetaffinity, SysError } from './libc.ts';

/** Room for 1024 CPUs, glibc's cpu_set_t. */
const SET_BYTES = 128;

/** The CPUs the calling thread may run on, ascending. */
export function allowedCpus(): number[] {
  const m = new Uint8Array(SET_BYTES);
  if (schedGetaffinity(0, SET_BYTES, m) !== 0) throw new SysError('sched_getaffinity');
  const out: number[] = [];
  for (let i = 0; i < SET_BYTES * 8; i++) if (m[i >> 3] & (1 << (i & 7))) out.push(i);
  return out;
}

/** Binds the calling thread (only it: not the process's other threads) to one CPU. */
export function pinCallingThread(cpu: number): void {
  if (!Number.isInteger(cpu) || cpu < 0 || cpu >= SET_BYTES * 8) throw new Error(`not a CPU number: ${cpu}`);
  const m = new Uint8Array(SET_BYTES);
  m[cpu >> 3] |= 1 << (cpu & 7);
  if (schedSetaffinity(0, SET_BYTES, m) !== 0) throw new SysError(`sched_setaffinity(CPU ${cpu})`);
}

/**
 * A CPU set in the kernel's bitmap text form (what rps_cpus reads and prints): hex words of 32 CPUs,
 * most significant first, comma separated; [1, 2] → "6", [0, 33] → "2,00000001", [] → "0".
 */
export function cpuMaskText(cpus: number[]): string {
  const words: number[] = [0];
  for (const c of cpus) {
    if (!Number.isInteger(c) || c < 0) throw new Error(`not a CPU number: ${c}`);
    const w = c >> 5;
    while (words.length <= w) words.push(0);
    words[w] = (words[w] | (1 << (c & 31))) >>> 0;
  }
  return words.reverse().map((w, i) => (i === 0 ? w.toString(16) : w.toString(16).padStart(8, '0'))).join(',');
}

/**
 * Sends the receive processing of packets entering `dev` (what the stack does with them after the
 * driver: routing, bridging, the destination's TCP) to `cpus`, on every receive queue. Empty turns
 * steering off. Returns how many queues were set. The device must be in the caller's network namespace.
 */
export function steerReceive(dev: string, cpus: number[]): number {
  const dir = `/sys/class/net/${dev}/queues`;
  const queues = readdirSync(dir).filter((q) => q.startsWith('rx-'));
  const mask = cpuMaskText(cpus);
  for (const q of queues) writeFileSync(`${dir}/${q}/rps_cpus`, mask);
  return queues.length;
}
