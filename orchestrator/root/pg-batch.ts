// Calls that arrive together run as one statement (PostgreSQL store, the leader's hot path): each
// call costs a round trip, the server's work on one statement and, for a write, a commit; calls
// made in the same event-loop turn (a burst of placements) share all three. A call still resolves
// to its own answer, and a failed statement fails every call in it (each caller handles its error
// as it would its own statement's).
export class Batch<A, R> {
  private pending: { arg: A; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];

  /** `run` answers the arguments in order; `max` bounds one statement's size. */
  constructor(private readonly run: (args: A[]) => Promise<R[]>, private readonly max = 200) {}

  call(arg: A): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.pending.push({ arg, resolve, reject });
      if (this.pending.length === 1) setImmediate(() => this.flush());
      else if (this.pending.length >= this.max) this.flush();
    });
  }

  private flush(): void {
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    this.run(batch.map((b) => b.arg)).then(
      (answers) => batch.forEach((b, k) => b.resolve(answers[k] as R)),
      (err: unknown) => batch.forEach((b) => b.reject(err)),
    );
  }
}
