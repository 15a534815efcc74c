// Whether an instance is overloaded (SPEC §5.3: an overloaded instance stops being picked by
// `closest`), judged from its cgroup's CPU throttling: an instance that keeps hitting its `vcpus`
// quota answers late, so new flows are better sent elsewhere. The kernel counts, per CFS period
// (100 ms), whether the group was throttled; each heartbeat takes the change since the last one.
// Hysteresis, so that one burst does not flip the route back and forth: overloaded once most of the
// last few samples were hot, clear again only after several quiet samples in a row.
import type { CpuThrottle } from './cgroup.ts';

const CFS_PERIOD_MS = 100;

export interface OverloadOptions {
  /** Samples looked back at (one per heartbeat). */
  window: number;
  /** Hot samples within the window that make the instance overloaded. */
  hotNeeded: number;
  /** Quiet samples in a row that clear it. */
  quietToClear: number;
  /** A sample is hot when at least this share of the sample's wall-clock CFS periods was throttled. */
  hotShare: number;
}

export const OVERLOAD_DEFAULTS: OverloadOptions = { window: 5, hotNeeded: 3, quietToClear: 3, hotShare: 0.5 };

export interface OverloadState {
  overloaded: boolean;
  /** Why, for status: set while overloaded. */
  reason?: string;
}

export class OverloadDetector {
  private last: (CpuThrottle & { at: number }) | undefined;
  private readonly recent: boolean[] = [];
  private quiet = 0;
  overloaded = false;

  constructor(private readonly o: OverloadOptions = OVERLOAD_DEFAULTS) {}

  /** One reading of the counters at time `at` (ms). */
  sample(t: CpuThrottle, at: number): OverloadState {
    const prev = this.last;
    this.last = { ...t, at };
    // The first reading, or counters that went backwards (a new cgroup after a restart): a baseline only.
    if (!prev || t.periods < prev.periods || t.throttled < prev.throttled || at <= prev.at) return this.state();
    // Share of wall-clock periods, not of the periods the group was runnable in: an idle server
    // throttled in its one busy period is not overloaded.
    const wallPeriods = Math.max(t.periods - prev.periods, (at - prev.at) / CFS_PERIOD_MS, 1);
    const hot = (t.throttled - prev.throttled) / wallPeriods >= this.o.hotShare;
    this.recent.push(hot);
    if (this.recent.length > this.o.window) this.recent.shift();
    this.quiet = hot ? 0 : this.quiet + 1;
    if (!this.overloaded && this.hotCount() >= this.o.hotNeeded) this.overloaded = true;
    else if (this.overloaded && this.quiet >= this.o.quietToClear) this.overloaded = false;
    return this.state();
  }

  private hotCount(): number {
    return this.recent.filter(Boolean).length;
  }

  state(): OverloadState {
    if (!this.overloaded) return { overloaded: false };
    return {
      overloaded: true,
      reason: `CPU throttled at its vcpus quota in ${this.hotCount()} of the last ${this.recent.length} samples`,
    };
  }
}

/** One detector per running instance, keyed by instance key; instances that went away are forgotten. */
export class InstanceLoad {
  private readonly detectors = new Map<string, OverloadDetector>();

  constructor(private readonly o: OverloadOptions = OVERLOAD_DEFAULTS) {}

  /** Reads every running instance's counters (undefined: no cgroup to read, e.g. already gone). */
  sample(running: ReadonlyMap<string, CpuThrottle | undefined>, at: number): void {
    for (const key of this.detectors.keys()) if (!running.has(key)) this.detectors.delete(key);
    for (const [key, t] of running) {
      if (!t) {
        this.detectors.delete(key);
        continue;
      }
      let d = this.detectors.get(key);
      if (!d) this.detectors.set(key, (d = new OverloadDetector(this.o)));
      d.sample(t, at);
    }
  }

  of(key: string): OverloadState {
    return this.detectors.get(key)?.state() ?? { overloaded: false };
  }
}
