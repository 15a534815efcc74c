// The cluster orchestrator: registers with root and reports every 5 s (and within 200 ms of a change
// root must know: an instance's state, a worker coming or going), owns (or uses) the MQTT broker,
// admits workers with per-worker credentials, places instances on workers, declares silent workers
// dead and re-places their instances, answers route queries and pushes route changes.
//
// This class holds the state every part shares (the instance index, the worker registry, the broker)
// and routes messages; the work is done by managers hung on the index: PeerDistribution (tunnel
// peers and the overlay key), RouteService (interests, root's routes, table queries, coordinates),
// RootReporter (reports to root), Placer (placement, reconcile, worker death), WorkerAdmission
// (register, remove, revoke; the tunnel key).
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { CredentialStore, CLUSTER_USER, type Credentials } from '../mqtt/credentials.ts';
import { EmbeddedBroker } from '../mqtt/broker.ts';
import { keepMosquittoFiles } from '../mqtt/mosquitto.ts';
import { InProcessBus, ClientBus, type ClusterBus } from '../mqtt/bus.ts';
import { CLUSTER_SUBSCRIPTIONS, parseWorkerTopic } from '../mqtt/topics.ts';
import { decode, type Heartbeat } from '../mqtt/messages.ts';
import { jsonLogger, type Logger } from '../protocol/log.ts';
import { parseWorkerToCluster, RouteMessageError, type ServiceRoute } from '../../proxy/route-messages.ts';
import type { Transition } from '../protocol/instance-states.ts';
import type { WorkerRegistrationAnswer } from '../protocol/worker-registration.ts';
import type { InstanceChange, PlacementAnswer, PlacementOffer, Report } from '../protocol/root-cluster.ts';
import type { TunnelKey } from '../protocol/tunnel-identity.ts';
import { WorkerRegistry } from './worker-registry.ts';
import { storeInstance, loadInstance, type ClusterInstance } from './placements.ts';
import { RootClient } from './root-client.ts';
import { loadState, StateWriter } from './state-file.ts';
import { InstanceIndex } from './instance-index.ts';
import { newCounters, type ClusterContext } from './context.ts';
import { PeerDistribution } from './peer-distribution.ts';
import { RouteService } from './route-service.ts';
import { RootReporter } from './root-reporter.ts';
import { Placer } from './placer.ts';
import type { ServerTls } from '../protocol/tls.ts';
import { LogRelay } from './log-relay.ts';
import { WorkerAdmission } from './admission.ts';

export { remoteWorkerName } from './peer-distribution.ts';
export { REPORT_SOON_MS } from './root-reporter.ts';
export { ClusterError } from './admission.ts';

export type BrokerChoice =
  | { embedded: { host: string; port: number; publicUrl?: string; tls?: ServerTls } }
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
  /** Workers encrypt their tunnel payloads (SPEC §5.4); otherwise payloads are only authenticated. */
  encryptPayload?: boolean;
  log?: Logger;
}

interface ClusterEvents {
  'worker-dead': [string];
  'worker-alive': [string];
  transition: [ClusterInstance, Transition];
}

/** Free memory growth on a worker that counts as new room (less is the host's free memory moving). */
const ROOM_MB = 32;

export class Cluster extends EventEmitter<ClusterEvents> {
  readonly log: Logger;
  readonly creds: CredentialStore;
  readonly registry: WorkerRegistry;
  readonly index = new InstanceIndex();
  /** Instance logs read through the tiers (GET /api/instances/:sid/:n/logs, for root). */
  readonly logs: LogRelay;
  /** The instances by id (the index's table). */
  readonly instances = this.index.instances;
  readonly counters = newCounters();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly writer: StateWriter;
  readonly root: RootClient | undefined;
  readonly peers: PeerDistribution;
  readonly routes: RouteService;
  readonly reporter: RootReporter;
  readonly placer: Placer;
  readonly admission: WorkerAdmission;
  private broker: EmbeddedBroker | undefined;
  private bus: ClusterBus | undefined;
  private brokerUrl = '';
  private workerBrokerUrl = '';
  private closed = false;

  private constructor(readonly o: ClusterOptions) {
    super();
    this.log = o.log ?? jsonLogger({ component: 'cluster', cluster: o.name });
    this.creds = new CredentialStore(join(o.stateDir, 'credentials.json'));
    this.registry = new WorkerRegistry(o.heartbeatTimeoutMs ?? 3000);
    this.root = o.root ? new RootClient(o.root.url, o.root.joinKey) : undefined;
    const state = loadState(join(o.stateDir, 'cluster.json'));
    if (this.root && state.root) this.root.registration = state.root;
    const ctx: ClusterContext = {
      name: o.name,
      log: this.log,
      index: this.index,
      registry: this.registry,
      counters: this.counters,
      publish: (topic, payload, retain) => this.publish(topic, payload, retain),
      clusterId: () => this.clusterId,
      saveSoon: () => this.writer.schedule(),
    };
    this.peers = new PeerDistribution(ctx, state.overlay_tunnel ?? undefined);
    this.logs = new LogRelay(this.index, (t, p) => this.publish(t, p), (w) => this.registry.workers.get(w)?.alive === true);
    this.routes = new RouteService(ctx, this.root, (w) => this.peers.tunnelIdOf(w));
    this.reporter = new RootReporter(ctx, this.root, {
      location: o.location, apiUrl: o.apiUrl,
      network: () => ({ coords: this.routes.coords, probes: this.placer.probes.best() }),
    }, this.peers, () => this.admission.ensureSubnets());
    this.placer = new Placer(ctx, this.routes, {
      workerDead: (id) => {
        this.emit('worker-dead', id);
        this.reporter.soon();
      },
    });
    this.admission = new WorkerAdmission(ctx, {
      stateDir: o.stateDir, encryptPayload: o.encryptPayload ?? false, creds: this.creds, root: this.root,
      peers: this.peers, routes: this.routes, reporter: this.reporter, placer: this.placer,
      broker: () => ({ workerUrl: this.workerBrokerUrl, embedded: this.broker, reloads: 'external' in o.mqtt && o.mqtt.external.reload !== undefined }),
    });
    // What every state change sets off, in this order: root hears of it (queued, and a report soon),
    // the state is saved, listeners are told, and a route that gained or lost a running instance is
    // pushed to the workers.
    const changeOf = (ci: ClusterInstance, t: Transition): InstanceChange => {
      const change: InstanceChange = {
        service_id: ci.offer.service.service_id, instance_n: ci.offer.instance_n, state: t.state, reason: t.reason, worker: ci.worker, ts: t.ts,
      };
      if (ci.ns_ip) change.ns_ip = ci.ns_ip;
      if (ci.ns_ip_v6) change.ns_ip_v6 = ci.ns_ip_v6;
      const ep = ci.worker ? this.registry.workers.get(ci.worker)?.hb?.tunnel_endpoint : undefined;
      if (ep) change.tunnel_endpoint = ep;
      return change;
    };
    this.index.onTransition((ci, t, from) => {
      this.reporter.queue(changeOf(ci, t));
      this.writer.schedule();
      this.reporter.soon();
      this.emit('transition', ci, t);
      // Overload is a property of one run: a restarted or re-placed instance starts unburdened.
      if (from === 'RUNNING') ci.overloaded = undefined;
      if (from === 'RUNNING' || t.state === 'RUNNING') this.routes.pushRoute(ci.offer.service.service_id);
    });
    // Progress within a state (the worker sends at most one a second): root hears of it in the next
    // early report, as a same-state change that updates the reason without a history entry.
    this.index.onProgress((ci, t) => {
      this.reporter.queue(changeOf(ci, t));
      this.reporter.soon();
    });
    for (const [id, w] of Object.entries(state.workers)) {
      const r = this.registry.restore(id, o.restartGraceMs ?? 10_000);
      r.registeredAt = w.registeredAt;
      r.subnet_v4 = w.subnet_v4;
      r.subnet_v6 = w.subnet_v6;
    }
    for (const s of state.instances) this.index.index(loadInstance(s));
    this.writer = new StateWriter(join(o.stateDir, 'cluster.json'), () => ({
      root: this.root?.registration ?? null,
      workers: Object.fromEntries([...this.registry.workers.values()].map((w) => [w.id, { registeredAt: w.registeredAt, subnet_v4: w.subnet_v4, subnet_v6: w.subnet_v6 }])),
      instances: [...this.index.values()].map(storeInstance),
      overlay_tunnel: this.peers.overlayTunnel ?? null,
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
    // The embedded broker forgets retained messages on a restart: the overlay key, and the cluster's
    // own key, which a worker that was away during a rotation has not heard of yet.
    if (c.peers.overlayTunnel) for (const w of c.registry.workers.keys()) c.peers.publishOverlayTunnel(w);
    c.admission.publishTunnelKey();
    c.timers.push(setInterval(() => c.placer.sweep(), o.sweepIntervalMs ?? 250));
    c.timers.push(setInterval(() => c.reporter.now(), o.reportIntervalMs ?? 5000));
    c.timers.push(setInterval(() => c.routes.relayCoordinates(), 2000));
    if (c.root) c.reporter.now();
    c.log.info('cluster started', { broker: c.brokerUrl, workers: c.registry.workers.size, instances: c.index.size });
    return c;
  }

  private async startBroker(): Promise<void> {
    const m = this.o.mqtt;
    if ('embedded' in m) {
      this.broker = await EmbeddedBroker.start({ host: m.embedded.host, port: m.embedded.port, tls: m.embedded.tls, credentials: this.creds, log: this.log.child({ component: 'broker' }) });
      this.brokerUrl = this.broker.url;
      this.workerBrokerUrl = m.embedded.publicUrl ?? this.broker.url;
    } else {
      keepMosquittoFiles(this.creds, join(this.o.stateDir, 'mosquitto'), m.external.reload);
      if (!m.external.reload) {
        this.log.warn('external broker without a way to reload it: new workers and revocations take effect only when it reloads its password file (canopy cluster --mosquitto-pid-file)');
      }
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

  /** The cluster's tunnel key (replaced when a worker is revoked). */
  get tunnelKey(): TunnelKey {
    return this.admission.tunnelKey;
  }

  // ---- delegated to the managers (the API's and the tests' entry points) ----

  /** POST /api/workers/register */
  registerWorker(name: string): Promise<WorkerRegistrationAnswer> {
    return this.admission.register(name);
  }

  /** DELETE /api/workers/:id */
  removeWorker(id: string): Promise<boolean> {
    return this.admission.remove(id);
  }

  /** POST /api/workers/:id/revoke (from root) */
  revokeWorker(id: string, overlay?: TunnelKey): Promise<boolean> {
    return this.admission.revoke(id, overlay);
  }

  /** POST /api/placements */
  place(offer: PlacementOffer): PlacementAnswer {
    return this.placer.place(offer);
  }

  /** POST /api/placements: `place` after the workers measured the offer's `latency` targets. */
  async placeMeasured(offer: PlacementOffer): Promise<PlacementAnswer> {
    await this.placer.measure(offer);
    return this.placer.place(offer);
  }

  /** DELETE /api/placements/:service_id/:n */
  remove(serviceId: string, n: number, reason?: string): void {
    this.placer.remove(serviceId, n, reason);
  }

  /** POST /api/routes */
  routeFromRoot(body: unknown): void {
    this.routes.routeFromRoot(body);
  }

  /** POST /api/peers */
  peersFromRoot(body: unknown): { peers: number } {
    return this.peers.peersFromRoot(body);
  }

  routeOf(serviceId: string): ServiceRoute | undefined {
    return this.routes.routeOf(serviceId);
  }

  interestedIn(serviceId: string): string[] {
    return this.routes.interestedIn(serviceId);
  }

  tunnelIdOf(workerId: string): number | undefined {
    return this.peers.tunnelIdOf(workerId);
  }

  aggregate(): Omit<Report, 'instances'> {
    return this.reporter.aggregate();
  }

  reportToRoot(): Promise<void> {
    return this.reporter.report();
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
      case 'logs': {
        const dropped = this.logs.onAnswer(t.worker, payload);
        if (dropped) this.drop(topic, dropped);
        return;
      }
      case 'net/probe/result': {
        const d = decode('probe_result', payload);
        if (!d.ok) return this.drop(topic, d.error);
        this.placer.probes.onResult(t.worker, d.value);
        return;
      }
      case 'job': {
        const d = decode('job', payload);
        if (!d.ok) return this.drop(topic, d.error);
        this.placer.onJob(t.worker, d.value);
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
            void this.routes.onTableQuery(t.worker, msg);
            return;
          case 'interest_add':
          case 'interest_remove':
            this.routes.onInterest(t.worker, msg);
            return;
          case 'coordinate_report':
            if (msg.worker_id !== t.worker) return this.drop(topic, 'coordinate_report for another worker');
            this.routes.onCoordinate(t.worker, msg.coord, msg.rtt_ms);
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
      this.reporter.soon();
    } else if (prev && (hb.cpu.free > prev.cpu.free + 1e-6 || hb.memory_mb.free >= prev.memory_mb.free + ROOM_MB)) {
      // Room on a worker (an instance stopped): root may have instances waiting for it.
      this.reporter.soon();
    }
    this.placer.reconcile(workerId, hb.instances);
    if (hb.coord) this.routes.onCoordinate(workerId, hb.coord);
    if (prevEndpoint !== hb.tunnel_endpoint) {
      for (const sid of this.index.servicesOn(workerId)) this.routes.pushRoute(sid);
    }
    if (prevEndpoint !== hb.tunnel_endpoint || revived || first) this.peers.publishPeers(revived || first ? workerId : undefined);
  }

  // ---- status ----

  status(): Record<string, unknown> {
    return {
      name: this.o.name,
      cluster_id: this.clusterId,
      registered: Boolean(this.root?.registration),
      broker: this.brokerUrl,
      // Without root's overlay key, this cluster's workers reach only each other.
      overlay_key_id: this.peers.overlayTunnel?.key_id ?? null,
      // --encrypt-payload: what this cluster's workers send through the tunnel is encrypted, not only authenticated.
      payload_encrypted: this.tunnelKey.encrypt,
      remote_peers: this.peers.remotePeerCount,
      workers: [...this.registry.workers.values()].map((w) => ({
        id: w.id, alive: w.alive, last_seen: w.lastSeen, subnet_v4: w.subnet_v4, subnet_v6: w.subnet_v6,
        arch: w.hb?.arch ?? null, virtualizations: w.hb?.virtualizations ?? [], location: w.hb?.location ?? null,
        cpu: w.hb?.cpu ?? null, memory_mb: w.hb?.memory_mb ?? null, instances: this.index.countOn(w.id),
        coord: this.routes.coords.get(w.id) ?? null, rtt_ms: this.routes.measured.get(w.id) ?? {},
      })),
      instances: [...this.index.values()].map((ci) => ({
        service_id: ci.offer.service.service_id, instance_n: ci.offer.instance_n, worker: ci.worker,
        state: ci.lifecycle.state, reason: ci.overloaded ? `overloaded: ${ci.overloaded}` : ci.note ?? ci.lifecycle.last.reason,
        overloaded: ci.overloaded !== undefined, ns_ip: ci.ns_ip, history: ci.lifecycle.history,
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
    g('instances', 'instances held by this cluster', this.index.size);
    g('instances_overloaded', 'instances their worker reports overloaded (closest avoids them)', [...this.index.values()].filter((ci) => ci.overloaded !== undefined).length);
    for (const [k, v] of Object.entries(this.counters)) g(`${k}_total`, `${k.replace(/_/g, ' ')} since start`, v, 'counter');
    if (this.broker) g('mqtt_denied_total', 'publishes and subscriptions the ACL refused', this.broker.stats.denied, 'counter');
    return `${lines.join('\n')}\n`;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.reporter.close();
    this.peers.close();
    this.logs.close();
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
