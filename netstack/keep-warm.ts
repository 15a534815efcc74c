// A datapath in use stays warm between its packets.
//
// A lone packet after 200 ms of silence costs the overlay's round trip about twice what one after
// 20 ms costs: what it needs (the kernel's and libuv's wake path, V8's entry, the datapath's code and
// buffers, the process's page tables) was evicted from the caches by whatever else the machine ran.
// A tick every 20 ms that pumps both sides once (each read finds nothing) keeps all of that warm
// (docs/decisions.md, "Warm while in use"). A tick costs a wakeup, so it runs only while instances
// send or receive: it starts with their first packet and stops after `idleMs` without one. The
// tunnel's own RTT probes (one a second to each peer) do not count, or no worker would ever sleep.
/** The datapath's tick while traffic flows (TunDatapathConfig.keepWarmMs, `canopy worker --keep-warm-ms`). */
export const DEFAULT_KEEP_WARM_MS = 20;
/** Ticking stops after this long without a packet. */
export const KEEP_WARM_IDLE_MS = 10_000;

export interface KeepWarmOptions {
  /** Time between ticks (ms); 0 turns keeping warm off. */
  periodMs: number;
  /** Stop ticking after this long without a packet (ms). */
  idleMs: number;
  /** A count that grows with the traffic worth keeping warm for (the instances' packets). */
  activity: () => number;
  /** What a tick does (default nothing). */
  tick?: () => void;
}

export class KeepWarm {
  private timer: ReturnType<typeof setInterval> | null = null;
  /** activity() at the last look, and ticks in a row that found it unchanged. */
  private last: number;
  private quietTicks = 0;
  private readonly quietLimit: number;
  private closed = false;
  /** Ticks since creation (for the datapath's stats). */
  ticks = 0;

  constructor(private readonly o: KeepWarmOptions) {
    this.quietLimit = o.periodMs > 0 ? Math.max(1, Math.ceil(o.idleMs / o.periodMs)) : 0;
    this.last = o.activity();
  }

  /** The datapath was woken: keep warm if the instances' traffic moved (called per pump; cheap while ticking). */
  touch(): void {
    if (this.timer !== null || this.quietLimit === 0 || this.closed) return;
    const a = this.o.activity();
    if (a === this.last) return;
    this.last = a;
    this.start();
  }

  /** Whether it is ticking now. */
  get active(): boolean {
    return this.timer !== null;
  }

  private start(): void {
    this.quietTicks = 0;
    this.timer = setInterval(() => {
      this.ticks++;
      const a = this.o.activity();
      if (a === this.last) {
        if (++this.quietTicks >= this.quietLimit) {
          this.stop();
          return;
        }
      } else {
        this.last = a;
        this.quietTicks = 0;
      }
      this.o.tick?.();
    }, this.o.periodMs);
    // Keeping warm never keeps a process alive.
    this.timer.unref();
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  close(): void {
    this.closed = true;
    this.stop();
  }
}
