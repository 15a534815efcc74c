// `canopy worker …`: one worker daemon (node engine and net manager) until SIGTERM/SIGINT. Instances
// keep running when it stops; the next start re-adopts them. --no-network runs instances with loopback
// only (no bridge, TUN or DNS), for tests and hosts where the overlay is not wanted.
import type { Command } from 'commander';
import { availableParallelism, hostname } from 'node:os';
import { NodeEngine } from '../worker/node-engine.ts';
import { settleGc } from '../worker/settle-gc.ts';
import { loadOrCreateApiToken, startWorkerApi } from '../worker/api.ts';
import { metricsAccessFrom } from '../metrics-access.ts';
import { keyLine } from '../client/revocation.ts';
import { parseUpstream } from '../../dns/forwarder.ts';
import { parseCidr } from '../descriptor/ip.ts';
import { netManagerFor, defaultTunnelEndpoint } from '../worker/net/for-engine.ts';
import type { NetManager } from '../worker/net/net-manager.ts';
import { containerRuntimeFor } from '../worker/container/for-engine.ts';
import { DEFAULT_IMAGE_CACHE_MB } from '../worker/container/defaults.ts';
import { readServerTls } from '../protocol/tls.ts';
import { openSession, withLogin } from '../client/session.ts';
import { fail } from '../client/terminal.ts';
import { MAX_CPU_LATENCY_US, holdCpuLatency, type CpuLatencyRequest } from '../../native/cpu-latency.ts';
import { DEFAULT_KEEP_WARM_MS } from '../../netstack/keep-warm.ts';
import { DEFAULT_BUSY_POLL_US } from '../../netstack/busy-poll.ts';

interface Opts {
  name: string;
  cluster?: string;
  key?: string;
  data: string;
  location?: string;
  apiHost: string;
  apiPort: string;
  tunnelEndpoint?: string;
  vcpus?: string;
  memory?: string;
  undeployOnExit?: boolean;
  network: boolean;
  tunnelHost: string;
  tunnelPort: string;
  pathMtu: string;
  offload: boolean;
  datapathCpu?: string;
  cpuLatencyUs?: string;
  keepWarmMs: string;
  busyPollUs: string;
  dnsUpstream?: string[];
  dnsPort: string;
  bridge: string;
  tun: string;
  overlay: string[];
  serviceRange: string[];
  containerd?: string;
  registryMirror: string[];
  imageCacheMb: string;
  imageDir?: string;
  pullVia: string;
  tlsCert?: string;
  tlsKey?: string;
  metricsToken?: string;
  closeHealth?: boolean;
  registryMirrorsOnly?: boolean;
}

const collect = (v: string, all: string[]): string[] => [...all, v];

function intOpt(v: string, name: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer in ${min}..${max}: ${v}`);
  return n;
}

function pullRoute(v: string): 'ctr' | 'api' {
  if (v !== 'ctr' && v !== 'api') throw new Error(`--pull-via must be ctr or api: ${v}`);
  return v;
}

const IFNAME = /^[a-zA-Z0-9_-]{1,15}$/;

function cidrOpt(v: string, name: string): string {
  try {
    return parseCidr(v).text;
  } catch (e) {
    throw new Error(`${name}: ${(e as Error).message}`);
  }
}

export function register(program: Command): void {
  const worker = program.command('worker');
  // `canopy worker revoke <name>`: through root, as an admin (the daemon below has no revoke of its own).
  worker
    .command('revoke')
    .description('cut a worker off now: credentials and MQTT session end, it may not register again, its instances are re-placed')
    .argument('<name>', 'worker name')
    .option('--in <cluster>', 'its cluster (needed when root has several)')
    .option('--root <url>', 'root API URL (default: CANOPY_ROOT, or the local deployment of `canopy up`)')
    .action(async (name: string, o: { in?: string; root?: string }) => {
      try {
        const r = await withLogin(openSession({ root: o.root }), (c) => c.revokeWorker(name, o.in));
        console.log(`revoked worker ${r.revoked} of cluster ${r.cluster}${keyLine(r.overlay_key)}`);
      } catch (e) {
        fail('worker revoke', e);
      }
    });
  worker
    .description('run a worker daemon (node engine) that joins a cluster')
    .option('--name <name>', 'worker name, unique in the cluster', hostname().toLowerCase().replace(/[^a-z0-9-]/g, '-'))
    .option('--cluster <url>', 'cluster API URL, e.g. https://cluster:10100 (verified against --ca); required')
    .option('--key <key>', 'the cluster\'s worker join key (env CANOPY_WORKER_KEY)')
    .option('--data <dir>', 'state directory (credentials, instance records, logs)', './canopy-worker')
    .option('--location <lat,long>', 'where this worker is (for geo constraints)')
    .option('--api-host <address>', 'local API address', '127.0.0.1')
    .option('--api-port <port>', 'local API port (status, logs, metrics); 0 picks one', '10200')
    .option('--tls-cert <file>', 'serve the local API as https with this certificate (PEM; with --tls-key)')
    .option('--tls-key <file>', 'private key of --tls-cert (PEM)')
    .option('--metrics-token <token>', 'close /metrics: it then answers only Authorization: Bearer <token> (env CANOPY_METRICS_TOKEN; default: open)')
    .option('--close-health', 'close /api/health too: it then answers only the metrics token (env CANOPY_CLOSE_HEALTH=1)')
    .option('--tunnel-endpoint <host:port>', 'tunnel socket address other workers reach (default: this host\'s address towards the cluster)')
    .option('--no-network', 'no bridge, TUN, tunnel or DNS: instances get loopback only')
    .option('--tunnel-host <address>', 'local address of the tunnel socket', '0.0.0.0')
    .option('--tunnel-port <port>', 'UDP port of the tunnel socket', '50103')
    .option('--path-mtu <bytes>', 'MTU of the underlay path between workers (overlay MTU = this − tunnel overhead)', '1500')
    .option('--no-offload', 'no GSO/GRO on the TUN and tunnel socket')
    .option('--datapath-cpu <n>', 'pin the datapath to this CPU and steer the TUN\'s receive processing to the others (default: unpinned)')
    .option('--cpu-latency-us <us>', 'hold a CPU wakeup-latency request while running (/dev/cpu_dma_latency): 0 keeps idle CPUs polling instead of halting, which halves a round trip through the overlay on a VM and spins every idle CPU of the host (default: none)')
    .option('--keep-warm-ms <ms>', 'while traffic flows through the overlay, wake the datapath this often so that a lone request finds it warm (a 5/s round trip on the lab VM: ~720 → ~450 µs; stops 10 s after the last instance packet; 0 = off)', String(DEFAULT_KEEP_WARM_MS))
    .option('--busy-poll-us <us>', 'while request/response traffic through the overlay is dense (over 5 000 datapath wakeups a second), poll this long for the next packet instead of sleeping, yielding the CPU while nothing comes (TCP request/response on the lab VM: ~2.7× the rate, the datapath up to a CPU while it lasts; 0 = off)', String(DEFAULT_BUSY_POLL_US))
    .option('--dns-upstream <address...>', 'resolvers for names outside the service zone (default: /etc/resolv.conf)')
    .option('--dns-port <port>', 'port of the service DNS server on the bridge', '53')
    .option('--bridge <name>', 'bridge interface of the instances', 'canopy0')
    .option('--tun <name>', 'TUN interface of the overlay', 'canopytun0')
    .option('--overlay <cidr...>', 'prefixes routed into the TUN (root\'s overlay and service ranges)', ['10.16.0.0/12', 'fdc0::/16'])
    .option('--service-range <cidr...>', 'service address ranges (root --service-v4/--service-v6)', ['10.30.0.0/16', 'fdc0:30::/32'])
    .option('--vcpus <n>', 'CPUs to offer (default: all)')
    .option('--memory <mb>', 'memory to offer in MB (default: all)')
    .option('--undeploy-on-exit', 'remove every instance when stopping')
    .option('--containerd <socket>', 'an operator\'s containerd socket (default: the worker starts its own under --data)')
    .option('--registry-mirror <host=url>', 'pull images of a registry through a mirror, e.g. docker.io=http://10.0.0.5:5000 (repeatable)', collect, [])
    .option('--pull-via <route>', 'how images are pulled: ctr (containerd\'s `ctr images pull`) or api (containerd\'s gRPC API directly)', 'ctr')
    .option('--image-dir <dir>', 'image archives (docker save or OCI, *.tar) imported at start (default: <data>/images)')
    .option('--image-cache-mb <mb>', 'disk for container images; above it, images no instance uses are removed, least recently used first (0 = no limit)', String(DEFAULT_IMAGE_CACHE_MB))
    .option('--registry-mirrors-only', 'pull only through --registry-mirror and from loopback registries, never from a registry\'s own address (air-gapped sites)')
    .action(async (o: Opts) => {
      if (!o.cluster) fail('worker', new Error("required option '--cluster <url>' not specified"));
      const clusterUrl = o.cluster;
      const tls = readServerTls(o.tlsCert, o.tlsKey);
      const metricsAccess = metricsAccessFrom(o);
      const key = o.key ?? process.env.CANOPY_WORKER_KEY;
      if (!key) throw new Error('--key or CANOPY_WORKER_KEY is required (printed by `canopy cluster` at first start)');
      let capacity;
      if (o.vcpus !== undefined || o.memory !== undefined) {
        const vcpus = Number(o.vcpus ?? 0);
        const memory_mb = Number(o.memory ?? 0);
        if (!(vcpus > 0) || !(memory_mb > 0)) throw new Error('--vcpus and --memory must both be positive numbers');
        capacity = { vcpus, memory_mb };
      }
      // Host-wide policy, so only on request; the kernel withdraws it when this process ends, however it ends.
      let cpuLatency: CpuLatencyRequest | undefined;
      if (o.cpuLatencyUs !== undefined) cpuLatency = holdCpuLatency(intOpt(o.cpuLatencyUs, '--cpu-latency-us', 0, MAX_CPU_LATENCY_US));
      let net: NetManager | undefined;
      let tunnelEndpoint = o.tunnelEndpoint;
      const tunnelPort = intOpt(o.tunnelPort, '--tunnel-port', 1, 65535);
      if (o.network) {
        if (!IFNAME.test(o.bridge) || !IFNAME.test(o.tun)) throw new Error('--bridge and --tun must be interface names (1-15 of [a-zA-Z0-9_-])');
        tunnelEndpoint ??= await defaultTunnelEndpoint(clusterUrl, tunnelPort);
      }
      const netOpts = o.network ? {
        tunnelHost: o.tunnelHost, tunnelPort, pathMtu: intOpt(o.pathMtu, '--path-mtu', 576, 65535), offload: o.offload,
        datapathCpu: o.datapathCpu === undefined ? undefined : intOpt(o.datapathCpu, '--datapath-cpu', 0, availableParallelism() - 1),
        keepWarmMs: intOpt(o.keepWarmMs, '--keep-warm-ms', 0, 10_000),
        busyPollUs: intOpt(o.busyPollUs, '--busy-poll-us', 0, 1000),
        dnsUpstreams: o.dnsUpstream?.map(parseUpstream), dnsPort: intOpt(o.dnsPort, '--dns-port', 1, 65535), bridge: o.bridge, tun: o.tun,
        overlay: o.overlay.map((c) => cidrOpt(c, '--overlay')), servicePrefixes: o.serviceRange.map((c) => cidrOpt(c, '--service-range')),
      } : undefined;
      const runtimes = await containerRuntimeFor({
        dataDir: o.data, mirrors: o.registryMirror, mirrorsOnly: Boolean(o.registryMirrorsOnly), imageCacheMb: intOpt(o.imageCacheMb, '--image-cache-mb', 0, 1 << 30),
        ...(o.imageDir ? { imageDir: o.imageDir } : {}), pullVia: pullRoute(o.pullVia), ...(o.containerd ? { socket: o.containerd } : {}),
      });
      const engine = await NodeEngine.start({
        runtimes,
        name: o.name, clusterUrl, joinKey: key, stateDir: o.data, location: o.location,
        tunnelEndpoint, capacity,
        ...(netOpts ? { net: (e: NodeEngine) => (net = netManagerFor(e, netOpts)) } : {}),
      });
      // A network that cannot come up (port 53 taken, no TUN) stops the daemon with the reason.
      let stopping = false;
      net?.ready().catch(async (err: unknown) => {
        if (stopping) return;
        process.stderr.write(`canopy worker: network failed: ${String((err as Error).message ?? err)}\n`);
        await engine.close().catch(() => {});
        process.exit(1);
      });
      // After a burst of deploys and undeploys, one full GC once instances have been quiet for 5 s.
      const settle = settleGc({ quietMs: 5000, onCollect: (ms) => engine.log.debug('collected after instance changes', { gc_ms: Math.round(ms * 10) / 10, rss_mb: Math.round(process.memoryUsage.rss() / 104857.6) / 10 }) });
      engine.on('transition', () => settle.touch());
      if (cpuLatency) engine.log.info('holding a CPU wakeup-latency request', { cpu_latency_us: cpuLatency.us });
      const api = await startWorkerApi(engine, { host: o.apiHost, port: Number(o.apiPort), token: loadOrCreateApiToken(o.data), tls, metricsAccess });
      const stop = (): void => {
        stopping = true;
        settle.close();
        cpuLatency?.close();
        Promise.all([api.close(), engine.close({ undeploy: Boolean(o.undeployOnExit) })]).then(() => process.exit(0), (err: unknown) => {
          process.stderr.write(`canopy worker: stop failed: ${String(err)}\n`);
          process.exit(1);
        });
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
}
