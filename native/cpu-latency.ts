// A CPU wakeup-latency request (the kernel's PM QoS, /dev/cpu_dma_latency): while the file stays open
// with a value written to it, no idle CPU enters a state that takes longer than that many µs to leave.
// 0 keeps idle CPUs polling instead of halting. The kernel drops the request when the file is closed,
// so a process that dies releases it too. Thin: whether to ask, and for what, is the operator's choice
// (`canopy worker --cpu-latency-us`, docs/decisions.md "Idle states: an operator's choice").
import { closeSync, openSync, readSync, writeSync } from 'node:fs';

export const CPU_LATENCY_DEVICE = '/dev/cpu_dma_latency';

/** The largest request the kernel takes (its "no constraint" default is 2 000 s). */
export const MAX_CPU_LATENCY_US = 2_000_000_000;

export interface CpuLatencyRequest {
  readonly us: number;
  /** Withdraws the request; idempotent. */
  close(): void;
}

/** Holds a request of `us` µs until close(). Throws with the reason when the kernel has no such device or refuses. */
export function holdCpuLatency(us: number, device = CPU_LATENCY_DEVICE): CpuLatencyRequest {
  if (!Number.isInteger(us) || us < 0 || us > MAX_CPU_LATENCY_US) throw new Error(`CPU latency request must be an integer number of µs in 0..${MAX_CPU_LATENCY_US}: ${us}`);
  let fd: number;
  try {
    fd = openSync(device, 'w');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'this kernel has no PM QoS device' : code === 'EACCES' || code === 'EPERM' ? 'it needs root' : String((e as Error).message);
    throw new Error(`cannot hold a CPU latency request through ${device}: ${why}`);
  }
  try {
    // The kernel takes a 32-bit integer in the machine's byte order (an Int32Array's), or a hex string.
    writeSync(fd, new Int32Array([us]));
  } catch (e) {
    closeSync(fd);
    throw new Error(`cannot hold a CPU latency request through ${device}: ${(e as Error).message}`);
  }
  let open = true;
  return {
    us,
    close: () => {
      if (!open) return;
      open = false;
      closeSync(fd);
    },
  };
}

/** The request in force now (the smallest one held by anyone), in µs. */
export function currentCpuLatency(device = CPU_LATENCY_DEVICE): number {
  const fd = openSync(device, 'r');
  try {
    const v = new Int32Array(1);
    if (readSync(fd, v, 0, 4, null) !== 4) throw new Error(`${device}: short read`);
    return v[0];
  } finally {
    closeSync(fd);
  }
}
