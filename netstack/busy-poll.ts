// A datapath carrying request/response traffic back to back polls for the next packet instead of
// sleeping.
//
// Each round trip through the overlay wakes each worker's datapath twice, and on a VM a wakeup of a
// process whose vCPU has halted costs tens of microseconds (docs/decisions.md, "The floor under a
// userspace overlay"). When packets come faster than `minRate` pumps a second, the next one is
// usually a few tens of microseconds away, so after a pump that moved packets the datapath pumps both
// sides again and again until `windowUs` pass without a packet. While a poll finds nothing it yields
// the CPU (sched_yield): the process it waits for (the instance that answers, the peer's datapath on
// a shared host) may be queued on this very CPU, and a poll that held it would delay the answer it
// polls for (TCP request/response on the lab VM, against no polling: up to 1.2× the rate when
// polling without the yield, 2.7–2.9× with it). A poll that finds packets does not yield, so a bulk
// transfer keeps its batches. One callback never polls longer than `maxUs`, so the event loop
// (timers, the control plane) still runs.
//
// Below `minRate` nothing changes: a lone packet or a 1 000/s ping pays its wakeups as before, and
// polling there measured worse (it keeps vCPUs from the instances). Above it, the datapath's process
// uses up to a CPU while traffic lasts (two datapaths at 19 000–22 000 round trips/s: 59–66 % of a
// CPU each, against 31–32 % at the 7 300–8 200/s they carried without polling).

/** How long a datapath polls after its last packet (TunDatapathConfig.busyPollUs, `canopy worker --busy-poll-us`). */
export const DEFAULT_BUSY_POLL_US = 100;
/** Pumps a second (over the last 10 ms) from which the datapath polls. */
export const BUSY_POLL_MIN_RATE = 5000;
/** The longest one readiness callback polls before it returns to the event loop. */
export const BUSY_POLL_MAX_US = 1000;

const RATE_WINDOW_MS = 10;

export interface BusyPollOptions {
  /** Poll until this long passes without a packet (µs); 0 turns polling off. */
  windowUs: number;
  /** Poll only while pumps that moved packets come at least this often per second. */
  minRate: number;
  /** Return to the event loop after this long in one callback (µs). */
  maxUs: number;
  /** Pumps both sides once; returns what it moved (0: nothing was waiting). */
  poll: () => number;
  /** Gives the CPU to another runnable thread (sched_yield). */
  yieldCpu: () => void;
  /** Milliseconds, monotonic (default performance.now). */
  now?: () => number;
}

export class BusyPoll {
  private readonly now: () => number;
  private readonly windowMs: number;
  private readonly maxMs: number;
  private readonly minPerWindow: number;
  private winStart = -Infinity;
  private winCount = 0;
  private engaged = false;
  /** Packets (or receives) found by polling: each is a wakeup that did not happen. */
  caught = 0;
  /** Time spent polling (µs). */
  polledUs = 0;

  constructor(private readonly o: BusyPollOptions) {
    this.now = o.now ?? (() => performance.now());
    this.windowMs = o.windowUs / 1000;
    this.maxMs = o.maxUs / 1000;
    this.minPerWindow = (o.minRate * RATE_WINDOW_MS) / 1000;
  }

  /** Whether the last full rate window was busy enough to poll. */
  get active(): boolean {
    return this.engaged;
  }

  /** Called after each pump with what it moved; polls while the traffic is dense. */
  afterPump(moved: number): void {
    if (moved === 0 || this.windowMs <= 0) return;
    const t0 = this.now();
    this.count(t0);
    if (!this.engaged) return;
    let deadline = t0 + this.windowMs;
    const stop = t0 + this.maxMs;
    let t = t0;
    for (;;) {
      const m = this.o.poll();
      t = this.now();
      if (m > 0) {
        this.caught += m;
        this.count(t);
        deadline = t + this.windowMs;
      }
      if (t >= deadline || t >= stop) break;
      if (m === 0) this.o.yieldCpu();
    }
    this.polledUs += (t - t0) * 1000;
  }

  /** Counts a pump that moved packets into the rate window; a window decides the next one's polling. */
  private count(t: number): void {
    if (t - this.winStart >= RATE_WINDOW_MS) {
      // A window that ended long ago says nothing about now: traffic paused in between.
      this.engaged = t - this.winStart < 2 * RATE_WINDOW_MS && this.winCount >= this.minPerWindow;
      this.winStart = t;
      this.winCount = 0;
    }
    this.winCount++;
  }
}
