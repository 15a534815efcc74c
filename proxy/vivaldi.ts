// Vivaldi network coordinates (Dabek et al., SIGCOMM 2004): 2-D Euclidean plus a height for the access
// link, in milliseconds. Each RTT sample to a node whose coordinate is known pulls or pushes this
// node's coordinate, weighted by the two nodes' confidence.
import type { Coordinate } from './route-messages.ts';

const CE = 0.25; // error adaptation
const CC = 0.25; // coordinate adaptation
const MIN_HEIGHT = 0.1;
/** The error a coordinate starts with and never exceeds: a coordinate still at it has learned nothing. */
export const MAX_ERROR = 1.5;

/** The RTT in ms that two coordinates predict (plane distance plus both access-link heights). */
export function estimatedRttMs(a: Pick<Coordinate, 'vec' | 'height'>, b: Pick<Coordinate, 'vec' | 'height'>): number {
  return Math.hypot(a.vec[0] - b.vec[0], a.vec[1] - b.vec[1]) + a.height + b.height;
}

export class VivaldiNode {
  vec: [number, number] = [0, 0];
  height = MIN_HEIGHT;
  error = MAX_ERROR;

  coordinate(): Coordinate {
    return { vec: [this.vec[0], this.vec[1]], height: this.height, error: this.error };
  }

  distance(c: Coordinate): number {
    return estimatedRttMs(this, c);
  }

  observe(rttMs: number, remote: Coordinate): void {
    if (!(rttMs > 0) || !Number.isFinite(rttMs)) return;
    const dist = this.distance(remote);
    const w = this.error / (this.error + Math.max(remote.error, 1e-6));
    const es = Math.abs(dist - rttMs) / rttMs;
    this.error = Math.min(MAX_ERROR, Math.max(0.01, es * CE * w + this.error * (1 - CE * w)));
    const delta = CC * w;
    const force = delta * (rttMs - dist);
    let ux = this.vec[0] - remote.vec[0], uy = this.vec[1] - remote.vec[1];
    let len = Math.hypot(ux, uy);
    if (len < 1e-9) {
      // Coincident points: push in a random direction so they can separate.
      const a = Math.random() * 2 * Math.PI;
      ux = Math.cos(a); uy = Math.sin(a); len = 1;
    }
    const plane = len + this.height + remote.height;
    this.vec = [this.vec[0] + (force * ux) / len, this.vec[1] + (force * uy) / len];
    this.height = Math.max(MIN_HEIGHT, this.height + (force * (this.height + remote.height)) / plane);
  }
}
