// One asynchronous task run soon after something asks for it (the cluster's report to root, 200 ms
// later; root's peers push to one cluster, at once), with every request in between served by the
// same run, and never two runs at once. A request that arrives while a run is in flight gets a run
// of its own after it: the run in flight took its input (the queued changes, the list as it was)
// before the request's change was made.

export interface TimerApi {
  setTimeout: (f: () => void, ms: number) => NodeJS.Timeout;
  clearTimeout: (t: NodeJS.Timeout) => void;
}

export class CoalescedRun {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private closed = false;

  constructor(
    private readonly task: () => Promise<void>,
    readonly delayMs: number,
    private readonly timers: TimerApi = { setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (t) => clearTimeout(t) },
    /** Called when a run ends with nothing asked for after it (an owner of many runs can drop this one). */
    private readonly onIdle?: () => void,
  ) {}

  /** A run within delayMs (joining one already pending), or right after the one in flight plus delayMs.
   *  With delayMs 0 the run starts now, within this call. */
  request(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.delayMs === 0) {
      void this.run();
      return;
    }
    this.timer ??= this.timers.setTimeout(() => {
      this.timer = undefined;
      void this.run();
    }, this.delayMs);
  }

  /** A run now, serving a pending request too; nothing when a run is in flight (it serves the caller). */
  async now(): Promise<void> {
    if (this.closed || this.running) return;
    if (this.timer) {
      this.timers.clearTimeout(this.timer);
      this.timer = undefined;
    }
    await this.run();
  }

  get busy(): boolean {
    return this.running;
  }

  get pending(): boolean {
    return this.timer !== undefined || this.again;
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      await this.task();
    } catch {
      // The task reports its own failures; a request made meanwhile still gets its run.
    } finally {
      this.running = false;
      if (this.again) {
        this.again = false;
        this.request();
      } else if (this.timer === undefined) {
        this.onIdle?.();
      }
    }
  }

  close(): void {
    this.closed = true;
    this.again = false;
    if (this.timer) this.timers.clearTimeout(this.timer);
    this.timer = undefined;
  }
}
