// The worker's node engine: registers (registration.ts) with its cluster (join key → per-worker MQTT credentials, kept
// on disk), heartbeats every second with free CPU/memory, architecture, runnable virtualizations,
// location and its inventory, runs the instances the cluster orders, and carries the semantic layer's
// route messages. Instances outlive the daemon and the cluster: a restarted daemon re-adopts them, and
// nothing is killed while the cluster is unreachable.
import { removeDaemonMarker, writeDaemonMarker } from './daemon-marker.ts';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { readFileSync, writeFileSync, renameSync, mkdirSync, existsSync, readdirSync } from 'node:fs';
import mqtt, { type MqttClient } from 'mqtt';
import { mqttOptions } from '../mqtt/client.ts';
import { topics } from '../mqtt/topics.ts';
import { decode, encode, type Heartbeat, type DeployOrder, type SubnetAssignment, type JobStatus } from '../mqtt/messages.ts';
import { jsonLogger, type Logger } from '../protocol/log.ts';
import type { NetCoordinate } from '../protocol/network.ts';
import { probeRtt } from './latency-probe.ts';
import {
  parseClusterToWorker, RouteMessageError, type RouteLink, type ClusterToWorker, type WorkerToCluster,
} from '../../proxy/route-messages.ts';
import { detectCgroups, type CgroupDriver, type CpuThrottle } from './cgroup.ts';
import { InstanceLoad } from './overload.ts';
import { ProcessRuntime } from './process-runtime.ts';
import { instanceKey } from './runtime/exit.ts';
import { Sandbox } from './runtime/sandbox.ts';
import { Runtimes, type InstanceRuntime } from './runtime/types.ts';
import { Instance, DEFAULT_BACKOFF, type BackoffPolicy } from './instance.ts';
import { NoNetwork, type InstanceNetwork } from './net-seam.ts';
import { hostArch, hostCapacity, hostFreeMemoryMb, runnableVirtualizations, CpuMeter, type Capacity } from './host-resources.ts';
import type { Transition } from '../protocol/instance-states.ts';
import { validTunnelKey, type TunnelKey } from '../protocol/tunnel-identity.ts';
import type { WorkerIdentity } from '../protocol/worker-registration.ts';
import { identityFile, loadOrRegister, registerWithCluster, RegistrationError, saveIdentity } from './registration.ts';
import { parseLogRequest, type LogAnswer } from '../protocol/instance-logs.ts';

export interface NodeEngineOptions {
  name: string;
  /** The cluster's API, e.g. http://198.18.0.1:10100 */
  clusterUrl: string;
  joinKey: string;
  stateDir: string;
  /** "lat,long" */
  location?: string;
  /** What to advertise; defaults to the host's CPUs and memory. */
  capacity?: Capacity;
  /** The instances' network, or a factory given the engine (its identity, route link, runtime). */
  net?: InstanceNetwork | ((engine: NodeEngine) => InstanceNetwork);
  cgroups?: CgroupDriver;
  heartbeatMs?: number;
  tunnelEndpoint?: string;
  backoff?: BackoffPolicy;
  /**
   * More runtimes beside `process` (the container runtime), given the shared sandbox. A runtime that
   * has `available()` is advertised only while that answers true.
   */
  runtimes?: (sandbox: Sandbox, log: Logger) => Promise<InstanceRuntime[]> | InstanceRuntime[];
  /** How long a first registration retries while the cluster is unreachable (default 60 s). */
  registerTimeoutMs?: number;
  log?: Logger;
}

interface EngineEvents {
  connected: [];
  offline: [];
  transition: [Instance, Transition];
  subnet: [SubnetAssignment];
  'overlay-key': [TunnelKey];
  'tunnel-key': [TunnelKey];
}

const ORDER_FILE = 'order.json';

export class NodeEngine extends EventEmitter<EngineEvents> {
  readonly log: Logger;
  readonly instances = new Map<string, Instance>();
  readonly sandbox: Sandbox;
  readonly runtimes: Runtimes;
  readonly net: InstanceNetwork;
  private readonly processOk: boolean;
  private client: MqttClient | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private paused = false;
  private seq = 0;
  private readonly cpu = new CpuMeter();
  /** Which running instances keep hitting their CPU quota (reported per instance in heartbeats). */
  private readonly load = new InstanceLoad();
  private readonly routeListeners = new Set<(m: ClusterToWorker) => void>();
  private readonly interest = new Set<string>();
  private reRegistering = false;
  private refusals = 0;
  private closed = false;
  readonly counters = { heartbeats: 0, dropped: 0, deploys: 0, deletes: 0 };

  private constructor(readonly o: NodeEngineOptions, public identity: WorkerIdentity, cgroups: CgroupDriver | undefined) {
    super();
    this.log = o.log ?? jsonLogger({ component: 'worker', worker: identity.worker_id });
    this.processOk = runnableVirtualizations(cgroups !== undefined).includes('process');
    this.sandbox = new Sandbox({ workerId: identity.worker_id, cgroups: cgroups ?? detectCgroups(), stateDir: o.stateDir });
    this.runtimes = new Runtimes(this.sandbox, [new ProcessRuntime(this.sandbox)]);
    this.net = typeof o.net === 'function' ? o.net(this) : o.net ?? new NoNetwork();
  }

  static identityFile(stateDir: string): string {
    return identityFile(stateDir);
  }

  static async start(o: NodeEngineOptions): Promise<NodeEngine> {
    mkdirSync(o.stateDir, { recursive: true });
    const identity = await loadOrRegister({ stateDir: o.stateDir, clusterUrl: o.clusterUrl, joinKey: o.joinKey, name: o.name, timeoutMs: o.registerTimeoutMs ?? 60_000 });
    let cgroups = o.cgroups;
    if (!cgroups) {
      try {
        cgroups = detectCgroups();
      } catch {
        cgroups = undefined;
      }
    }
    const e = new NodeEngine(o, identity, cgroups);
    for (const r of (await o.runtimes?.(e.sandbox, e.log)) ?? []) e.runtimes.add(r);
    writeDaemonMarker(identity.worker_id);
    await e.restore();
    e.connect();
    e.heartbeatTimer = setInterval(() => e.heartbeat(), o.heartbeatMs ?? 1000);
    e.log.info('worker started', { virtualizations: e.virtualizations, instances: e.instances.size, broker: identity.mqtt.url });
    return e;
  }

  /** The virtualizations this worker can run now: `process` when the host allows, others while their engine answers. */
  get virtualizations(): string[] {
    const out: string[] = [];
    for (const kind of this.runtimes.kinds) {
      const r = this.runtimes.get(kind);
      if (kind === 'process' ? this.processOk : (r?.available?.() ?? true)) out.push(kind);
    }
    return out;
  }

  get workerId(): string {
    return this.identity.worker_id;
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /** Instances found on disk: re-adopted if running, restarted if not, left completed if done. */
  private async restore(): Promise<void> {
    const dir = this.sandbox.instancesDir;
    const keys = new Set(await this.runtimes.leftovers());
    for (const key of existsSync(dir) ? readdirSync(dir) : []) {
      const f = join(dir, key, ORDER_FILE);
      if (!existsSync(f)) continue;
      keys.delete(key);
      let order: DeployOrder;
      try {
        const d = decode('deploy', readFileSync(f));
        if (!d.ok) throw new Error(d.error);
        order = d.value;
      } catch (e) {
        this.log.warn('unreadable instance record: removing the instance', { instance: key, error: (e as Error).message });
        await this.runtimes.remove(key).catch(() => {});
        continue;
      }
      // A one-shot that already ended keeps its outcome; it is never run twice.
      const exitCode = order.spec.one_shot ? this.sandbox.recordedExit(key) : undefined;
      const initial = exitCode === undefined
        ? { state: 'NODE_SCHEDULED' as const, reason: 'found after a worker restart' }
        : exitCode === '0'
          ? { state: 'COMPLETED' as const, reason: 'completed before the worker restarted' }
          : { state: 'FAILED' as const, reason: `exited with code ${exitCode} before the worker restarted` };
      const inst = this.track(new Instance(order, this.runtimes, this.net, this.log, this.backoff(), initial));
      if (exitCode !== undefined) {
        await this.net.detach(key).then(() => this.runtimes.teardown(key)).catch(() => {});
      } else if (!(await inst.adopt())) {
        this.log.info('instance was not running after the restart: replacing it', { instance: key });
        await this.net.detach(key).then(() => this.runtimes.teardown(key)).catch(() => {});
        void inst.start();
      }
    }
    // Namespaces or cgroups without a record: half-created before a crash.
    for (const key of keys) {
      this.log.info('removing leftovers of an unknown instance', { instance: key });
      await this.net.detach(key).catch(() => {});
      await this.runtimes.remove(key).catch((e: Error) => this.log.warn('could not remove leftovers', { instance: key, error: e.message }));
    }
  }

  private backoff(): BackoffPolicy {
    return this.o.backoff ?? DEFAULT_BACKOFF;
  }

  private track(inst: Instance): Instance {
    this.instances.set(inst.key, inst);
    inst.on('transition', (t) => {
      const st: JobStatus = { service_id: inst.order.service_id, instance_n: inst.order.instance_n, state: t.state, reason: t.reason, ts: t.ts };
      if (inst.attachment.ns_ip) st.ns_ip = inst.attachment.ns_ip;
      if (inst.attachment.ns_ip_v6) st.ns_ip_v6 = inst.attachment.ns_ip_v6;
      this.client?.publish(topics.job(this.workerId), encode('job', st), { qos: 1 });
      this.emit('transition', inst, t);
    });
    return inst;
  }

  private connect(): void {
    const client = mqtt.connect(this.identity.mqtt.url, mqttOptions(this.identity.mqtt, { reconnectPeriod: 1000 }));
    this.client = client;
    const w = this.workerId;
    client.on('connect', () => {
      this.refusals = 0;
      const subs = [topics.deploy(w), topics.remove(w), topics.tableQueryResult(w), topics.subnet(w), topics.coordinatePeers(w), topics.overlayKey(w), topics.tunnelKey(w), topics.logsRequest(w), topics.probe(w),
        ...[...this.interest].map((s) => topics.serviceUpdates(s))];
      client.subscribe(subs, { qos: 1 });
      // The cluster may have restarted and forgotten who is interested in what.
      for (const sid of this.interest) client.publish(topics.interest(w), JSON.stringify({ type: 'interest_add', service_id: sid }), { qos: 1 });
      this.log.info('connected to the cluster broker');
      this.emit('connected');
      this.heartbeat();
    });
    client.on('offline', () => {
      this.log.warn('cluster broker unreachable: instances keep running');
      this.emit('offline');
    });
    client.on('error', (e) => {
      const code = (e as { code?: number }).code;
      this.log.warn('mqtt error', { error: e.message, code: code ?? null });
      // A refusal right after registering can be an external broker still reloading its password
      // file; only repeated refusals mean the cluster no longer knows these credentials.
      if (code === 4 || code === 5) {
        if (++this.refusals >= 3) void this.reRegister();
      }
    });
    client.on('message', (topic, payload) => {
      try {
        this.dispatch(topic, payload);
      } catch (e) {
        this.counters.dropped++;
        this.log.error('message handler failed', { topic, error: (e as Error).message });
      }
    });
  }

  /** The broker refused our credentials (the cluster lost or rotated them): get new ones once. */
  private async reRegister(): Promise<void> {
    if (this.reRegistering || this.closed) return;
    this.reRegistering = true;
    try {
      const id = await registerWithCluster(this.o.clusterUrl, this.o.joinKey, this.o.name);
      if (id.worker_id !== this.workerId) throw new RegistrationError(`cluster gave a different id (${id.worker_id})`);
      const was = this.identity;
      this.identity = id;
      // Keys rotated while we were away come with the answer; the retained topics then match the
      // identity and would not be passed on, so the tunnel hears of them here.
      if (id.tunnel && JSON.stringify(id.tunnel) !== JSON.stringify(was.tunnel)) this.emit('tunnel-key', id.tunnel);
      if (id.overlay_tunnel && JSON.stringify(id.overlay_tunnel) !== JSON.stringify(was.overlay_tunnel)) this.emit('overlay-key', id.overlay_tunnel);
      saveIdentity(NodeEngine.identityFile(this.o.stateDir), id);
      this.log.info('registered again with new credentials');
      this.refusals = 0;
      const old = this.client;
      this.connect();
      await old?.endAsync(true).catch(() => {});
    } catch (e) {
      this.log.warn('registering again failed; will retry on the next refusal', { error: (e as Error).message });
      await new Promise((r) => setTimeout(r, 2000));
    } finally {
      this.reRegistering = false;
    }
  }

  private dispatch(topic: string, payload: Buffer): void {
    const w = this.workerId;
    if (topic === topics.deploy(w)) {
      const d = decode('deploy', payload);
      if (!d.ok) return this.drop(topic, d.error);
      this.log.debug('deploy order received', { service_id: d.value.service_id, instance_n: d.value.instance_n });
      this.deploy(d.value).catch((e: Error) => this.log.error('deploy failed', { service_id: d.value.service_id, instance_n: d.value.instance_n, error: e.message }));
    } else if (topic === topics.remove(w)) {
      const d = decode('remove', payload);
      if (!d.ok) return this.drop(topic, d.error);
      void this.undeploy(d.value.service_id, d.value.instance_n, d.value.reason);
    } else if (topic === topics.subnet(w)) {
      const d = decode('subnet', payload);
      if (!d.ok) return this.drop(topic, d.error);
      this.identity = { ...this.identity, subnet_v4: d.value.subnet_v4, subnet_v6: d.value.subnet_v6 ?? null };
      saveIdentity(NodeEngine.identityFile(this.o.stateDir), this.identity);
      this.emit('subnet', d.value);
    } else if (topic === topics.logsRequest(w)) {
      // A user reading logs through root (protocol/instance-logs.ts): the answer goes back on our own topic.
      let answer: LogAnswer;
      try {
        const r = parseLogRequest(JSON.parse(payload.toString('utf8')));
        const inst = this.instances.get(instanceKey(r.service_id, r.instance_n));
        answer = inst ? { id: r.id, ok: true, text: inst.logs(r.stream, r.bytes) } : { id: r.id, ok: false, status: 404, error: `no instance ${r.service_id}#${r.instance_n} on worker ${w}` };
      } catch (e) {
        return this.drop(topic, (e as Error).message);
      }
      this.client?.publish(topics.logs(w), JSON.stringify(answer), { qos: 0 });
    } else if (topic === topics.probe(w)) {
      const d = decode('probe', payload);
      if (!d.ok) return this.drop(topic, d.error);
      void probeRtt(d.value.probe_id, d.value.target).then((r) => {
        this.log.info('latency probe', { target: r.target, rtt_ms: r.rtt_ms, method: r.method });
        this.client?.publish(topics.probeResult(w), encode('probe_result', r), { qos: 1 });
      });
    } else if (topic === topics.overlayKey(w) || topic === topics.tunnelKey(w)) {
      // Root's overlay key, or the cluster's own key rotated after a revocation: kept in worker.json
      // so a restart starts with the current one, and handed to the tunnel while it runs.
      const overlay = topic === topics.overlayKey(w);
      let k: unknown;
      try {
        k = JSON.parse(payload.toString('utf8'));
      } catch {
        k = undefined;
      }
      if (!validTunnelKey(k)) return this.drop(topic, `${overlay ? 'overlay' : 'tunnel'} key must be { key_id: 0..255, key: 64 hex digits, encrypt: boolean }`);
      if (JSON.stringify(k) === JSON.stringify(overlay ? this.identity.overlay_tunnel : this.identity.tunnel)) return;
      this.identity = overlay ? { ...this.identity, overlay_tunnel: k } : { ...this.identity, tunnel: k };
      saveIdentity(NodeEngine.identityFile(this.o.stateDir), this.identity);
      this.log.info(overlay ? 'overlay key from the cluster' : 'cluster tunnel key rotated', { key_id: k.key_id });
      this.emit(overlay ? 'overlay-key' : 'tunnel-key', k);
    } else {
      let msg: ClusterToWorker;
      try {
        msg = parseClusterToWorker(JSON.parse(payload.toString('utf8')));
      } catch (e) {
        return this.drop(topic, e instanceof RouteMessageError || e instanceof SyntaxError ? e.message : String(e));
      }
      if (msg.type === 'route_update') this.log.debug('route update received', { service_id: msg.route.service_id, instances: msg.route.instances.length });
      for (const l of this.routeListeners) l(msg);
    }
  }

  private drop(topic: string, error: string): void {
    this.counters.dropped++;
    this.log.warn('malformed message dropped', { topic, error });
  }

  /** Runs an ordered instance; an order for one already here only re-reports its state. */
  async deploy(order: DeployOrder): Promise<Instance> {
    const key = instanceKey(order.service_id, order.instance_n);
    const existing = this.instances.get(key);
    if (existing && existing.state !== 'UNDEPLOYED') {
      const t = existing.lifecycle.last;
      const st: JobStatus = { service_id: order.service_id, instance_n: order.instance_n, state: t.state, reason: t.reason, ts: t.ts };
      if (existing.attachment.ns_ip) st.ns_ip = existing.attachment.ns_ip;
      if (existing.attachment.ns_ip_v6) st.ns_ip_v6 = existing.attachment.ns_ip_v6;
      this.client?.publish(topics.job(this.workerId), encode('job', st), { qos: 1 });
      return existing;
    }
    this.counters.deploys++;
    const inst = this.track(new Instance(order, this.runtimes, this.net, this.log, this.backoff()));
    mkdirSync(this.sandbox.dir(key), { recursive: true });
    const f = join(this.sandbox.dir(key), ORDER_FILE);
    writeFileSync(`${f}.tmp`, JSON.stringify(order));
    renameSync(`${f}.tmp`, f);
    await inst.start();
    return inst;
  }

  async undeploy(serviceId: string, n: number, reason: string): Promise<void> {
    const key = instanceKey(serviceId, n);
    const inst = this.instances.get(key);
    this.counters.deletes++;
    if (!inst) {
      // Still acknowledge, so the cluster stops asking.
      this.client?.publish(topics.job(this.workerId), encode('job', { service_id: serviceId, instance_n: n, state: 'UNDEPLOYED', reason: `not on this worker (${reason})`, ts: Date.now() }), { qos: 1 });
      return;
    }
    try {
      await inst.close(reason);
    } catch (e) {
      this.log.error('undeploy failed', { instance: key, error: (e as Error).message });
    } finally {
      this.instances.delete(key);
    }
  }

  /** This worker's Vivaldi coordinate, once its net manager measures (set by net/for-engine.ts). */
  coordinate: (() => NetCoordinate | undefined) | undefined;

  heartbeatPayload(): Heartbeat {
    const cap = this.o.capacity ?? hostCapacity();
    let cpuUsed = 0;
    let memUsed = 0;
    const inventory = [];
    for (const i of this.instances.values()) {
      if (i.state === 'UNDEPLOYED') continue;
      const load = i.state === 'RUNNING' ? this.load.of(i.key) : { overloaded: false };
      inventory.push({
        service_id: i.order.service_id, instance_n: i.order.instance_n, state: i.state,
        ...(load.overloaded ? { overloaded: true, overload_reason: load.reason } : {}),
      });
      // Finished one-shots hold nothing until they are undeployed.
      if (i.state === 'COMPLETED' || (i.state === 'FAILED' && i.order.spec.one_shot)) continue;
      cpuUsed += i.order.spec.vcpus;
      memUsed += i.order.spec.memory;
    }
    let memFree = Math.max(0, cap.memory_mb - memUsed);
    if (!this.o.capacity) memFree = Math.min(memFree, hostFreeMemoryMb());
    const hb: Heartbeat = {
      ts: Date.now(),
      seq: ++this.seq,
      arch: hostArch(),
      virtualizations: this.virtualizations,
      cpu: { cores: cap.vcpus, free: Math.max(0, cap.vcpus - cpuUsed), usage_pct: this.cpu.usagePct() },
      memory_mb: { total: cap.memory_mb, free: memFree },
      instances: inventory,
    };
    if (this.o.location) hb.location = this.o.location;
    if (this.o.tunnelEndpoint) hb.tunnel_endpoint = this.o.tunnelEndpoint;
    const coord = this.coordinate?.();
    if (coord) hb.coord = { vec: [round3(coord.vec[0]), round3(coord.vec[1])], height: round3(coord.height), error: round3(coord.error) };
    return hb;
  }

  private heartbeat(): void {
    if (this.paused || !this.client?.connected) return;
    this.sampleLoad();
    this.counters.heartbeats++;
    this.client.publish(topics.information(this.workerId), encode('heartbeat', this.heartbeatPayload()), { qos: 0 });
  }

  private sampleLoad(): void {
    const running = new Map<string, CpuThrottle | undefined>();
    for (const i of this.instances.values()) if (i.state === 'RUNNING') running.set(i.key, this.sandbox.cgroup(i.key)?.cpuThrottle());
    this.load.sample(running, Date.now());
  }

  /** Stops (true) or resumes (false) heartbeats while everything else goes on: for failure drills. */
  pauseHeartbeats(paused: boolean): void {
    this.paused = paused;
  }

  /** The semantic layer's link to the cluster, over this worker's MQTT connection. */
  routeLink(): RouteLink {
    return {
      send: (msg: WorkerToCluster) => {
        const w = this.workerId;
        const c = this.client;
        if (!c) return;
        switch (msg.type) {
          case 'table_query':
            c.publish(topics.tableQueryRequest(w), JSON.stringify(msg), { qos: 1 });
            return;
          case 'interest_add':
            this.interest.add(msg.service_id);
            c.subscribe(topics.serviceUpdates(msg.service_id), { qos: 1 });
            c.publish(topics.interest(w), JSON.stringify(msg), { qos: 1 });
            return;
          case 'interest_remove':
            this.interest.delete(msg.service_id);
            c.unsubscribe(topics.serviceUpdates(msg.service_id));
            c.publish(topics.interest(w), JSON.stringify(msg), { qos: 1 });
            return;
          case 'coordinate_report':
            c.publish(topics.coordinates(w), JSON.stringify(msg), { qos: 0 });
            return;
        }
      },
      onMessage: (listener) => {
        this.routeListeners.add(listener);
        return () => this.routeListeners.delete(listener);
      },
    };
  }

  /**
   * Stops the daemon. By default instances keep running (a restarted daemon re-adopts them);
   * `undeploy: true` removes every instance and everything it had on the host.
   */
  async close(o: { undeploy?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    for (const i of this.instances.values()) {
      if (o.undeploy) await i.close('worker shut down').catch((e: Error) => this.log.error('undeploy failed', { instance: i.key, error: e.message }));
      else i.detachFromDaemon();
    }
    if (o.undeploy) this.instances.clear();
    if (this.client) await this.client.endAsync(true).catch(() => {});
    await this.net.close();
    await this.runtimes.close();
    removeDaemonMarker(this.workerId);
  }
}

function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}
