// What the cluster knows about its workers: last heartbeat, liveness, subnet. Liveness is decided
// here: silent for `timeoutMs` → dead. While the cluster itself has lost its broker connection nobody
// is declared dead (the silence is ours, not theirs), and on reconnect everyone gets a fresh grace.
import type { Heartbeat } from '../mqtt/messages.ts';
import { parseGeoPoint, type WorkerCandidate } from './scheduler.ts';

export interface WorkerRecord {
  id: string;
  registeredAt: number;
  lastSeen: number;
  alive: boolean;
  /** When it was last declared dead (0 = never). */
  diedAt: number;
  hb: Heartbeat | undefined;
  subnet_v4: string | null;
  subnet_v6: string | null;
}

export interface PendingNeed {
  vcpus: number;
  memory_mb: number;
}

export class WorkerRegistry {
  readonly workers = new Map<string, WorkerRecord>();
  private suspended = false;

  constructor(readonly timeoutMs = 3000) {}

  add(id: string, now = Date.now()): WorkerRecord {
    let w = this.workers.get(id);
    if (!w) {
      w = { id, registeredAt: now, lastSeen: now, alive: false, diedAt: 0, hb: undefined, subnet_v4: null, subnet_v6: null };
      this.workers.set(id, w);
    }
    return w;
  }

  /**
   * A worker known from the saved state after a cluster restart: counted alive, with `graceMs` to
   * show up before it is declared dead, so its instances are re-placed if it never comes back.
   */
  restore(id: string, graceMs: number, now = Date.now()): WorkerRecord {
    const w = this.add(id, now);
    w.alive = true;
    w.lastSeen = now + Math.max(0, graceMs - this.timeoutMs);
    return w;
  }

  /** Records a heartbeat; answers whether the worker came back from the dead. */
  heartbeat(id: string, hb: Heartbeat, now = Date.now()): { record: WorkerRecord; revived: boolean; first: boolean } {
    const w = this.add(id, now);
    const first = w.hb === undefined;
    const revived = !w.alive && w.diedAt > 0;
    w.hb = hb;
    w.lastSeen = now;
    w.alive = true;
    return { record: w, revived, first };
  }

  /** The cluster lost (true) or regained (false) its own broker connection. */
  suspend(lost: boolean, now = Date.now()): void {
    if (this.suspended && !lost) for (const w of this.workers.values()) w.lastSeen = Math.max(w.lastSeen, now);
    this.suspended = lost;
  }

  /** Marks silent workers dead and returns them. */
  sweep(now = Date.now()): WorkerRecord[] {
    if (this.suspended) return [];
    const died: WorkerRecord[] = [];
    for (const w of this.workers.values()) {
      if (w.alive && now - w.lastSeen > this.timeoutMs) {
        w.alive = false;
        w.diedAt = now;
        died.push(w);
      }
    }
    return died;
  }

  alive(): WorkerRecord[] {
    return [...this.workers.values()].filter((w) => w.alive);
  }

  /**
   * Scheduler candidates. `pending` holds needs the cluster placed on a worker that its heartbeats
   * do not include yet, so two placements within one heartbeat interval do not overbook it.
   */
  candidates(services: (workerId: string) => ReadonlySet<string>, pending: (workerId: string) => PendingNeed): WorkerCandidate[] {
    const out: WorkerCandidate[] = [];
    for (const w of this.workers.values()) {
      const hb = w.hb;
      if (!hb) continue;
      const p = pending(w.id);
      out.push({
        id: w.id,
        alive: w.alive,
        arch: hb.arch,
        virtualizations: hb.virtualizations,
        total: { vcpus: hb.cpu.cores, memory_mb: hb.memory_mb.total },
        free: { vcpus: Math.max(0, hb.cpu.free - p.vcpus), memory_mb: Math.max(0, hb.memory_mb.free - p.memory_mb) },
        location: parseGeoPoint(hb.location),
        services: services(w.id),
      });
    }
    return out;
  }
}
