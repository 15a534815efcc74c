// A Datapath on a real TUN device and tunnel UDP socket, pumped by libuv readiness: the one wiring
// the worker daemon (orchestrator/worker/net/net-manager.ts), netstack/standalone.ts (static table,
// the tunnel benchmark) and the semantic lab host (test/integration/semantic-datapath.ts) share, so a
// benchmark measures what the product runs. They differ in the table, the peer table's source, the
// keys, the probes, the logging and the AEAD implementation, so those stay with the caller.
import { execFileSync } from 'node:child_process';
import { TunDevice } from '../native/tun.ts';
import { UdpSocket } from '../native/udp.ts';
import { Readiness } from '../native/poll.ts';
import { schedYield } from '../native/libc.ts';
import { Datapath } from './datapath.ts';
import { TunnelCodec, type AeadName, type TunnelCodecOptions } from './tunnel.ts';
import { PeerTable, type PeerLookup } from './peers.ts';
import type { TranslationTable } from './table.ts';
import { placeDatapath, type Placement } from './placement.ts';
import { warmPacketCode } from './warm.ts';
import { DEFAULT_KEEP_WARM_MS, KEEP_WARM_IDLE_MS, KeepWarm } from './keep-warm.ts';
import { BUSY_POLL_MAX_US, BUSY_POLL_MIN_RATE, BusyPoll, DEFAULT_BUSY_POLL_US } from './busy-poll.ts';

/** One worker's link to the overlay: its TUN, its tunnel socket, its peers and keys. */
export interface TunDatapathConfig {
  selfId: number;
  tun: string;
  offload: boolean;
  listen: { host: string; port: number };
  /** Fixed peers (standalone, lab); the daemon passes its live peer table in the options instead. */
  peers?: Array<{ id: number; host: string; port: number }>;
  /** Key id → 64 hex characters, and the id to send with (unless the options build the codec options). */
  keys?: Record<string, string>;
  keyId?: number;
  encrypt?: boolean;
  aead?: AeadName;
  mtu: number;
  /** Largest UDP payload on the underlay (path MTU − IP − UDP). */
  maxDatagram: number;
  routes: string[];
  txqueuelen?: number;
  /** Pin the loop to this CPU and steer the TUN's receive processing to the others (netstack/placement.ts). */
  cpu?: number;
  /** Tick every this many ms while traffic flows, to stay warm between packets (netstack/keep-warm.ts); 0: off. */
  keepWarmMs?: number;
  /** Poll this long after the last packet while request/response traffic is dense (netstack/busy-poll.ts); 0: off. */
  busyPollUs?: number;
}

export interface TunDatapathOptions {
  table: TranslationTable;
  /** Codec options that are the caller's choice rather than the link's. */
  codec?: Pick<TunnelCodecOptions, 'aeadFactory'>;
  /** The peer table the codec admits by and the datapath sends to (default: one of cfg.peers). */
  peers?: PeerLookup;
  /**
   * Builds the codec's options from the link's part (default: cfg.keys, cfg.keyId, cfg.encrypt,
   * cfg.aead). The codec keeps the object it gets, so a keyring can hand one that follows it.
   */
  codecOptions?: (link: Pick<TunnelCodecOptions, 'selfId' | 'maxDatagram' | 'peers'>) => TunnelCodecOptions;
  /** Clamp the MSS of SYNs crossing the datapath to cfg.mtu. */
  clampMss: boolean;
  /** A pump threw: that packet is lost, the loop carries on. */
  onError: (e: unknown) => void;
}

export interface TunDatapath {
  datapath: Datapath;
  device: TunDevice;
  socket: UdpSocket;
  /** Where the loop runs, when cfg.cpu was given. */
  placement?: Placement;
  /** The last libuv poll status of the TUN and of the socket (0 = fine; else that side stopped). */
  pollStatus: () => { tun: number; socket: number };
  /** Keep-warm ticks so far (netstack/keep-warm.ts). */
  keepWarmTicks: () => number;
  /** Packets found by busy polling (wakeups that did not happen) and the time it polled (µs). */
  busyPoll: () => { caught: number; polledUs: number };
  /** Stops the pumps and closes the datapath (device, socket, AEAD contexts); idempotent. */
  close: () => void;
}

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * No qdisc on the TUN. The TUN never pushes back (a full ring drops, whatever the qdisc), so a qdisc
 * only adds an enqueue and a dequeue under a lock to every packet (~3 % CPU per GB, perf/RESULTS.md);
 * txqueuelen still sizes the ring.
 */
export function tunNoQueue(dev: string): void {
  execFileSync('tc', ['qdisc', 'replace', 'dev', dev, 'root', 'noqueue'], { stdio: ['ignore', 'ignore', 'pipe'] });
}

function hexKeys(keys: Record<string, string>): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  for (const [id, hex] of Object.entries(keys)) out.set(Number(id), Buffer.from(hex, 'hex'));
  return out;
}

/** Opens the TUN, brings it up with the MTU and routes, binds the socket and starts the pumps. */
export function openTunDatapath(cfg: TunDatapathConfig, opts: TunDatapathOptions): TunDatapath {
  const peers = opts.peers ?? new PeerTable((cfg.peers ?? []).map((p) => ({ id: p.id, workerId: String(p.id), endpoint: { host: p.host, port: p.port } })));
  const link = { selfId: cfg.selfId, maxDatagram: cfg.maxDatagram, peers };
  let codecOptions: TunnelCodecOptions;
  if (opts.codecOptions) codecOptions = opts.codecOptions(link);
  else if (cfg.keys && cfg.keyId !== undefined) {
    codecOptions = { ...link, keys: hexKeys(cfg.keys), keyId: cfg.keyId, encrypt: cfg.encrypt, aead: cfg.aead, ...opts.codec };
  } else throw new Error('tunnel datapath: no keys (cfg.keys and cfg.keyId, or a codecOptions builder)');
  const dev = new TunDevice(cfg.tun, { offload: cfg.offload });
  let sock: UdpSocket | undefined;
  let placement: Placement | undefined;
  try {
    ip(['link', 'set', 'dev', dev.name, 'mtu', String(cfg.mtu), 'txqueuelen', String(cfg.txqueuelen ?? 10000), 'up']);
    tunNoQueue(dev.name);
    for (const r of cfg.routes) ip([r.includes(':') ? '-6' : '-4', 'route', 'replace', r, 'dev', dev.name]);
    sock = new UdpSocket({ host: cfg.listen.host, port: cfg.listen.port, offload: cfg.offload });
    placement = cfg.cpu === undefined ? undefined : placeDatapath(dev.name, cfg.cpu);
  } catch (e) {
    sock?.close();
    dev.close();
    throw e;
  }
  const dp = new Datapath({
    device: dev,
    socket: sock,
    table: opts.table,
    codec: new TunnelCodec(codecOptions),
    peers,
    mtu: opts.clampMss ? cfg.mtu : undefined,
  });
  // A fresh datapath's stateless code is optimized before the first packet (netstack/warm.ts), once
  // the codec has accepted the options and before the pumps start.
  const somePeer = peers instanceof PeerTable ? peers.peerIds().next().value : cfg.peers?.[0]?.id;
  try {
    warmPacketCode(codecOptions, somePeer);
  } catch (e) {
    opts.onError(e);
  }
  // Each side once (a keep-warm tick, a busy poll); what they moved.
  const pumpBoth = (): number => {
    try {
      return dp.pumpDevice() + dp.pumpSocketAndReplies();
    } catch (e) {
      opts.onError(e);
      return 0;
    }
  };
  // CANOPY_KEEP_WARM_MS and CANOPY_BUSY_POLL_US override the configuration, for A/B measurements
  // (perf/latency.bench.ts).
  const envOr = (name: string, configured: number): number => {
    const v = process.env[name];
    return v !== undefined && v !== '' ? Number(v) : configured;
  };
  const warm = new KeepWarm({
    periodMs: envOr('CANOPY_KEEP_WARM_MS', cfg.keepWarmMs ?? DEFAULT_KEEP_WARM_MS),
    idleMs: KEEP_WARM_IDLE_MS,
    activity: () => dp.instancePackets(),
    // An empty pump of each side (one read that finds nothing) keeps the datapath's own code and
    // buffers warm too, not only the wake path: 438–539 µs at 5/s against 556–880 for an empty tick.
    tick: pumpBoth,
  });
  const busy = new BusyPoll({
    windowUs: envOr('CANOPY_BUSY_POLL_US', cfg.busyPollUs ?? DEFAULT_BUSY_POLL_US),
    minRate: BUSY_POLL_MIN_RATE,
    maxUs: BUSY_POLL_MAX_US,
    poll: pumpBoth,
    yieldCpu: schedYield,
  });
  const pump = (f: () => number) => (): void => {
    let moved = 0;
    try {
      moved = f();
    } catch (e) {
      // A packet must never take the daemon down.
      opts.onError(e);
    }
    busy.afterPump(moved);
    // After the pump (and the polling), so that the packets they carried count.
    warm.touch();
  };
  const rDev = new Readiness(dev.fd, pump(() => dp.pumpDevice()));
  const rSock = new Readiness(sock.fd, pump(() => dp.pumpSocketAndReplies()));
  let closed = false;
  return {
    datapath: dp,
    device: dev,
    socket: sock,
    placement,
    pollStatus: () => ({ tun: rDev.lastStatus, socket: rSock.lastStatus }),
    keepWarmTicks: () => warm.ticks,
    busyPoll: () => ({ caught: busy.caught, polledUs: Math.round(busy.polledUs) }),
    close: () => {
      if (closed) return;
      closed = true;
      warm.close();
      rDev.close();
      rSock.close();
      dp.close();
    },
  };
}
