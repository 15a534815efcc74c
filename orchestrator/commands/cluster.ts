// `canopy cluster …`: the cluster orchestrator (API, MQTT broker, scheduling) until SIGTERM/SIGINT.
import type { Command } from 'commander';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cluster, type BrokerChoice } from '../cluster/cluster.ts';
import { startClusterApi } from '../cluster/api.ts';
import { portFlag } from './port-flag.ts';
import { readServerTls } from '../protocol/tls.ts';
import { metricsAccessFrom } from '../metrics-access.ts';
import { reloadByPidFile } from '../mqtt/mosquitto.ts';
import { keyLine } from '../client/revocation.ts';
import { openSession, withLogin } from '../client/session.ts';
import { fail } from '../client/terminal.ts';

interface Opts {
  name?: string;
  location: string;
  data: string;
  host: string;
  port: string;
  publicUrl?: string;
  root?: string;
  rootKey?: string;
  workerKey?: string;
  mqttHost: string;
  mqttPort: string;
  mqttPublicUrl?: string;
  mqttUrl?: string;
  mosquittoPidFile?: string;
  reportInterval: string;
  tlsCert?: string;
  tlsKey?: string;
  encryptPayload?: boolean;
  metricsToken?: string;
  closeHealth?: boolean;
}

/** The worker join key: given, or generated once, stored and printed. */
function workerKey(dir: string, given: string | undefined): string {
  if (given) return given;
  const f = join(dir, 'worker-join-key');
  if (existsSync(f)) return readFileSync(f, 'utf8').trim();
  const k = randomBytes(18).toString('base64url');
  mkdirSync(dir, { recursive: true });
  writeFileSync(f, `${k}\n`, { mode: 0o600 });
  process.stderr.write(`canopy cluster: worker join key (also in ${f}): ${k}\n`);
  return k;
}

export function register(program: Command): void {
  const cluster = program.command('cluster');
  // `canopy cluster revoke <name>`: through root, as an admin.
  cluster
    .command('revoke')
    .description("cut a cluster off now: root refuses its token and its name from then on")
    .argument('<name>', 'cluster name or id')
    .option('--root <url>', 'root API URL (default: CANOPY_ROOT, or the local deployment of `canopy up`)')
    .action(async (name: string, o: { root?: string }) => {
      try {
        const r = await withLogin(openSession({ root: o.root }), (c) => c.revokeCluster(name));
        const moved = r.instances_replaced ? `; ${r.instances_replaced} instance(s) it ran are being re-placed on the other clusters` : '';
        console.log(`revoked cluster ${r.revoked} (${r.cluster_id})${moved}${keyLine(r.overlay_key)}`);
      } catch (e) {
        fail('cluster revoke', e);
      }
    });
  cluster
    .description('run a cluster orchestrator (workers connect to it over MQTT)')
    .option('--name <name>', 'cluster name (required)')
    .option('--location <loc>', 'location sent to root: "lat,long,radius_km" or a place name', '0,0,0')
    .option('--data <dir>', 'state directory', './canopy-cluster')
    .option('--host <address>', 'API address to bind', '0.0.0.0')
    .option('--port <port>', 'API port', '10100')
    .option('--public-url <url>', 'API URL root and workers use (default http://<host>:<port>)')
    .option('--root <url>', 'root API URL, e.g. http://root:10000; root replicas as a comma-separated list (fails over)')
    .option('--root-key <key>', 'root\'s cluster join key (env CANOPY_CLUSTER_KEY)')
    .option('--worker-key <key>', 'join key for workers (env CANOPY_WORKER_KEY; generated if absent)')
    .option('--mqtt-host <address>', 'embedded broker address', '0.0.0.0')
    .option('--mqtt-port <port>', 'embedded broker port', '10003')
    .option('--mqtt-public-url <url>', 'broker URL handed to workers (default mqtt://<api host>:<mqtt port>)')
    .option('--mqtt-url <url>', 'use this external broker (Mosquitto) instead of the embedded one; mqtts://… is verified against --ca')
    .option('--mosquitto-pid-file <file>', 'with --mqtt-url: SIGHUP this Mosquitto after credential changes')
    .option('--tls-cert <file>', 'serve the API as https and the embedded broker as mqtts with this certificate (PEM; with --tls-key)')
    .option('--tls-key <file>', 'private key of --tls-cert (PEM)')
    .option('--metrics-token <token>', 'close /metrics: it then answers only Authorization: Bearer <token> (env CANOPY_METRICS_TOKEN; default: open)')
    .option('--close-health', 'close /api/health too: it then answers only the metrics token (env CANOPY_CLOSE_HEALTH=1)')
    .option('--report-interval <ms>', 'periodic report to root (changes are reported within 200 ms anyway); keep it below root\'s --cluster-silence', '5000')
    .option('--encrypt-payload', 'workers of this cluster encrypt what they send through the tunnel (AES-GCM with the cluster key; without it payloads are authenticated, not hidden); workers take it when they first register')
    .action(async (o: Opts) => {
      if (!o.name) fail('cluster', new Error("required option '--name <name>' not specified"));
      const name = o.name;
      const apiPort = portFlag(o.port, '--port');
      const reportIntervalMs = Number(o.reportInterval);
      if (!Number.isInteger(reportIntervalMs) || reportIntervalMs < 100 || reportIntervalMs > 3_600_000) {
        throw new Error(`--report-interval: must be 100-3600000 ms, got ${o.reportInterval}`);
      }
      const tls = readServerTls(o.tlsCert, o.tlsKey);
      const metricsAccess = metricsAccessFrom(o);
      const apiHost = o.host === '0.0.0.0' ? '127.0.0.1' : o.host;
      const publicUrl = o.publicUrl ?? `${tls ? 'https' : 'http'}://${apiHost}:${apiPort}`;
      const rootKey = o.rootKey ?? process.env.CANOPY_CLUSTER_KEY;
      if (o.root && !rootKey) throw new Error('--root needs --root-key or CANOPY_CLUSTER_KEY');
      const joinKey = workerKey(o.data, o.workerKey ?? process.env.CANOPY_WORKER_KEY);
      let mqtt: BrokerChoice;
      if (o.mqttUrl) {
        const pidFile = o.mosquittoPidFile;
        const reload = pidFile ? reloadByPidFile(pidFile, (m) => process.stderr.write(`canopy cluster: ${m}\n`)) : undefined;
        mqtt = { external: { url: o.mqttUrl, publicUrl: o.mqttPublicUrl, reload } };
        process.stderr.write(`canopy cluster: Mosquitto files are in ${join(o.data, 'mosquitto')} (password_file passwd, acl_file acl)\n`);
      } else {
        const mqttPort = portFlag(o.mqttPort, '--mqtt-port');
        mqtt = { embedded: { host: o.mqttHost, port: mqttPort, tls, publicUrl: o.mqttPublicUrl ?? `${tls ? 'mqtts' : 'mqtt'}://${new URL(publicUrl).hostname}:${mqttPort}` } };
      }
      const cluster = await Cluster.start({
        name, location: o.location, stateDir: o.data, apiUrl: publicUrl,
        root: o.root && rootKey ? { url: o.root, joinKey: rootKey } : undefined,
        workerJoinKey: joinKey, mqtt, reportIntervalMs, encryptPayload: o.encryptPayload === true,
      });
      const api = await startClusterApi(cluster, { host: o.host, port: apiPort, workerJoinKey: joinKey, tls, metricsAccess });
      const stop = (): void => {
        Promise.all([api.close(), cluster.close()]).then(() => process.exit(0), (err: unknown) => {
          process.stderr.write(`canopy cluster: stop failed: ${String(err)}\n`);
          process.exit(1);
        });
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
}
