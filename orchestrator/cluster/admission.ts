// Worker admission: a worker joins (MQTT credentials, a subnet from root, the cluster's tunnel key
// and root's overlay key), leaves for good, or is revoked (its name barred, its session closed, its
// instances re-placed, the cluster's tunnel key rotated). A manager of its own (#22) so cluster.ts
// keeps only the shared tables and the message routing.
import { validWorkerId, type CredentialStore } from '../mqtt/credentials.ts';
import type { EmbeddedBroker } from '../mqtt/broker.ts';
import { topics } from '../mqtt/topics.ts';
import type { WorkerRegistrationAnswer } from '../protocol/worker-registration.ts';
import { loadOrCreateTunnelKey, nextTunnelKey, saveTunnelKey, type TunnelKey } from '../protocol/tunnel-identity.ts';
import type { ClusterContext } from './context.ts';
import type { WorkerRecord } from './worker-registry.ts';
import type { RootClient } from './root-client.ts';
import type { PeerDistribution } from './peer-distribution.ts';
import type { RouteService } from './route-service.ts';
import type { RootReporter } from './root-reporter.ts';
import type { Placer } from './placer.ts';
import { RevokedWorkers } from './revoked.ts';

export const HEARTBEAT_MS = 1000;

export class ClusterError extends Error {
  constructor(message: string, readonly statusCode: number) {
    super(message);
  }
}

export interface AdmissionDeps {
  stateDir: string;
  encryptPayload: boolean;
  creds: CredentialStore;
  root: RootClient | undefined;
  peers: PeerDistribution;
  routes: RouteService;
  reporter: RootReporter;
  placer: Placer;
  /** The broker as started (after the constructor): its worker-facing URL, and the embedded one if any. */
  broker(): { workerUrl: string; embedded: EmbeddedBroker | undefined };
}

export class WorkerAdmission {
  private readonly revoked: RevokedWorkers;
  /** Replaced (and stored) when a worker is revoked: that worker holds the old one. */
  tunnelKey: TunnelKey;

  constructor(private readonly ctx: ClusterContext, private readonly d: AdmissionDeps) {
    this.revoked = new RevokedWorkers(d.stateDir);
    this.tunnelKey = loadOrCreateTunnelKey(d.stateDir, d.encryptPayload);
  }

  /** POST /api/workers/register: the join key is checked by the API layer. */
  async register(name: string): Promise<WorkerRegistrationAnswer> {
    const id = name.toLowerCase();
    if (!validWorkerId(id)) throw new ClusterError(`worker name must match [a-z0-9][a-z0-9-]{0,62}: ${JSON.stringify(name)}`, 400);
    if (this.revoked.has(id)) throw new ClusterError(`worker ${id} was revoked`, 403);
    const creds = this.d.creds.issue(id);
    const broker = this.d.broker();
    // An external broker learns passwords from its files: wait until they are written and the broker
    // told to reload (one write for all registrations arriving within 50 ms).
    if (!broker.embedded) await this.d.creds.flushed();
    const w = this.ctx.registry.add(id);
    this.ctx.saveSoon();
    await this.ensureSubnet(w).catch((e: Error) => this.ctx.log.warn('no subnet for worker yet', { worker: id, error: e.message }));
    this.ctx.log.info('worker registered', { worker: id, subnet: w.subnet_v4 });
    return {
      worker_id: id,
      mqtt: { url: broker.workerUrl, username: creds.username, password: creds.password },
      subnet_v4: w.subnet_v4,
      subnet_v6: w.subnet_v6,
      heartbeat_ms: HEARTBEAT_MS,
      tunnel: this.tunnelKey,
      ...(this.d.peers.overlayTunnel ? { overlay_tunnel: this.d.peers.overlayTunnel } : {}),
    };
  }

  /**
   * A worker leaves for good (DELETE /api/workers/:id): its credentials stop working, its instances
   * are re-placed as after a failure, and its subnet goes back to root.
   */
  async remove(id: string): Promise<boolean> {
    const { registry, index, log } = this.ctx;
    const w = registry.workers.get(id);
    if (!w) return false;
    this.d.creds.revoke(id);
    if (w.alive) {
      w.alive = false;
      w.diedAt = Date.now();
      this.d.placer.onWorkerDead(w, 'worker left the cluster');
    }
    registry.workers.delete(id);
    index.forgetWorker(id);
    this.d.routes.forgetWorker(id);
    this.d.placer.probes.forgetWorker(id);
    this.ctx.saveSoon();
    this.d.peers.publishPeers();
    this.d.reporter.soon();
    const root = this.d.root;
    if (w.subnet_v4 && root?.registration) {
      await root.releaseSubnets(id).catch((e: Error) => log.warn('could not release the subnet at root', { worker: id, error: e.message }));
    }
    log.info('worker removed', { worker: id });
    return true;
  }

  /**
   * Cuts a worker off now (root's POST /api/workers/:id/revoke): its name may not register again, its
   * MQTT credentials stop working and its open session is closed (embedded broker; an external one
   * refuses the reconnect once it reloaded the password file), its instances are re-placed as for a
   * dead worker, and the other workers drop it from their tunnel peers, so they drop its datagrams.
   */
  async revoke(id: string, overlay?: TunnelKey): Promise<boolean> {
    if (!this.ctx.registry.workers.has(id) && !this.d.creds.has(id)) return false;
    this.revoked.add(id);
    this.d.creds.revoke(id);
    const sessions = this.d.broker().embedded?.disconnect(id) ?? 0;
    await this.remove(id);
    this.rotateTunnelKey(id);
    if (overlay) this.d.peers.takeOverlayNews({ overlay, problems: [] });
    this.ctx.log.warn('worker revoked', { worker: id, sessions_closed: sessions });
    return true;
  }

  /** Asks root for a subnet for every registered worker that has none yet (root was away). */
  async ensureSubnets(): Promise<void> {
    for (const w of this.ctx.registry.workers.values()) {
      if (!w.subnet_v4) await this.ensureSubnet(w).catch(() => {});
    }
  }

  /** Retains the cluster's tunnel key for every worker (the embedded broker forgets on a restart). */
  publishTunnelKey(): void {
    for (const w of this.ctx.registry.workers.keys()) this.ctx.publish(topics.tunnelKey(w), JSON.stringify(this.tunnelKey), true);
  }

  /**
   * A new cluster tunnel key after `revoked` was cut off (it holds the old one, and could seal
   * datagrams under another worker's sender id with it). Stored first, so a restarted cluster keeps
   * it, then retained on every remaining worker's tunnel-key topic: they retire the old key at once.
   */
  private rotateTunnelKey(revoked: string): void {
    const k = nextTunnelKey(this.tunnelKey);
    saveTunnelKey(this.d.stateDir, k);
    this.tunnelKey = k;
    this.ctx.counters.tunnel_key_rotations++;
    this.publishTunnelKey();
    this.ctx.log.warn('cluster tunnel key rotated', { key_id: k.key_id, reason: `worker ${revoked} revoked`, workers: this.ctx.registry.workers.size });
  }

  private async ensureSubnet(w: WorkerRecord): Promise<void> {
    const root = this.d.root;
    if (w.subnet_v4 || !root?.registration) return;
    const s = await root.subnets(w.id);
    w.subnet_v4 = s.subnet_v4;
    w.subnet_v6 = s.subnet_v6;
    this.ctx.saveSoon();
    this.ctx.publish(topics.subnet(w.id), JSON.stringify({ subnet_v4: s.subnet_v4, subnet_v6: s.subnet_v6 }), true);
    this.d.peers.publishPeers();
  }
}
