// A worker datapath as its own process, with a static table: what the lab test and the tunnel
// benchmark run on each emulated host until the net manager drives the datapath itself.
//
//   node --import tsx netstack/standalone.ts '<json config>'     (see StandaloneConfig)
//
// It opens the TUN, brings it up with the given MTU and routes, binds the tunnel socket and runs the
// loop. Logs are JSON lines on stdout; SIGUSR1 prints {"msg":"stats",…}; SIGTERM/SIGINT close it.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { bestAead, nodeAead } from './aead.ts';
import type { Datapath } from './datapath.ts';
import { StaticTable, type StaticInstance, type StaticService } from './static-table.ts';
import { openTunDatapath, type TunDatapathConfig } from './tun-datapath.ts';

export interface StandaloneConfig extends TunDatapathConfig {
  instances: StaticInstance[];
  services: StaticService[];
}

function log(fields: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ ts: new Date().toISOString(), component: 'datapath', ...fields })}\n`);
}

export function startStandalone(cfg: StandaloneConfig): { close: () => void; datapath: Datapath; stats: () => Record<string, number> } {
  const t = openTunDatapath(cfg, {
    table: new StaticTable({ selfId: cfg.selfId, instances: cfg.instances, services: cfg.services }),
    codec: {
      // CANOPY_AEAD=node forces node:crypto (for comparison); OpenSSL through koffi otherwise.
      aeadFactory: process.env.CANOPY_AEAD === 'node' ? nodeAead : bestAead,
    },
    clampMss: true,
    onError: (e) => log({ level: 'error', msg: 'datapath error', error: String(e) }),
  });
  const { device: dev, socket: sock } = t;
  log({
    level: 'info', msg: 'datapath up', tun: dev.name, offloads: dev.offloads, vnet: dev.vnetHdr, gso: sock.gso,
    gro: sock.gro, sndbuf: sock.sndbuf, rcvbuf: sock.rcvbuf, port: sock.port, placement: t.placement,
  });
  const stats = (): Record<string, number> => {
    const bp = t.busyPoll();
    return { ...t.datapath.stats(), keep_warm_ticks: t.keepWarmTicks(), busy_poll_caught: bp.caught, busy_poll_us: bp.polledUs };
  };
  return { datapath: t.datapath, close: t.close, stats };
}

const isMain = isMainThread && process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, '/'));
if (isMain) {
  const raw = process.argv[2];
  if (!raw) {
    process.stderr.write('usage: standalone.ts <json config>\n');
    process.exit(2);
  }
  let cfg: StandaloneConfig;
  try {
    cfg = JSON.parse(raw) as StandaloneConfig;
  } catch (e) {
    process.stderr.write(`standalone: config is not JSON: ${String(e)}\n`);
    process.exit(2);
  }
  // CANOPY_DATAPATH_THREAD=1 runs the loop in a worker thread (the main thread then only relays
  // signals), to measure whether that layout pays on this machine (perf/RESULTS.md).
  if (process.env.CANOPY_DATAPATH_THREAD === '1') runThreaded(cfg);
  else runHere(cfg);
} else if (!isMainThread && (workerData as { standalone?: StandaloneConfig } | null)?.standalone) {
  const cfg = (workerData as { standalone: StandaloneConfig }).standalone;
  const s = startStandalone(cfg);
  startProbes(cfg, s.datapath);
  parentPort?.on('message', (msg: string) => {
    if (msg === 'stats') parentPort?.postMessage({ stats: s.stats() });
    if (msg === 'close') {
      s.close();
      parentPort?.postMessage({ closed: true });
    }
  });
}

function startProbes(cfg: StandaloneConfig, dp: Datapath): void {
  const probe = setInterval(() => {
    for (const p of cfg.peers ?? []) dp.probe(p.id);
  }, 1000);
  probe.unref();
  if (process.env.CANOPY_LOG_RTT === '1') {
    dp.onRtt((peer, ms) => log({ level: 'debug', msg: 'rtt', peer, ms: Math.round(ms * 1000) / 1000 }));
  }
}

function runThreaded(cfg: StandaloneConfig): void {
  // The thread loads this same TypeScript file, so it registers the tsx loader first.
  const boot = `import('tsx/esm/api').then((t) => { t.register(); return import(${JSON.stringify(import.meta.url)}); })`;
  const w = new Worker(boot, { eval: true, workerData: { standalone: cfg } });
  w.on('message', (msg: { stats?: Record<string, number>; closed?: boolean }) => {
    if (msg.stats) log({ level: 'info', msg: 'stats', stats: msg.stats });
    if (msg.closed) process.exit(0);
  });
  w.on('error', (e) => {
    log({ level: 'error', msg: 'datapath thread failed', error: String(e) });
    process.exit(1);
  });
  process.on('SIGUSR1', () => w.postMessage('stats'));
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      w.postMessage('stats');
      w.postMessage('close');
    });
  }
}

function runHere(cfg: StandaloneConfig): void {
  const s = startStandalone(cfg);
  const stats = () => log({ level: 'info', msg: 'stats', stats: s.stats() });
  process.on('SIGUSR1', stats);
  // CANOPY_DATAPATH_PROFILE=<file.cpuprofile>: a V8 CPU profile of the whole run, written at SIGTERM.
  const profileTo = process.env.CANOPY_DATAPATH_PROFILE;
  const session = profileTo ? new Session() : null;
  if (session) {
    session.connect();
    session.post('Profiler.enable', () => session.post('Profiler.start'));
  }
  const exit = () => {
    stats();
    s.close();
    process.exit(0);
  };
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      if (!session || !profileTo) return exit();
      session.post('Profiler.stop', (err, res) => {
        if (!err) writeFileSync(`${profileTo}.${cfg.selfId}.cpuprofile`, JSON.stringify(res.profile));
        exit();
      });
    });
  }
  startProbes(cfg, s.datapath);
}
