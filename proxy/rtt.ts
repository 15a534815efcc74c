// Where `closest` gets its distances: direct RTT measurements (the tunnel's probe messages) first,
// then Vivaldi estimates for workers not measured yet.
import { VivaldiNode } from './vivaldi.ts';
import type { Coordinate } from './route-messages.ts';

/** Direct measurements. The data plane's tunnel implements it; unit tests use StaticRtt. */
export interface RttSource {
  /** Smoothed RTT to a worker in milliseconds, or undefined when not measured. */
  rttMs(workerId: string): number | undefined;
  /** Called on every new measurement. Returns an unsubscribe function. */
  onRtt(listener: (workerId: string, rttMs: number) => void): () => void;
}

/** Fixed RTTs, settable: for tests and for a deployment without probes. */
export class StaticRtt implements RttSource {
  private readonly rtts = new Map<string, number>();
  private readonly listeners = new Set<(workerId: string, rttMs: number) => void>();

  constructor(initial: Record<string, number> = {}) {
    for (const [k, v] of Object.entries(initial)) this.rtts.set(k, v);
  }

  set(workerId: string, ms: number): void {
    this.rtts.set(workerId, ms);
    for (const l of this.listeners) l(workerId, ms);
  }

  delete(workerId: string): void { this.rtts.delete(workerId); }

  rttMs(workerId: string): number | undefined { return this.rtts.get(workerId); }

  onRtt(listener: (workerId: string, rttMs: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/** Measurements fed by the tunnel's probes (Datapath.onRtt), smoothed like TCP's SRTT (1/8 gain on
 *  each new sample) so that one delayed probe does not flip `closest`. */
export class MeasuredRtt implements RttSource {
  private readonly rtts = new Map<string, number>();
  private readonly listeners = new Set<(workerId: string, rttMs: number) => void>();

  record(workerId: string, ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) return;
    const prev = this.rtts.get(workerId);
    const v = prev === undefined ? ms : prev + (ms - prev) / 8;
    this.rtts.set(workerId, v);
    for (const l of this.listeners) l(workerId, v);
  }

  forget(workerId: string): void { this.rtts.delete(workerId); }

  rttMs(workerId: string): number | undefined { return this.rtts.get(workerId); }

  onRtt(listener: (workerId: string, rttMs: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/** Combines measurements with this worker's Vivaldi coordinate and the coordinates the cluster relays. */
export class RttEstimator {
  readonly self: VivaldiNode;
  private readonly coords = new Map<string, Coordinate>();
  /** Latest direct measurement per worker, for the coordinate report. */
  readonly measured = new Map<string, number>();
  private readonly unsubscribe: () => void;

  constructor(readonly selfId: string, readonly source: RttSource) {
    this.self = new VivaldiNode();
    this.unsubscribe = source.onRtt((id, ms) => {
      this.measured.set(id, ms);
      const remote = this.coords.get(id);
      if (remote) this.self.observe(ms, remote);
    });
  }

  /** Coordinates of other workers (from the cluster's `coordinates` message). */
  setCoordinate(workerId: string, c: Coordinate): void {
    if (workerId !== this.selfId) this.coords.set(workerId, c);
  }

  /** Best estimate in ms: 0 for itself, a measurement, a Vivaldi estimate, or Infinity when nothing is known. */
  estimate(workerId: string): number {
    if (workerId === this.selfId) return 0;
    const m = this.source.rttMs(workerId);
    if (m !== undefined) return m;
    const c = this.coords.get(workerId);
    return c ? this.self.distance(c) : Infinity;
  }

  close(): void { this.unsubscribe(); }
}
