// The worker's net manager (SPEC §5.1): the bridge with the worker subnet's first address, one veth
// pair per instance, the TUN with the overlay routes, the batched datapath with the semantic table,
// the tunnel to the other workers, the service DNS server and the nftables table. It implements the
// node engine's InstanceNetwork seam. The datapath runs in the daemon's own event loop (see
// docs/decisions.md, "Where the datapath runs").
import type { NetCoordinate } from '../../protocol/network.ts';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { Datapath } from '../../../netstack/datapath.ts';
import { innerGsoMaxFor, innerMtuFor, maxDatagramFor } from '../../../netstack/tunnel.ts';
import { openTunDatapath, type TunDatapath } from '../../../netstack/tun-datapath.ts';
import { PeerTable } from '../../../netstack/peers.ts';
import type { Endpoint } from '../../../native/io.ts';
import { SemanticTable } from '../../../proxy/semantic-table.ts';
import { MeasuredRtt } from '../../../proxy/rtt.ts';
import type { ClusterToWorker, RouteLink, ServiceRoute } from '../../../proxy/route-messages.ts';
import { ServiceDnsServer } from '../../../dns/server.ts';
import type { Upstream } from '../../../dns/forwarder.ts';
import { writeNetnsResolvConf, removeNetnsResolvConf } from '../../../dns/resolv-conf.ts';
import type { Logger } from '../../protocol/log.ts';
import type { AttachRequest, Attachment, InstanceNetwork } from '../net-seam.ts';
import { AddressBook, type HostAddresses } from './address-book.ts';
import { parsePortMappings, type PortMapping } from './port-mappings.ts';
import { renderRuleset } from './nft-ruleset.ts';
import { tunnelIdForSubnet, type TunnelKey } from '../../protocol/tunnel-identity.ts';
import { TunnelKeyring } from './tunnel-keyring.ts';
import { ip, ipBatch, nft, linkExists, netnsAddresses, netnsMac } from './commands.ts';

export interface WorkerSubnet {
  v4: string;
  v6: string | null;
}

export interface NetManagerOptions {
  workerId: string;
  /** Files of the net manager go to `<stateDir>/net/`. */
  stateDir: string;
  link: RouteLink;
  tunnelKey: TunnelKey;
  /**
   * Root's overlay key (shared by every cluster's workers): accepted next to the cluster's key and
   * used for sending once known, so workers of other clusters can authenticate our datagrams.
   */
  overlayKey?: TunnelKey;
  /** The namespace of an instance key (for detaching instances this daemon never attached). */
  netnsOf: (key: string) => string;
  /** Local address of the tunnel socket (default 0.0.0.0). */
  tunnelHost?: string;
  tunnelPort?: number;
  /** MTU of the underlay path between workers (default 1500). */
  pathMtu?: number;
  /** GSO/GRO on the TUN and the tunnel socket (default true; falls back when the kernel refuses). */
  offload?: boolean;
  /** Where DNS names outside the zone go (default: the host's resolv.conf). */
  dnsUpstreams?: Upstream[];
  dnsPort?: number;
  bridge?: string;
  tun?: string;
  nftTable?: string;
  /** Prefixes routed into the TUN (SPEC §3). */
  overlay?: string[];
  /** Service ranges (what is worth a route query). */
  servicePrefixes?: string[];
  /**
   * Pin the datapath (this daemon's main thread, where the loop runs) to this CPU and steer the TUN's
   * receive processing to the other CPUs (netstack/placement.ts). Default: left to the scheduler.
   */
  datapathCpu?: number;
  /** Wake the datapath this often while traffic flows (netstack/keep-warm.ts; default 20, 0 off). */
  keepWarmMs?: number;
  /** Poll this long after a packet while request/response traffic is dense (netstack/busy-poll.ts; default 100, 0 off). */
  busyPollUs?: number;
  /** Seconds between RTT probes to each admitted peer. */
  probeMs?: number;
  log: Logger;
}

interface Attached {
  netns: string;
  hostIf: string;
  addrs: HostAddresses;
  ports: PortMapping[];
}

interface Plumbing {
  book: AddressBook;
  gateway: HostAddresses;
  mtu: number;
  /** gso_max_size of instance veths (innerGsoMaxFor). */
  gsoMax: number;
  selfId: number;
  tunnel: TunDatapath;
  table: SemanticTable;
  dns: ServiceDnsServer;
  probeTimer: NodeJS.Timeout;
  unsubscribe: () => void;
}

/** The bridge's MAC: locally administered, unicast, and the same for a worker across restarts (so
 *  re-adopted instances keep a valid neighbour entry for their gateway). */
export function bridgeMac(workerId: string): string {
  const h = createHash('sha1').update(`bridge:${workerId}`).digest();
  return ['02', ...[...h.subarray(0, 5)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/**
 * An instance's MAC: locally administered, unicast, from its IPv4 namespace address (unique on the
 * worker's bridge while the instance holds it; a new instance at a reused address gets the same MAC).
 */
export function instanceMac(v4: string): string {
  return ['06', 'ca', ...v4.split('.').map((b) => Number(b).toString(16).padStart(2, '0'))].join(':');
}

/** Host-side veth name of an instance (≤ 15 characters, stable across restarts). */
export function vethName(key: string, side: 'host' | 'peer' = 'host'): string {
  return `${side === 'host' ? 'cv' : 'cp'}${createHash('sha1').update(key).digest('hex').slice(0, 11)}`;
}

function parseEndpoint(s: string): Endpoint | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(s);
  if (!m) return undefined;
  return { host: (m[1] ?? m[2]) as string, port: Number(m[3]) };
}

export class NetManager implements InstanceNetwork {
  readonly bridge: string;
  readonly tun: string;
  readonly nftTable: string;
  private readonly o: NetManagerOptions;
  private readonly log: Logger;
  private p: Plumbing | undefined;
  private up: Promise<void>;
  private resolveUp!: () => void;
  private rejectUp!: (e: Error) => void;
  private subnet: WorkerSubnet | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly attached = new Map<string, Attached>();
  /** Tunnel id → worker and endpoint: admitted by the cluster's peer list, or named in a route.
   *  The codec, the datapath, the semantic table and the RTT probes all read this one table. */
  private readonly peers = new PeerTable();
  private readonly keyring: TunnelKeyring;
  private readonly tableListeners = new Set<(m: ClusterToWorker) => void>();
  /** The datapath shares the daemon's event loop: its delay is what heartbeats and the API feel. */
  private readonly loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  private closed = false;

  constructor(o: NetManagerOptions) {
    this.o = o;
    this.log = o.log.child({ component: 'net' });
    this.bridge = o.bridge ?? 'canopy0';
    this.tun = o.tun ?? 'canopytun0';
    this.nftTable = o.nftTable ?? 'canopy';
    this.keyring = new TunnelKeyring(o.tunnelKey);
    if (o.overlayKey) this.setOverlayKey(o.overlayKey);
    this.up = new Promise<void>((res, rej) => {
      this.resolveUp = res;
      this.rejectUp = rej;
    });
    // An attach before the subnet is known waits; one after a failed bring-up sees the reason.
    this.up.catch(() => {});
    this.loopDelay.enable();
  }

  /** The worker's subnet (from registration or nodes/<id>/net/subnet): brings the plumbing up once. */
  setSubnet(s: WorkerSubnet): Promise<void> {
    if (this.subnet) {
      if (this.subnet.v4 !== s.v4) this.log.warn('worker subnet changed while running: restart the worker to use it', { was: this.subnet.v4, now: s.v4 });
      return this.up;
    }
    this.subnet = s;
    this.serial(() => this.bringUp(s)).then(() => this.resolveUp(), (e: Error) => {
      this.log.error('network bring-up failed', { error: e.message });
      this.rejectUp(e);
    });
    return this.up;
  }

  /**
   * Root's overlay key, at start, learned later or rotated after a revocation: the tunnel accepts it
   * from now on and sends with it, without a restart (the codec looks keys up per datagram). The
   * cluster's own key stays accepted, for workers of this cluster that have not heard of the overlay
   * key yet; an overlay key it replaces is retired (tunnel-keyring.ts).
   */
  setOverlayKey(k: TunnelKey): void {
    const outcome = this.keyring.setOverlay(k);
    if (outcome === 'added' || outcome === 'rotated') this.log.info(outcome === 'added' ? 'tunnel uses the overlay key' : 'overlay key rotated', { key_id: k.key_id, accepted: this.keyring.acceptedKeyIds(), retired: this.keyring.retiredKeyIds() });
    else if (outcome === 'same-id-as-other-key') this.log.warn('overlay key ignored: it has the key id of the cluster key', { key_id: k.key_id });
  }

  /** The cluster's key, rotated after a revocation: the old one is retired at once. */
  setClusterKey(k: TunnelKey): void {
    const outcome = this.keyring.setCluster(k);
    if (outcome === 'rotated' || outcome === 'added') this.log.info('cluster tunnel key rotated', { key_id: k.key_id, accepted: this.keyring.acceptedKeyIds(), retired: this.keyring.retiredKeyIds() });
    else if (outcome === 'same-id-as-other-key') this.log.warn('cluster key ignored: it has the key id of the overlay key', { key_id: k.key_id });
  }

  /** Resolves when bridge, TUN, datapath and DNS are up (rejects if bring-up failed). */
  /** This worker's Vivaldi coordinate (for its heartbeat); undefined until the network is up. */
  coordinate(): NetCoordinate | undefined {
    return this.p?.table.estimator.self.coordinate();
  }

  ready(): Promise<void> {
    return this.up;
  }

  get table(): SemanticTable | undefined {
    return this.p?.table;
  }

  get datapath(): Datapath | undefined {
    return this.p?.tunnel.datapath;
  }

  get gatewayAddresses(): HostAddresses | undefined {
    return this.p?.gateway;
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const r = this.queue.then(f, f);
    this.queue = r.catch(() => {});
    return r;
  }

  private async bringUp(s: WorkerSubnet): Promise<void> {
    const o = this.o;
    const book = new AddressBook(join(o.stateDir, 'net', 'addresses.json'), s.v4, s.v6);
    const gateway = book.gateway();
    const tunnelHost = o.tunnelHost ?? '0.0.0.0';
    const underlay = tunnelHost.includes(':') ? 6 : 4;
    const pathMtu = o.pathMtu ?? 1500;
    const mtu = innerMtuFor(pathMtu, underlay);
    const gsoMax = innerGsoMaxFor(maxDatagramFor(pathMtu, underlay), underlay);
    const selfId = tunnelIdForSubnet(s.v4);

    for (const [file, v] of [['/proc/sys/net/ipv4/ip_forward', '1'], ['/proc/sys/net/ipv6/conf/all/forwarding', '1']] as const) {
      writeFileSync(file, v);
    }
    if (!(await linkExists(this.bridge))) await ip(['link', 'add', this.bridge, 'type', 'bridge']);
    await ipBatch([
      // A bridge without a MAC of its own takes the lowest of its ports' MACs and changes it as
      // instances come and go. Instances keep the gateway's old MAC in their neighbour cache, and once
      // that port is gone their frames reach nobody: every flow through the gateway dies until the
      // entry is re-resolved, many seconds later. A set address is kept by the bridge for good.
      `link set ${this.bridge} address ${bridgeMac(o.workerId)}`,
      `link set ${this.bridge} mtu ${mtu} up`,
      `addr replace ${gateway.v4}/${book.v4.prefix} dev ${this.bridge}`,
      ...(gateway.v6 && book.v6 ? [`addr replace ${gateway.v6}/${book.v6.prefix} dev ${this.bridge} nodad`] : []),
    ]);

    const rtt = new MeasuredRtt();
    const unsubscribe = o.link.onMessage((m) => this.fromCluster(m));
    const table = new SemanticTable({
      workerId: o.workerId,
      link: {
        send: (m) => o.link.send(m),
        onMessage: (l) => {
          this.tableListeners.add(l);
          return () => this.tableListeners.delete(l);
        },
      },
      rtt,
      servicePrefixes: o.servicePrefixes,
      peerOf: (w) => {
        if (w === o.workerId) return selfId;
        const id = this.peers.idOf(w);
        if (id === undefined) this.log.warn('route names a worker without a tunnel id', { worker: w });
        return id ?? 0;
      },
      // Route changes reach the worker's log at info (when a caller can reach a new instance), the
      // rest at debug.
      log: ({ level, msg, ...r }) => (level === 'info' ? this.log.info : this.log.debug).call(this.log, String(msg ?? 'semantic table'), r),
    });

    let tunnel: TunDatapath;
    try {
      // The same wiring as the tunnel benchmark's datapath (netstack/standalone.ts).
      tunnel = openTunDatapath({
        selfId, tun: this.tun, offload: o.offload ?? true,
        listen: { host: tunnelHost, port: o.tunnelPort ?? 50103 },
        mtu, maxDatagram: maxDatagramFor(pathMtu, underlay),
        routes: o.overlay ?? ['10.16.0.0/12', 'fdc0::/16'],
        cpu: o.datapathCpu, keepWarmMs: o.keepWarmMs, busyPollUs: o.busyPollUs,
      }, {
        table, peers: this.peers, clampMss: true,
        codecOptions: (link) => this.keyring.codecOptions(link),
        // A packet never takes the daemon down.
        onError: (e) => this.log.error('datapath error', { error: String(e) }),
      });
    } catch (e) {
      table.close();
      unsubscribe();
      throw e;
    }
    const { datapath, device: dev, socket: sock, placement } = tunnel;
    datapath.onRtt((peer, ms) => {
      const w = this.peers.get(peer)?.workerId;
      if (w) rtt.record(w, ms);
    });
    const probeTimer = setInterval(() => {
      for (const id of this.peers.peerIds()) if (id !== selfId) datapath.probe(id);
    }, o.probeMs ?? 1000);
    probeTimer.unref();

    const dns = new ServiceDnsServer({
      listen: [{ address: gateway.v4, port: o.dnsPort }, ...(gateway.v6 ? [{ address: gateway.v6, port: o.dnsPort }] : [])],
      resolver: table, upstreams: o.dnsUpstreams,
      // Warnings (an unreachable upstream) reach the worker's log at their level; the rest is debug.
      log: ({ level, msg, ...r }) => (level === 'warn' ? this.log.warn : level === 'error' ? this.log.error : this.log.debug)
        .call(this.log, String(msg ?? 'dns'), r),
    });
    try {
      await dns.start();
    } catch (e) {
      clearInterval(probeTimer);
      tunnel.close();
      table.close();
      unsubscribe();
      throw new Error(`service DNS could not start on ${gateway.v4}: ${(e as Error).message}`);
    }
    this.p = { book, gateway, mtu, gsoMax, selfId, tunnel, table, dns, probeTimer, unsubscribe };
    await this.applyNft();
    this.log.info('network up', {
      bridge: this.bridge, gateway: gateway.v4, gateway_v6: gateway.v6, tun: dev.name, mtu, tunnel_id: selfId,
      tunnel_port: sock.port, offloads: dev.offloads, gso: sock.gso, gro: sock.gro,
      ...(placement ? { datapath_cpu: placement.cpu, tun_rx_cpus: placement.steered.join(',') } : {}),
    });
    if (placement?.steerError) this.log.warn('TUN receive not steered off the datapath CPU', { error: placement.steerError });
  }

  /** Learns tunnel ids and endpoints from the cluster's messages before the table sees them. */
  private fromCluster(m: ClusterToWorker): void {
    try {
      if (m.type === 'peers') {
        const admitted = [];
        for (const e of m.entries) {
          const endpoint = parseEndpoint(e.tunnel_endpoint);
          if (endpoint) admitted.push({ id: e.tunnel_id, workerId: e.worker_id, endpoint });
        }
        this.peers.admit(admitted);
        this.log.debug('tunnel peers', { peers: m.entries.length });
        return;
      }
      const route: ServiceRoute | null = m.type === 'table_result' ? m.route : m.type === 'route_update' ? m.route : null;
      for (const i of route?.instances ?? []) {
        // A route without a tunnel id (a source without a tunnel) names a worker the peer list knows.
        const id = i.tunnel_id ?? this.peers.idOf(i.worker_id);
        if (id !== undefined) this.peers.learn(i.worker_id, id, parseEndpoint(i.tunnel_endpoint));
      }
    } catch (e) {
      this.log.warn('route message not understood by the net manager', { type: m.type, error: (e as Error).message });
    }
    for (const l of this.tableListeners) l(m);
  }

  private async applyNft(): Promise<void> {
    const p = this.p;
    const s = this.subnet;
    if (!p || !s) return;
    const text = renderRuleset({
      table: this.nftTable, bridge: this.bridge, tun: this.tun, subnetV4: p.book.v4.text, subnetV6: p.book.v6?.text ?? null,
      targets: [...this.attached.values()].filter((a) => a.ports.length > 0).map((a) => ({ ns_ip: a.addrs.v4, ns_ip_v6: a.addrs.v6, ports: a.ports })),
    });
    await nft(text);
  }

  async attach(req: AttachRequest): Promise<Attachment> {
    if (this.closed) throw new Error('network is closed');
    const ports = parsePortMappings(req.port);
    await Promise.race([
      this.up,
      new Promise((_, rej) => setTimeout(() => rej(new Error('the worker has no subnet yet (cluster not registered with root?)')), 30_000).unref()),
    ]);
    return this.serial(async () => {
      const p = this.p;
      if (!p) throw new Error('network is not up');
      const addrs = p.book.take(req.key);
      const hostIf = vethName(req.key);
      // The resolver config is plain files: written while the links are made.
      const dns = writeNetnsResolvConf(req.netns, {
        nameservers: [p.gateway.v4, ...(p.gateway.v6 ? [p.gateway.v6] : [])],
        app: req.name.app, appns: req.name.appns, svcns: req.name.svcns,
      });
      dns.catch(() => {});
      // Each `ip` is a process start (a few ms on a busy host): a fresh attach takes three rounds,
      // the two looks at what is there side by side, then one batch on each side of the veth.
      const [have, hostIfThere] = await Promise.all([netnsAddresses(req.netns, 'eth0').catch(() => [] as string[]), linkExists(hostIf)]);
      // The instance's MAC is pinned on the bridge: a namespace address is reused after an undeploy,
      // and a stale neighbour entry would send the new instance's traffic to the old one's MAC (seen
      // as an rr address that never answers); pinning also spares every new instance an ARP round.
      const pin = (mac: string): string[] => [
        `neigh replace ${addrs.v4} lladdr ${mac} dev ${this.bridge} nud permanent`,
        ...(addrs.v6 ? [`neigh replace ${addrs.v6} lladdr ${mac} dev ${this.bridge} nud permanent`] : []),
      ];
      if (have.includes(addrs.v4) && hostIfThere) {
        // Re-adopted (daemon restart) or restarted in place: keep the link (and the MAC it has), make sure it is ours.
        const mac = await netnsMac(req.netns, 'eth0');
        await ipBatch([`link set ${hostIf} master ${this.bridge} mtu ${p.mtu} up`, ...pin(mac)]);
      } else {
        if (hostIfThere) await ip(['link', 'del', hostIf]);
        if (have.length > 0) await ip(['-n', req.netns, 'link', 'del', 'eth0']).catch(() => {});
        const peerIf = vethName(req.key, 'peer');
        // The MAC follows from the address (as Docker's does), so it is known before the link exists.
        const mac = instanceMac(addrs.v4);
        await ipBatch([
          // gso_max_size: the instance's TCP builds super-packets whose tunnel batch fits one GSO send.
          `link add ${hostIf} mtu ${p.mtu} gso_max_size ${p.gsoMax} type veth peer name ${peerIf} address ${mac} mtu ${p.mtu} gso_max_size ${p.gsoMax} netns ${req.netns}`,
          `link set ${hostIf} master ${this.bridge} up`,
          ...pin(mac),
        ]);
        await ipBatch([
          `link set ${peerIf} name eth0`,
          'link set eth0 up',
          `addr add ${addrs.v4}/${p.book.v4.prefix} dev eth0`,
          ...(addrs.v6 && p.book.v6 ? [`addr add ${addrs.v6}/${p.book.v6.prefix} dev eth0 nodad`] : []),
          `route replace default via ${p.gateway.v4} dev eth0`,
          ...(addrs.v6 && p.gateway.v6 ? [`route replace default via ${p.gateway.v6} dev eth0`] : []),
        ], req.netns);
      }
      await dns;
      p.table.removeLocalInstance(addrs.v4);
      p.table.addLocalInstance({
        ns_ip: addrs.v4, ns_ip_v6: addrs.v6, instance_ip: req.instance_ip ?? null, instance_ip_v6: req.instance_ip_v6 ?? null,
        service_id: req.service_id, n: req.instance_n,
      });
      const had = this.attached.get(req.key);
      this.attached.set(req.key, { netns: req.netns, hostIf, addrs, ports });
      if (ports.length > 0 || (had?.ports.length ?? 0) > 0) await this.applyNft();
      this.log.info('instance attached', { instance: req.key, ns_ip: addrs.v4, ns_ip_v6: addrs.v6, ports: req.port ?? null });
      const a: Attachment = { ns_ip: addrs.v4 };
      if (addrs.v6) a.ns_ip_v6 = addrs.v6;
      return a;
    });
  }

  async detach(key: string): Promise<void> {
    await this.serial(async () => {
      const a = this.attached.get(key);
      this.attached.delete(key);
      const hostIf = vethName(key);
      if (await linkExists(hostIf)) await ip(['link', 'del', hostIf]).catch((e: Error) => this.log.warn('could not delete veth', { instance: key, error: e.message }));
      await removeNetnsResolvConf(a?.netns ?? this.o.netnsOf(key)).catch(() => {});
      const p = this.p;
      if (p) {
        const addrs = a?.addrs ?? (p.book.has(key) ? p.book.take(key) : undefined);
        if (addrs) {
          p.table.removeLocalInstance(addrs.v4);
          const dels = [addrs.v4, ...(addrs.v6 ? [addrs.v6] : [])].map((x) => `neigh del ${x} dev ${this.bridge}`);
          await ipBatch(dels).catch(() => {}); // already gone with the bridge, or never pinned
        }
        p.book.release(key);
        if (a && a.ports.length > 0) await this.applyNft();
      }
      if (a) this.log.info('instance detached', { instance: key });
    });
  }

  /** Prometheus text of the datapath, the semantic table and the DNS server. */
  metrics(): string {
    const p = this.p;
    if (!p) return '';
    const dp = Object.entries(p.tunnel.datapath.stats()).map(([k, v]) => `canopy_datapath_${k} ${v}`).join('\n');
    const ms = (ns: number): number => Math.round(ns / 1e4) / 100;
    const loop = [
      '# HELP canopy_worker_event_loop_delay_ms event loop delay of the daemon (datapath, control and API share it), since start',
      '# TYPE canopy_worker_event_loop_delay_ms gauge',
      `canopy_worker_event_loop_delay_ms{quantile="0.5"} ${ms(this.loopDelay.percentile(50))}`,
      `canopy_worker_event_loop_delay_ms{quantile="0.99"} ${ms(this.loopDelay.percentile(99))}`,
      `canopy_worker_event_loop_delay_ms{quantile="1"} ${ms(this.loopDelay.max)}`,
    ].join('\n');
    // A libuv poll error on the TUN or the socket (0 = none): the loop would stop reading that side.
    const status = p.tunnel.pollStatus();
    const bp = p.tunnel.busyPoll();
    const poll = `canopy_datapath_poll_status{fd="tun"} ${status.tun}\ncanopy_datapath_poll_status{fd="socket"} ${status.socket}\ncanopy_datapath_keep_warm_ticks ${p.tunnel.keepWarmTicks()}\ncanopy_datapath_busy_poll_caught ${bp.caught}\ncanopy_datapath_busy_poll_us ${bp.polledUs}`;
    return `${dp}\n${poll}\ncanopy_tunnel_peers ${this.peers.size}\ncanopy_tunnel_send_key_id ${this.keyring.sendKeyId}\n${loop}\n${p.table.metrics()}${p.dns.metrics()}`;
  }

  /** Tears down bridge, TUN, nftables table and DNS. Instances' veths stay with running instances. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.loopDelay.disable();
    this.rejectUp(new Error('network closed'));
    await this.serial(async () => {
      const p = this.p;
      this.p = undefined;
      if (p) {
        clearInterval(p.probeTimer);
        p.unsubscribe();
        p.dns.close();
        p.tunnel.close();
        p.table.close();
      }
      await nft(`add table inet ${this.nftTable}\ndelete table inet ${this.nftTable}\n`).catch((e: Error) => this.log.warn('could not remove the nftables table', { error: e.message }));
      if (await linkExists(this.bridge)) await ip(['link', 'del', this.bridge]).catch((e: Error) => this.log.warn('could not remove the bridge', { error: e.message }));
    });
  }
}
