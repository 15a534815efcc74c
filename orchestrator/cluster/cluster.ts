// The cluster orchestrator: registers with root and reports every 5 s (and within 200 ms of a change
// root must know: an instance's state, a worker coming or going), owns (or uses) the MQTT broker,
// admits workers with per-worker credentials, places instances on workers, declares silent workers
// dead and re-places their instances, answers route queries and pushes route changes.
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { CredentialStore, CLUSTER_USER, validWorkerId, type Credentials } from '../mqtt/credentials.ts';
import { EmbeddedBroker } from '../mqtt/broker.ts';
import { keepMosquittoFiles } from '../mqtt/mosquitto.ts';
import { InProcessBus, ClientBus, type ClusterBus } from '../mqtt/bus.ts';
import { topics, CLUSTER_SUBSCRIPTIONS, parseWorkerTopic } from '../mqtt/topics.ts';
import { decode, encode, type Heartbeat, type JobStatus, type InventoryEntry } from '../mqtt/messages.ts';
import { jsonLogger, type Logger } from '../mqtt/log.ts';
import {
  parseWorkerToCluster, parseServiceRoute, RouteMessageError,
  type ClusterToWorker, type ServiceRoute, type TableQuery, type Coordinate,
} from '../../proxy/route-messages.ts';
import { isTerminal, isOnWorker, type InstanceState, type Transition } from '../worker/instance-states.ts';
import { schedule, type ScheduleResult } from './scheduler.ts';
import { WorkerRegistry, type WorkerRecord, type PendingNeed } from './worker-registry.ts';
import {
  instanceId, needOf, deployOrder, buildRoute, newInstance, storeInstance, loadInstance,
  type ClusterInstance,
} from './placements.ts';
import type { OverlayTunnel, PlacementAnswer, PlacementOffer, RemotePeer } from '../root-cluster-messages.ts';
import { RootClient, RootCallError, parsePeersPush, type InstanceChange, type OverlayNews, type Report } from './root-client.ts';
import { loadState, StateWriter } from './state-file.ts';
import { CoalescedRun } from '../coalesced-run.ts';
import { loadOrCreateTunnelKey, tunnelIdForSubnet, type TunnelKey } from '../worker/net/tunnel-identity.ts';

export type BrokerChoice =
  | { embedded: { host: string; port: number; publicUrl?: string } }
  | { external: { url: string; publicUrl?: string; reload?: () => void } };

export interface ClusterOptions {
  name: string;
  /** "lat,long,radius" or a place name (sent to root). */
  location: string;
  stateDir: string;
  /** Root-facing and worker-facing URL of this cluster's API (the API server itself is api.ts). */
  apiUrl: string;
  root?: { url: string; joinKey: string };
  workerJoinKey: string;
  mqtt: BrokerChoice;
  heartbeatTimeoutMs?: number;
  reportIntervalMs?: number;
  sweepIntervalMs?: number;
  /** After a cluster restart, how long known workers have to reconnect before they count as dead. */
  restartGraceMs?: number;
  log?: Logger;
}

export interface WorkerRegistrationAnswer {
  worker_id: string;
  mqtt: { url: string; username: string; password: string };
  subnet_v4: string | null;
  subnet_v6: string | null;
  heartbeat_ms: number;
  /** The cluster's tunnel key: only workers holding it can send on the overlay (SPEC §5.4). */
  tunnel: TunnelKey;
  /** Root's overlay key, shared by all clusters' workers (absent until root has answered once). */
  overlay_tunnel?: OverlayTunnel;
}

interface ClusterEvents {
  'worker-dead': [string];
  'worker-alive': [string];
  transition: [ClusterInstance, Transition];
}

const HEARTBEAT_MS = 1000;
const MAX_QUEUED_CHANGES = 10_000;
const RESEND_MS = 5000;
/**
 * How long a change waits for others before the report that carries it: root learns of a new
 * RUNNING instance in ~REPORT_SOON_MS instead of up to a report interval, so a caller in another
 * cluster is admitted by the server's worker at once (docs/decisions.md, overlay across clusters).
 */
export const REPORT_SOON_MS = 200;
/** Free memory growth on a worker that counts as new room (less is the host's free memory moving). */
const ROOM_MB = 32;

/**
 * How this cluster's workers name a worker of another cluster. Worker names are unique within a
 * cluster only, and the workers key their tunnel peers, RTTs and "is this instance mine" by name: a
 * remote namesake must neither be taken for a local worker nor replace one. A local name never
 * contains `@` ([a-z0-9-]), so the two cannot collide.
 */
export function remoteWorkerName(workerId: string, clusterId: string): string {
  return `${workerId}@${clusterId}`;
}

export class ClusterError extends Error {
  constructor(message: string, readonly statusCode: number) {
    super(message);
  }
}

export class Cluster extends EventEmitter<ClusterEvents> {
  readonly log: Logger;
  readonly creds: CredentialStore;
  readonly registry: WorkerRegistry;
  readonly instances = new Map<string, ClusterInstance>();
  private readonly byWorker = new Map<string, Set<string>>();
  private readonly inventory = new Map<string, Set<string>>();
  private readonly interest = new Map<string, Set<string>>();
  private readonly rootRoutes = new Map<string, ServiceRoute>();
  private readonly coords = new Map<string, Coordinate>();
  private coordsDirty = false;
  private readonly lastOrder = new Map<string, number>();
  private readonly lastPush = new Map<string, number>();
  private changes: InstanceChange[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly writer: StateWriter;
  readonly root: RootClient | undefined;
  readonly tunnelKey: TunnelKey;
  private overlayTunnel: OverlayTunnel | undefined;
  /** Workers of other clusters that run instances (from root's report answers). */
  private remotePeers: RemotePeer[] = [];
  /** root's peers_version of remotePeers (0: none seen); an older list is dropped. */
  private remotePeersVersion = 0;
  private peersSent = '';
  private peersTimer: NodeJS.Timeout | undefined;
  private broker: EmbeddedBroker | undefined;
  private bus: ClusterBus | undefined;
  private brokerUrl = '';
  private workerBrokerUrl = '';
  private closed = false;
  private reporting = false;
  /** Reports to root: periodic, and soon after a change (never two in flight). */
  private readonly reports: CoalescedRun;
  /** The last report reached root: only then do changes trigger early reports (no hammering a root that is down). */
  private rootAnswered = false;
  readonly counters = {
    heartbeats: 0, dropped: 0, placements: 0, declined: 0, replaced: 0, deaths: 0, queries: 0, reports_ok: 0, reports_failed: 0,
    reports_early: 0, peer_pushes: 0, peer_lists_stale: 0,
  };

  private constructor(readonly o: ClusterOptions) {
    super();
    this.log = o.log ?? jsonLogger({ component: 'cluster', cluster: o.name });
    this.creds = new CredentialStore(join(o.stateDir, 'credentials.json'));
    this.registry = new WorkerRegistry(o.heartbeatTimeoutMs ?? 3000);
    this.root = o.root ? new RootClient(o.root.url, o.root.joinKey) : undefined;
    this.reports = new CoalescedRun(() => this.reportToRoot(), REPORT_SOON_MS);
    this.tunnelKey = loadOrCreateTunnelKey(o.stateDir);
    const state = loadState(join(o.stateDir, 'cluster.json'));
    if (this.root && state.root) this.root.registration = state.root;
    this.overlayTunnel = state.overlay_tunnel ?? undefined;
    for (const [id, w] of Object.entries(state.workers)) {
      const r = this.registry.restore(id, o.restartGraceMs ?? 10_000);
      r.registeredAt = w.registeredAt;
      r.subnet_v4 = w.subnet_v4;
      r.subnet_v6 = w.subnet_v6;
    }
    for (const s of state.instances) {
      const i = loadInstance(s);
      this.index(i);
    }
    this.writer = new StateWriter(join(o.stateDir, 'cluster.json'), () => ({
      root: this.root?.registration ?? null,
      workers: Object.fromEntries([...this.registry.workers.values()].map((w) => [w.id, { registeredAt: w.registeredAt, subnet_v4: w.subnet_v4, subnet_v6: w.subnet_v6 }])),
      instances: [...this.instances.values()].map(storeInstance),
      overlay_tunnel: this.overlayTunnel ?? null,
    }));
  }

  static async start(o: ClusterOptions): Promise<Cluster> {
    const c = new Cluster(o);
    try {
      await c.startBroker();
      await c.connect();
    } catch (e) {
      await c.close();
      throw e;
    }
    // The embedded broker forgets retained messages on a restart.
    if (c.overlayTunnel) for (const w of c.registry.workers.keys()) c.publishOverlayTunnel(w);
    c.timers.push(setInterval(() => c.sweep(), o.sweepIntervalMs ?? 250));
    c.timers.push(setInterval(() => void c.reports.now(), o.reportIntervalMs ?? 5000));
    c.timers.push(setInterval(() => c.relayCoordinates(), 2000));
    if (c.root) void c.reports.now();
    c.log.info('cluster started', { broker: c.brokerUrl, workers: c.registry.workers.size, instances: c.instances.size });
    return c;
  }

  private async startBroker(): Promise<void> {
    const m = this.o.mqtt;
    if ('embedded' in m) {
      this.broker = await EmbeddedBroker.start({ host: m.embedded.host, port: m.embedded.port, credentials: this.creds, log: this.log.child({ component: 'broker' }) });
      this.brokerUrl = this.broker.url;
      this.workerBrokerUrl = m.embedded.publicUrl ?? this.broker.url;
    } else {
      keepMosquittoFiles(this.creds, join(this.o.stateDir, 'mosquitto'), m.external.reload);
      this.brokerUrl = m.external.url;
      this.workerBrokerUrl = m.external.publicUrl ?? m.external.url;
    }
  }

  /** Attaches the cluster to its broker: in-process when embedded, as a client when external. */
  private async connect(): Promise<void> {
    const onError = (e: Error): void => this.log.warn('mqtt error', { error: e.message });
    if (this.broker) {
      this.bus = new InProcessBus(this.broker.instance, onError);
    } else {
      const creds: Credentials = this.creds.issue(CLUSTER_USER);
      this.creds.flush();
      this.bus = await ClientBus.connect(this.brokerUrl, creds, `${CLUSTER_USER}-${this.o.name}`.slice(0, 64), onError);
    }
    this.bus.onLink((up) => {
      if (!up) this.log.warn('cluster lost its broker connection: liveness suspended');
      this.registry.suspend(!up);
    });
    await this.bus.subscribe(CLUSTER_SUBSCRIPTIONS, (topic, payload) => {
      try {
        this.dispatch(topic, payload);
      } catch (e) {
        this.counters.dropped++;
        this.log.error('message handler failed', { topic, error: (e as Error).message });
      }
    });
  }

  get mqttUrl(): string {
    return this.brokerUrl;
  }

  get clusterId(): string | null {
    return this.root?.registration?.cluster_id ?? null;
  }

  /** The token root must present on root-facing routes (undefined until registered). */
  get rootToken(): string | undefined {
    return this.root?.registration?.token;
  }

  // ---- workers ----

  /** POST /api/workers/register: the join key is checked by the API layer. */
  async registerWorker(name: string): Promise<WorkerRegistrationAnswer> {
    const id = name.toLowerCase();
    if (!validWorkerId(id)) throw new ClusterError(`worker name must match [a-z0-9][a-z0-9-]{0,62}: ${JSON.stringify(name)}`, 400);
    const creds = this.creds.issue(id);
    // An external broker learns passwords from its files: wait until they are written and the broker
    // told to reload (one write for all registrations arriving within 50 ms).
    if (!this.broker) await this.creds.flushed();
    const w = this.registry.add(id);
    this.writer.schedule();
    await this.ensureSubnet(w).catch((e: Error) => this.log.warn('no subnet for worker yet', { worker: id, error: e.message }));
    this.log.info('worker registered', { worker: id, subnet: w.subnet_v4 });
    return {
      worker_id: id,
      mqtt: { url: this.workerBrokerUrl, username: creds.username, password: creds.password },
      subnet_v4: w.subnet_v4,
      subnet_v6: w.subnet_v6,
      heartbeat_ms: HEARTBEAT_MS,
      tunnel: this.tunnelKey,
      ...(this.overlayTunnel ? { overlay_tunnel: this.overlayTunnel } : {}),
    };
  }

  /** Retains root's overlay key on the worker's own topic: a running worker switches to it at once. */
  private publishOverlayTunnel(workerId: string): void {
    if (this.overlayTunnel) this.publish(topics.overlayKey(workerId), JSON.stringify(this.overlayTunnel), true);
  }

  /** Takes what root's answer says about the overlay: its key, and the other clusters' workers. */
  private takeOverlayNews(news: OverlayNews): void {
    for (const p of news.problems) this.log.warn('root answer field ignored', { error: p });
    if (news.overlay && JSON.stringify(news.overlay) !== JSON.stringify(this.overlayTunnel)) {
      if (this.overlayTunnel) this.log.warn('root handed out a different overlay key', { was: this.overlayTunnel.key_id, now: news.overlay.key_id });
      this.overlayTunnel = news.overlay;
      this.writer.schedule();
      for (const w of this.registry.workers.keys()) this.publishOverlayTunnel(w);
      this.log.info('overlay key from root', { key_id: news.overlay.key_id });
    }
    if (!news.peers) return;
    if (news.peersVersion !== undefined) {
      // A report answer root computed before its latest push can arrive after it.
      if (news.peersVersion < this.remotePeersVersion) {
        this.counters.peer_lists_stale++;
        return;
      }
      this.remotePeersVersion = news.peersVersion;
    }
    if (JSON.stringify(news.peers) !== JSON.stringify(this.remotePeers)) {
      this.remotePeers = news.peers;
      this.publishPeers();
    }
  }

  /**
   * POST /api/peers: root pushes the other clusters' workers as soon as one of them gains its first
   * running instance, instead of waiting for this cluster's next report. Taken exactly like the
   * `peers` of a report answer; a malformed push is refused whole (RootAnswerError, 400).
   */
  peersFromRoot(body: unknown): { peers: number } {
    const { peers, version } = parsePeersPush(body);
    this.counters.peer_pushes++;
    this.takeOverlayNews({ peers, peersVersion: version, problems: [] });
    return { peers: peers.length };
  }

  /** Root should hear of a change soon (an instance's state, a worker's liveness): report early. */
  private reportSoon(): void {
    if (!this.root || !this.rootAnswered || this.closed) return;
    if (!this.reports.pending) this.counters.reports_early++;
    this.reports.request();
  }

  /**
   * A worker leaves for good (DELETE /api/workers/:id): its credentials stop working, its instances
   * are re-placed as after a failure, and its subnet goes back to root.
   */
  async removeWorker(id: string): Promise<boolean> {
    const w = this.registry.workers.get(id);
    if (!w) return false;
    this.creds.revoke(id);
    if (w.alive) {
      w.alive = false;
      w.diedAt = Date.now();
      this.onWorkerDead(w, 'worker left the cluster');
    }
    this.registry.workers.delete(id);
    this.inventory.delete(id);
    this.byWorker.delete(id);
    this.writer.schedule();
    this.publishPeers();
    this.reportSoon();
    if (w.subnet_v4 && this.root?.registration) {
      await this.root.releaseSubnets(id).catch((e: Error) => this.log.warn('could not release the subnet at root', { worker: id, error: e.message }));
    }
    this.log.info('worker removed', { worker: id });
    return true;
  }

  private async ensureSubnet(w: WorkerRecord): Promise<void> {
    if (w.subnet_v4 || !this.root?.registration) return;
    const s = await this.root.subnets(w.id);
    w.subnet_v4 = s.subnet_v4;
    w.subnet_v6 = s.subnet_v6;
    this.writer.schedule();
    this.publish(topics.subnet(w.id), JSON.stringify({ subnet_v4: s.subnet_v4, subnet_v6: s.subnet_v6 }), true);
    this.publishPeers();
  }

  /** A worker's tunnel sender id, from its subnet (undefined until it has one). */
  tunnelIdOf(workerId: string): number | undefined {
    const s = this.registry.workers.get(workerId)?.subnet_v4;
    return s ? tunnelIdForSubnet(s) : undefined;
  }

  /**
   * The admitted tunnel peers (registered workers with a subnet and an endpoint), retained on every
   * worker's peers topic whenever the set changes: a worker accepts tunnel data only from these.
   * Changes are coalesced (one broadcast per 200 ms however many workers join), and a worker that
   * appears or comes back gets the current set on its own topic only: broadcasting to every worker
   * on every join cost O(workers²) publishes and exhausted the heap at 10 000 workers.
   */
  private publishPeers(newcomer?: string): void {
    if (newcomer) {
      if (this.peersSent) this.publish(topics.coordinatePeers(newcomer), this.peersSent, true);
    }
    this.peersTimer ??= setTimeout(() => {
      this.peersTimer = undefined;
      if (this.closed) return;
      const entries = [];
      for (const w of this.registry.workers.values()) {
        const id = this.tunnelIdOf(w.id);
        const ep = w.hb?.tunnel_endpoint;
        if (id !== undefined && ep) entries.push({ worker_id: w.id, tunnel_id: id, tunnel_endpoint: ep });
      }
      const own = new Set(entries.map((e) => e.tunnel_id));
      for (const r of this.remotePeers) {
        if (own.has(r.tunnel_id)) continue;
        entries.push({ worker_id: remoteWorkerName(r.worker_id, r.cluster_id), tunnel_id: r.tunnel_id, tunnel_endpoint: r.tunnel_endpoint });
      }
      entries.sort((a, b) => a.tunnel_id - b.tunnel_id);
      const msg = JSON.stringify({ type: 'peers', entries } satisfies ClusterToWorker);
      if (msg === this.peersSent) return;
      this.peersSent = msg;
      for (const w of this.registry.workers.keys()) this.publish(topics.coordinatePeers(w), msg, true);
    }, 200);
  }

  private publish(topic: string, payload: string, retain = false): void {
    this.bus?.publish(topic, payload, retain);
  }

  private dispatch(topic: string, payload: Buffer): void {
    const t = parseWorkerTopic(topic);
    if (!t) return;
    if (!this.creds.has(t.worker)) {
      this.counters.dropped++;
      this.log.warn('message from an unknown worker dropped', { topic });
      return;
    }
    switch (t.kind) {
      case 'information': {
        const d = decode('heartbeat', payload);
        if (!d.ok) return this.drop(topic, d.error);
        this.onHeartbeat(t.worker, d.value);
        return;
      }
      case 'job': {
        const d = decode('job', payload);
        if (!d.ok) return this.drop(topic, d.error);
        this.onJob(t.worker, d.value);
        return;
      }
      default: {
        let msg;
        try {
          msg = parseWorkerToCluster(JSON.parse(payload.toString('utf8')));
        } catch (e) {
          return this.drop(topic, e instanceof RouteMessageError || e instanceof SyntaxError ? e.message : String(e));
        }
        switch (msg.type) {
          case 'table_query':
            if (t.kind !== 'net/tablequery/request') return this.drop(topic, 'table_query on the wrong topic');
            void this.onTableQuery(t.worker, msg);
            return;
          case 'interest_add':
          case 'interest_remove': {
            let set = this.interest.get(msg.service_id);
            if (msg.type === 'interest_add') {
              if (!set) this.interest.set(msg.service_id, (set = new Set()));
              set.add(t.worker);
              // A worker re-announces its interests after reconnecting: bring it up to date (one
              // push per service per second, however many workers reconnect at once).
              const now = Date.now();
              if (now - (this.lastPush.get(msg.service_id) ?? 0) >= 1000 && this.routeOf(msg.service_id)) {
                this.lastPush.set(msg.service_id, now);
                this.pushRoute(msg.service_id);
              }
            } else if (set) {
              set.delete(t.worker);
              if (set.size === 0) this.interest.delete(msg.service_id);
            }
            return;
          }
          case 'coordinate_report':
            if (msg.worker_id !== t.worker) return this.drop(topic, 'coordinate_report for another worker');
            this.coords.set(t.worker, msg.coord);
            this.coordsDirty = true;
            return;
        }
      }
    }
  }

  private drop(topic: string, error: string): void {
    this.counters.dropped++;
    this.log.warn('malformed message dropped', { topic, error });
  }

  private onHeartbeat(workerId: string, hb: Heartbeat): void {
    this.counters.heartbeats++;
    const prev = this.registry.workers.get(workerId)?.hb;
    const prevEndpoint = prev?.tunnel_endpoint;
    const { revived, first } = this.registry.heartbeat(workerId, hb);
    if (revived || first) {
      this.log.info(revived ? 'worker is back' : 'worker is up', { worker: workerId, instances: hb.instances.length });
      this.emit('worker-alive', workerId);
      this.reportSoon();
    } else if (prev && (hb.cpu.free > prev.cpu.free + 1e-6 || hb.memory_mb.free >= prev.memory_mb.free + ROOM_MB)) {
      // Room on a worker (an instance stopped): root may have instances waiting for it.
      this.reportSoon();
    }
    this.reconcile(workerId, hb.instances);
    if (prevEndpoint !== hb.tunnel_endpoint) {
      for (const sid of this.servicesOn(workerId)) this.pushRoute(sid);
    }
    if (prevEndpoint !== hb.tunnel_endpoint || revived || first) this.publishPeers(revived || first ? workerId : undefined);
  }

  /**
   * The worker's inventory against the cluster's view. Instances the cluster has given to another
   * worker (or removed) are deleted on this one; instances it should run but does not list are sent
   * again; a state the cluster missed (a lost job message) is taken over.
   */
  private reconcile(workerId: string, entries: readonly InventoryEntry[]): void {
    const now = Date.now();
    const listed = new Set<string>();
    for (const e of entries) {
      const id = instanceId(e.service_id, e.instance_n);
      listed.add(id);
      const ci = this.instances.get(id);
      if (ci && !ci.worker && e.state === 'RUNNING' && (ci.lifecycle.state === 'NO_WORKER_CAPACITY' || ci.lifecycle.state === 'NO_QUALIFIED_WORKER')) {
        // The worker was only cut off (a partition, SPEC §8) and nobody else took its instance: it
        // still runs there, so it is taken back rather than killed and placed again.
        this.transition(ci, 'CLUSTER_SCHEDULED', `worker ${workerId} is back and still runs it`);
        ci.worker = workerId;
        this.index(ci);
        this.transition(ci, 'NODE_SCHEDULED', `taken back on ${workerId} after it was unreachable`);
        this.transition(ci, 'RUNNING', 'state reported in heartbeat');
        this.log.info('reconcile: instance taken back', { worker: workerId, instance: id });
        // Its namespace addresses come with the worker's answer to a repeated order.
        this.publish(topics.deploy(workerId), encode('deploy', deployOrder(ci.offer)));
        continue;
      }
      if (!ci || ci.worker !== workerId || (!isOnWorker(ci.lifecycle.state) && ci.lifecycle.state !== 'COMPLETED')) {
        if (e.state === 'UNDEPLOYED' || !this.due(`del:${workerId}:${id}`, now)) continue;
        const why = !ci ? 'unknown to the cluster' : ci.worker && ci.worker !== workerId ? `re-placed on ${ci.worker}` : `cluster state is ${ci.lifecycle.state}`;
        this.log.info('reconcile: removing a stray instance', { worker: workerId, instance: id, why });
        this.publish(topics.remove(workerId), encode('remove', { service_id: e.service_id, instance_n: e.instance_n, reason: `reconcile: ${why}` }));
        continue;
      }
      if (e.state !== ci.lifecycle.state && (e.state === 'RUNNING' || e.state === 'FAILED' || e.state === 'COMPLETED')) {
        this.transition(ci, e.state, 'state reported in heartbeat');
      }
    }
    this.inventory.set(workerId, listed);
    for (const id of this.byWorker.get(workerId) ?? []) {
      const ci = this.instances.get(id);
      if (!ci || listed.has(id) || !isOnWorker(ci.lifecycle.state)) continue;
      if (!this.due(`dep:${id}`, now)) continue;
      this.log.info('reconcile: sending a deploy again', { worker: workerId, instance: id });
      this.publish(topics.deploy(workerId), encode('deploy', deployOrder(ci.offer)));
    }
  }

  /** Rate limit for repeated orders: true at most once per RESEND_MS per key. */
  private due(key: string, now: number): boolean {
    const last = this.lastOrder.get(key) ?? 0;
    if (now - last < RESEND_MS) return false;
    this.lastOrder.set(key, now);
    if (this.lastOrder.size > 100_000) this.lastOrder.clear();
    return true;
  }

  private onJob(workerId: string, st: JobStatus): void {
    const id = instanceId(st.service_id, st.instance_n);
    const ci = this.instances.get(id);
    if (!ci || ci.worker !== workerId) {
      if (st.state !== 'UNDEPLOYED' && this.due(`del:${workerId}:${id}`, Date.now())) {
        this.publish(topics.remove(workerId), encode('remove', { service_id: st.service_id, instance_n: st.instance_n, reason: 'not placed on this worker' }));
      }
      return;
    }
    const moved = (st.ns_ip !== undefined && st.ns_ip !== ci.ns_ip) || (st.ns_ip_v6 !== undefined && st.ns_ip_v6 !== ci.ns_ip_v6);
    if (st.ns_ip) ci.ns_ip = st.ns_ip;
    if (st.ns_ip_v6) ci.ns_ip_v6 = st.ns_ip_v6;
    if (!this.transition(ci, st.state, st.reason, st.ts)) {
      this.log.debug('job status ignored', { instance: id, from: ci.lifecycle.state, to: st.state });
      if (moved && ci.lifecycle.state === 'RUNNING') this.pushRoute(ci.offer.service.service_id);
    }
  }

  private transition(ci: ClusterInstance, to: InstanceState, reason: string, ts = Date.now()): boolean {
    const from = ci.lifecycle.state;
    if (!ci.lifecycle.tryTo(to, reason, ts)) return false;
    const t = ci.lifecycle.last;
    const change: InstanceChange = { service_id: ci.offer.service.service_id, instance_n: ci.offer.instance_n, state: to, reason, worker: ci.worker, ts: t.ts };
    if (ci.ns_ip) change.ns_ip = ci.ns_ip;
    if (ci.ns_ip_v6) change.ns_ip_v6 = ci.ns_ip_v6;
    const ep = ci.worker ? this.registry.workers.get(ci.worker)?.hb?.tunnel_endpoint : undefined;
    if (ep) change.tunnel_endpoint = ep;
    this.changes.push(change);
    if (this.changes.length > MAX_QUEUED_CHANGES) this.changes.splice(0, this.changes.length - MAX_QUEUED_CHANGES);
    this.writer.schedule();
    this.reportSoon();
    this.emit('transition', ci, t);
    if (from === 'RUNNING' || to === 'RUNNING') this.pushRoute(ci.offer.service.service_id);
    return true;
  }

  private servicesOn(workerId: string): Set<string> {
    const out = new Set<string>();
    for (const id of this.byWorker.get(workerId) ?? []) {
      const ci = this.instances.get(id);
      if (ci) out.add(ci.offer.service.service_id);
    }
    return out;
  }

  private index(ci: ClusterInstance): void {
    const id = instanceId(ci.offer.service.service_id, ci.offer.instance_n);
    this.instances.set(id, ci);
    if (ci.worker) {
      let s = this.byWorker.get(ci.worker);
      if (!s) this.byWorker.set(ci.worker, (s = new Set()));
      s.add(id);
    }
  }

  private unassign(ci: ClusterInstance): void {
    if (!ci.worker) return;
    this.byWorker.get(ci.worker)?.delete(instanceId(ci.offer.service.service_id, ci.offer.instance_n));
    ci.worker = null;
    ci.ns_ip = null;
    ci.ns_ip_v6 = null;
  }

  // ---- scheduling ----

  private pendingOn(workerId: string): PendingNeed {
    const listed = this.inventory.get(workerId);
    const p = { vcpus: 0, memory_mb: 0 };
    for (const id of this.byWorker.get(workerId) ?? []) {
      const ci = this.instances.get(id);
      if (!ci || listed?.has(id) || !isOnWorker(ci.lifecycle.state)) continue;
      const n = needOf(ci.offer);
      p.vcpus += n.vcpus;
      p.memory_mb += n.memory_mb;
    }
    return p;
  }

  private pick(offer: PlacementOffer, exclude?: ReadonlySet<string>): ScheduleResult {
    const candidates = this.registry.candidates((w) => this.servicesOn(w), (w) => this.pendingOn(w));
    return schedule(candidates, needOf(offer), { clusterName: this.o.name, exclude, coordinates: this.coords });
  }

  private assign(ci: ClusterInstance, workerId: string, reason: string): void {
    this.unassign(ci);
    ci.worker = workerId;
    this.index(ci);
    this.transition(ci, 'NODE_SCHEDULED', reason);
    this.lastOrder.set(`dep:${instanceId(ci.offer.service.service_id, ci.offer.instance_n)}`, Date.now());
    this.publish(topics.deploy(workerId), encode('deploy', deployOrder(ci.offer)));
  }

  /** POST /api/placements */
  place(offer: PlacementOffer): PlacementAnswer {
    const id = instanceId(offer.service.service_id, offer.instance_n);
    const existing = this.instances.get(id);
    if (existing?.worker && isOnWorker(existing.lifecycle.state)) return { accepted: true, worker_id: existing.worker };
    const r = this.pick(offer);
    if (!r.ok) {
      this.counters.declined++;
      this.log.info('placement declined', { instance: id, status: r.status, reason: r.reason });
      if (existing) {
        this.transition(existing, r.status, r.reason);
      }
      return { accepted: false, status: r.status, reason: r.reason };
    }
    this.counters.placements++;
    let ci = existing;
    if (ci && !isTerminal(ci.lifecycle.state)) {
      ci.offer = offer;
      this.transition(ci, 'CLUSTER_SCHEDULED', 'offered again by root');
    } else {
      ci = newInstance(offer, 'CLUSTER_SCHEDULED', 'offered by root');
      this.index(ci);
    }
    this.assign(ci, r.worker, r.reason);
    this.log.info('instance placed', { instance: id, worker: r.worker, reason: r.reason });
    return { accepted: true, worker_id: r.worker };
  }

  /** DELETE /api/placements/:service_id/:n */
  remove(serviceId: string, n: number, reason = 'removed by root'): void {
    const id = instanceId(serviceId, n);
    const ci = this.instances.get(id);
    if (!ci) return;
    if (ci.worker) this.publish(topics.remove(ci.worker), encode('remove', { service_id: serviceId, instance_n: n, reason }));
    this.transition(ci, 'UNDEPLOYED', reason);
    this.unassign(ci);
    this.instances.delete(id);
    this.pushRoute(serviceId);
    this.writer.schedule();
  }

  private sweep(): void {
    for (const w of this.registry.sweep()) this.onWorkerDead(w);
  }

  private onWorkerDead(w: WorkerRecord, cause?: string): void {
    const silentMs = Date.now() - w.lastSeen;
    if (!cause) {
      this.counters.deaths++;
      this.log.warn('worker declared dead', { worker: w.id, silent_ms: silentMs });
      this.emit('worker-dead', w.id);
      this.reportSoon();
    }
    const affected = new Set<string>();
    for (const id of [...(this.byWorker.get(w.id) ?? [])]) {
      const ci = this.instances.get(id);
      if (!ci || !isOnWorker(ci.lifecycle.state)) continue;
      affected.add(ci.offer.service.service_id);
      const why = cause ?? `worker ${w.id} silent for ${(silentMs / 1000).toFixed(1)} s`;
      this.transition(ci, 'CLUSTER_SCHEDULED', why);
      this.unassign(ci);
      const r = this.pick(ci.offer, new Set([w.id]));
      if (r.ok) {
        this.counters.replaced++;
        this.assign(ci, r.worker, `re-placed after ${why}: ${r.reason}`);
      } else {
        this.transition(ci, r.status, `${why}; cannot re-place here: ${r.reason}`);
      }
    }
    for (const sid of affected) this.pushRoute(sid);
  }

  // ---- routes ----

  private instancesOf(serviceId: string): ClusterInstance[] {
    const out: ClusterInstance[] = [];
    for (const ci of this.instances.values()) if (ci.offer.service.service_id === serviceId) out.push(ci);
    return out;
  }

  routeOf(serviceId: string): ServiceRoute | undefined {
    const local = buildRoute(this.instancesOf(serviceId), (w) => this.registry.workers.get(w)?.hb?.tunnel_endpoint, this.clusterId,
      (w) => this.tunnelIdOf(w));
    return local ?? this.rootRoutes.get(serviceId);
  }

  private pushRoute(serviceId: string): void {
    const route = this.routeOf(serviceId);
    const msg: ClusterToWorker = route ? { type: 'route_update', route } : { type: 'route_withdraw', service_id: serviceId };
    this.publish(topics.serviceUpdates(serviceId), JSON.stringify(msg));
  }

  private findLocal(q: TableQuery): string | undefined {
    for (const ci of this.instances.values()) {
      const s = ci.offer.service;
      if (q.name !== undefined) {
        if (`${s.app}.${s.appns}.${s.svc}.${s.svcns}`.toLowerCase() === q.name) return s.service_id;
        continue;
      }
      const a = q.address;
      if (a === s.rr_ip || a === s.closest_ip || a === s.rr_ip_v6?.toLowerCase() || a === s.closest_ip_v6?.toLowerCase()
        || a === ci.offer.instance_ip || a === ci.offer.instance_ip_v6?.toLowerCase()) return s.service_id;
    }
    for (const r of this.rootRoutes.values()) {
      if (q.name !== undefined ? r.name === q.name
        : [r.rr_ip, r.rr_ip_v6, r.closest_ip, r.closest_ip_v6, ...r.instances.flatMap((i) => [i.instance_ip, i.instance_ip_v6])].includes(q.address ?? '')) {
        return r.service_id;
      }
    }
    return undefined;
  }

  private async onTableQuery(workerId: string, q: TableQuery): Promise<void> {
    this.counters.queries++;
    let route: ServiceRoute | null = null;
    const sid = this.findLocal(q);
    if (sid) {
      route = this.routeOf(sid) ?? null;
    } else if (q.address && this.root?.registration) {
      try {
        const answer = await this.root.route(q.address);
        if (answer !== undefined) {
          route = this.qualified(parseServiceRoute(answer));
          this.rootRoutes.set(route.service_id, route);
        }
      } catch (e) {
        this.log.warn('route query to root failed', { address: q.address, error: (e as Error).message });
      }
    }
    const result: ClusterToWorker = { type: 'table_result', query_id: q.query_id, route };
    this.publish(topics.tableQueryResult(workerId), JSON.stringify(result));
  }

  /** POST /api/routes: root pushes a change of a service outside this cluster. */
  routeFromRoot(body: unknown): void {
    const route = this.qualified(parseServiceRoute(body));
    this.rootRoutes.set(route.service_id, route);
    if (this.interest.has(route.service_id) || this.instancesOf(route.service_id).length === 0) {
      this.publish(topics.serviceUpdates(route.service_id), JSON.stringify({ type: 'route_update', route } satisfies ClusterToWorker));
    }
  }

  /** A route from root as this cluster's workers see it: other clusters' workers by remoteWorkerName. */
  private qualified(route: ServiceRoute): ServiceRoute {
    const own = this.root?.registration?.cluster_id;
    if (route.instances.every((i) => !i.cluster_id || i.cluster_id === own)) return route;
    return {
      ...route,
      instances: route.instances.map((i) => (!i.cluster_id || i.cluster_id === own ? i : { ...i, worker_id: remoteWorkerName(i.worker_id, i.cluster_id) })),
    };
  }

  interestedIn(serviceId: string): string[] {
    return [...(this.interest.get(serviceId) ?? [])];
  }

  private relayCoordinates(): void {
    if (!this.coordsDirty) return;
    this.coordsDirty = false;
    const entries = [...this.coords].map(([worker_id, coord]) => ({ worker_id, coord }));
    const msg = JSON.stringify({ type: 'coordinates', entries } satisfies ClusterToWorker);
    for (const w of this.coords.keys()) if (this.registry.workers.get(w)?.alive) this.publish(topics.coordinatePeers(w), msg);
  }

  // ---- root ----

  aggregate(): Omit<Report, 'instances'> {
    const free = { vcpus: 0, memory_mb: 0, gpus: 0 };
    const virt = new Set<string>();
    const arch = new Set<string>();
    // The biggest worker bounds what one instance can ever get here (root fails such a deploy at once).
    const maxWorker = { vcpus: 0, memory_mb: 0 };
    let active = 0;
    for (const w of this.registry.alive()) {
      if (!w.hb) continue;
      active++;
      maxWorker.vcpus = Math.max(maxWorker.vcpus, w.hb.cpu.cores);
      maxWorker.memory_mb = Math.max(maxWorker.memory_mb, w.hb.memory_mb.total);
      const p = this.pendingOn(w.id);
      free.vcpus += Math.max(0, w.hb.cpu.free - p.vcpus);
      free.memory_mb += Math.max(0, w.hb.memory_mb.free - p.memory_mb);
      for (const v of w.hb.virtualizations) virt.add(v);
      arch.add(w.hb.arch);
    }
    return { free, workers_active: active, virtualizations: [...virt].sort(), architectures: [...arch].sort(), max_worker: maxWorker };
  }

  /** Registers if needed, then sends the aggregate and the queued instance changes. */
  async reportToRoot(): Promise<void> {
    if (!this.root || this.reporting || this.closed) return;
    this.reporting = true;
    const batch = this.changes;
    this.changes = [];
    try {
      if (!this.root.registration) {
        const { registration, news } = await this.root.register(this.o.name, this.o.location, this.o.apiUrl);
        this.writer.schedule();
        this.log.info('registered with root', { cluster_id: registration.cluster_id });
        this.takeOverlayNews(news);
      }
      try {
        this.takeOverlayNews(await this.root.report({ ...this.aggregate(), instances: batch }));
      } catch (e) {
        if (e instanceof RootCallError && (e.status === 401 || e.status === 403 || e.status === 404)) {
          this.log.warn('root refused our token: registering again', { error: e.message });
          this.root.registration = undefined;
        }
        throw e;
      }
      this.counters.reports_ok++;
      this.rootAnswered = true;
      for (const w of this.registry.workers.values()) {
        if (!w.subnet_v4) await this.ensureSubnet(w).catch(() => {});
      }
    } catch (e) {
      this.counters.reports_failed++;
      this.rootAnswered = false;
      this.changes = [...batch, ...this.changes].slice(-MAX_QUEUED_CHANGES);
      this.log.warn('report to root failed', { error: (e as Error).message, queued: this.changes.length });
    } finally {
      this.reporting = false;
    }
  }

  // ---- status ----

  status(): Record<string, unknown> {
    return {
      name: this.o.name,
      cluster_id: this.clusterId,
      registered: Boolean(this.root?.registration),
      broker: this.brokerUrl,
      // Without root's overlay key, this cluster's workers reach only each other.
      overlay_key_id: this.overlayTunnel?.key_id ?? null,
      remote_peers: this.remotePeers.length,
      workers: [...this.registry.workers.values()].map((w) => ({
        id: w.id, alive: w.alive, last_seen: w.lastSeen, subnet_v4: w.subnet_v4, subnet_v6: w.subnet_v6,
        arch: w.hb?.arch ?? null, virtualizations: w.hb?.virtualizations ?? [], location: w.hb?.location ?? null,
        cpu: w.hb?.cpu ?? null, memory_mb: w.hb?.memory_mb ?? null, instances: this.byWorker.get(w.id)?.size ?? 0,
      })),
      instances: [...this.instances.values()].map((ci) => ({
        service_id: ci.offer.service.service_id, instance_n: ci.offer.instance_n, worker: ci.worker,
        state: ci.lifecycle.state, reason: ci.lifecycle.last.reason, ns_ip: ci.ns_ip, history: ci.lifecycle.history,
      })),
      counters: this.counters,
    };
  }

  metrics(): string {
    const lines: string[] = [];
    const g = (name: string, help: string, value: number, type = 'gauge'): void => {
      lines.push(`# HELP canopy_cluster_${name} ${help}`, `# TYPE canopy_cluster_${name} ${type}`, `canopy_cluster_${name} ${value}`);
    };
    g('workers', 'registered workers', this.registry.workers.size);
    g('workers_alive', 'workers heard from within the liveness timeout', this.registry.alive().length);
    g('instances', 'instances held by this cluster', this.instances.size);
    for (const [k, v] of Object.entries(this.counters)) g(`${k}_total`, `${k.replace(/_/g, ' ')} since start`, v, 'counter');
    if (this.broker) g('mqtt_denied_total', 'publishes and subscriptions the ACL refused', this.broker.stats.denied, 'counter');
    return `${lines.join('\n')}\n`;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.reports.close();
    if (this.peersTimer) clearTimeout(this.peersTimer);
    try {
      this.writer.flush();
      this.creds.flush();
    } catch (e) {
      this.log.error('could not save state', { error: (e as Error).message });
    }
    if (this.bus) await this.bus.close();
    if (this.broker) await this.broker.close();
  }
}
