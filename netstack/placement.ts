// Where a datapath's work runs when it is given a CPU: the loop on that CPU, and the receive
// processing of what it writes into the TUN on the others.
//
// A write into the TUN runs the receive of the packet (routing, the bridge, the instance's TCP,
// waking the application) inside the write, on the loop's CPU; kernel VXLAN defers that to a softirq
// of its own. Steering the TUN's receive queues (RPS) to the other CPUs gives the loop that back.
// Pinning keeps the loop's buffers in one CPU's cache and tells RPS which CPU to spare. Measured in
// perf/RESULTS.md (round 6): CPU per GB of the datapaths −24 %, throughput +7 %.
import { allowedCpus, pinCallingThread, steerReceive } from '../native/cpu.ts';

export interface Placement {
  /** The CPU the loop's thread is bound to. */
  cpu: number;
  /** CPUs the TUN's receive processing goes to (empty when none is left, or steering failed). */
  steered: number[];
  /** Why steering did not happen, when it did not (the loop is pinned all the same). */
  steerError?: string;
}

/** Binds the calling thread (the loop's) to `cpu` and steers the receive of `tun` to the other allowed CPUs. */
export function placeDatapath(tun: string, cpu: number): Placement {
  const allowed = allowedCpus();
  if (!allowed.includes(cpu)) throw new Error(`datapath CPU ${cpu} is not one this process may run on (${allowed.join(',')})`);
  pinCallingThread(cpu);
  const others = allowed.filter((c) => c !== cpu);
  if (others.length === 0) return { cpu, steered: [] };
  try {
    steerReceive(tun, others);
    return { cpu, steered: others };
  } catch (e) {
    return { cpu, steered: [], steerError: (e as Error).message };
  }
}
