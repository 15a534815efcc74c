// `npm run bench -- scale [workers]`: one cluster (embedded broker, real credentials and ACL, liveness
// sweep) against simulated workers that only heartbeat (1/s each, staggered), no data plane.
// The cluster runs in its own process so its CPU and RSS can be read from /proc. It is measured at
// 1 000 workers and at the full count in the same run; the ratio shows how the cost grows. Then the
// peer: the same load on a cluster using an external Mosquitto 2 (cluster and broker CPU reported
// apart). `--no-peer` skips it. Then TLS: the embedded broker serving mqtts with a certificate from
// the deployment's own CA, and the simulated workers verifying it (the cost of TLS on the busiest
// control link, issue 20); `--no-tls` skips it.
// Last line: {"bench":"scale","workers":10000,"cluster_cpu_pct":…,"cluster_rss_mb":…,…}
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { freePort } from '../harness/loopback.ts';
import { readFileSync, mkdtempSync, rmSync, chmodSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { orSmoke } from './smoke.ts';

const JOIN_KEY = 'scale-bench';

if (process.argv.includes('--role=cluster')) {
  await runCluster();
} else {
  await main();
}

async function runCluster(): Promise<void> {
  const { Cluster } = await import('../orchestrator/cluster/cluster.ts');
  const { startClusterApi } = await import('../orchestrator/cluster/api.ts');
  const { jsonLogger } = await import('../orchestrator/protocol/log.ts');
  const { CredentialStore } = await import('../orchestrator/mqtt/credentials.ts');
  const { keepMosquittoFiles, mosquittoConf } = await import('../orchestrator/mqtt/mosquitto.ts');
  const dir = process.argv.find((a) => a.startsWith('--dir='))!.slice(6);
  const useMosquitto = process.argv.includes('--broker=mosquitto');
  let mosquitto: ChildProcess | undefined;
  const tlsDir = process.argv.find((a) => a.startsWith('--tls='))?.slice(6);
  const tls = tlsDir ? { cert: readFileSync(join(tlsDir, 'broker.pem'), 'utf8'), key: readFileSync(join(tlsDir, 'broker-key.pem'), 'utf8') } : undefined;
  let mqtt: import('../orchestrator/cluster/cluster.ts').BrokerChoice = { embedded: { host: '127.0.0.1', port: 0, tls } };
  let mqttPort = 0;
  if (useMosquitto) {
    // Mosquitto drops to its own user: the files must be readable by it.
    chmodSync(dir, 0o755);
    const files = keepMosquittoFiles(new CredentialStore(), join(dir, 'mosquitto'));
    mqttPort = await freePort();
    writeFileSync(join(dir, 'mosquitto.conf'), `${mosquittoConf(files, '127.0.0.1', mqttPort)}max_queued_messages 1000\n`);
    mosquitto = spawn('mosquitto', ['-c', join(dir, 'mosquitto.conf')], { stdio: 'ignore' });
    await waitListening(mqttPort);
    const m = mosquitto;
    mqtt = { external: { url: `mqtt://127.0.0.1:${mqttPort}`, reload: () => m.kill('SIGHUP') } };
  }
  const cluster = await Cluster.start({
    name: 'scale', location: '0,0,0', stateDir: dir, apiUrl: 'http://127.0.0.1:0', workerJoinKey: JOIN_KEY,
    mqtt, log: jsonLogger({ component: 'cluster' }, 'error'),
  });
  const api = await startClusterApi(cluster, { host: '127.0.0.1', port: 0, workerJoinKey: JOIN_KEY });
  const apiPort = (api.server.address() as { port: number }).port;
  if (!useMosquitto) mqttPort = Number(new URL(cluster.mqttUrl).port);
  process.stdout.write(`READY ${JSON.stringify({ api: apiPort, mqtt: mqttPort, broker_pid: mosquitto?.pid ?? null })}\n`);
  const stop = (): void => {
    void Promise.all([api.close(), cluster.close()]).then(() => {
      mosquitto?.kill('SIGTERM');
      process.exit(0);
    });
  };
  process.once('SIGTERM', stop);
}

async function waitListening(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1', () => { c.destroy(); resolve(true); });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`nothing listening on ${port}`);
}

// ---- simulator ----

function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

function str(s: string): Buffer {
  const b = Buffer.from(s);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

function connectPacket(user: string, password: string): Buffer {
  const body = Buffer.concat([str('MQTT'), Buffer.from([4, 0xc2, 0, 60]), str(user), str(user), str(password)]);
  return Buffer.concat([Buffer.from([0x10, ...varint(body.length)]), body]);
}

function publishPacket(topic: string, payload: string): Buffer {
  const body = Buffer.concat([str(topic), Buffer.from(payload)]);
  return Buffer.concat([Buffer.from([0x30, ...varint(body.length)]), body]);
}

interface SimWorker {
  id: string;
  password: string;
  sock?: Socket;
  seq: number;
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15)
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

async function metric(apiPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${apiPort}/metrics`)).text();
  const m = new RegExp(`^canopy_cluster_${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

async function pool<T>(items: T[], concurrency: number, f: (t: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (i < items.length) await f(items[i++]!);
  }));
}

/** Connects one simulated worker; a loaded machine may reset a few connections, so retry those. */
async function openWorker(w: SimWorker, port: number, ca?: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await openOnce(w, port, ca);
    } catch (e) {
      if (attempt >= 5) throw e;
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
}

/** With `ca`, over TLS verifying the broker's certificate against it, as a real worker does. */
function openOnce(w: SimWorker, port: number, ca?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock: Socket = ca ? tlsConnect({ port, host: '127.0.0.1', ca, rejectUnauthorized: true }) : connect(port, '127.0.0.1');
    sock.setNoDelay(true);
    let acked = false;
    sock.once(ca ? 'secureConnect' : 'connect', () => sock.write(connectPacket(w.id, w.password)));
    sock.on('data', (d) => {
      if (acked) return;
      acked = true;
      if (d[0] !== 0x20 || d[3] !== 0) return reject(new Error(`${w.id}: CONNACK ${d.toString('hex')}`));
      w.sock = sock;
      resolve();
    });
    sock.on('error', (e) => {
      if (!acked) reject(e);
      else if (w.sock === sock) w.sock = undefined;
    });
    sock.on('close', () => {
      if (!acked) reject(new Error(`${w.id}: closed before CONNACK`));
      else if (w.sock === sock) w.sock = undefined;
    });
  });
}

interface StepResult {
  cpu_pct: number;
  rss_mb: number;
  heartbeats_per_s: number;
  alive: number;
  broker_cpu_pct?: number;
  broker_rss_mb?: number;
}

/** One cluster process (and broker), `total` simulated workers, measured at each of `steps`. */
async function scenario(total: number, steps: number[], broker: 'embedded' | 'mosquitto', tls?: { dir: string; ca: string }): Promise<Record<number, StepResult>> {
  const label = tls ? `${broker}+tls` : broker;
  const dir = mkdtempSync(join(tmpdir(), 'canopy-scale-'));
  const self = fileURLToPath(import.meta.url);
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', self, '--role=cluster', `--dir=${dir}`, `--broker=${broker}`, ...(tls ? [`--tls=${tls.dir}`] : [])], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const workers: SimWorker[] = [];
  let hbTimer: NodeJS.Timeout | undefined;
  let stopWatching = (): void => {};
  try {
    const ready = await new Promise<{ api: number; mqtt: number; broker_pid: number | null }>((resolve, reject) => {
      const rl = createInterface({ input: child.stdout! });
      rl.on('line', (l) => { if (l.startsWith('READY ')) resolve(JSON.parse(l.slice(6)) as { api: number; mqtt: number; broker_pid: number | null }); });
      child.once('exit', (c) => reject(new Error(`cluster exited with ${c}`)));
    });
    const pid = child.pid!;
    const early = (code: number | null, signal: string | null): void => console.error(`[${label}] cluster process exited early: code ${code}, signal ${signal}`);
    child.once('exit', early);
    stopWatching = () => child.off('exit', early);
    console.error(`[${label}] cluster pid ${pid}: api ${ready.api}, mqtt ${ready.mqtt}; registering ${total} workers`);
    const t0 = Date.now();
    const ids = Array.from({ length: total }, (_, i) => `sim-${i}`);
    await pool(ids, 32, async (id) => {
      const res = await fetch(`http://127.0.0.1:${ready.api}/api/workers/register`, {
        method: 'POST', headers: { authorization: `Bearer ${JOIN_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: id }),
      });
      if (!res.ok) throw new Error(`register ${id}: HTTP ${res.status}`);
      const a = (await res.json()) as { mqtt: { password: string } };
      workers.push({ id, password: a.mqtt.password, seq: 0 });
    });
    console.error(`[${label}] registered ${total} in ${Date.now() - t0} ms`);
    // Let an external broker finish reloading its password file.
    if (broker === 'mosquitto') await new Promise((r) => setTimeout(r, 1000));

    // Heartbeats: worker i owns the 10 ms slot i % 100 of every second; slots missed because the
    // timer ran late are sent on the next tick, so every connected worker beats once a second.
    const buckets: SimWorker[][] = Array.from({ length: 100 }, () => []);
    workers.forEach((w, i) => buckets[i % 100]!.push(w));
    let lastSlot = Math.floor(Date.now() / 10);
    hbTimer = setInterval(() => {
      const now = Date.now();
      const slot = Math.floor(now / 10);
      for (let k = lastSlot + 1; k <= slot; k++) {
        for (const w of buckets[k % 100]!) {
          // A broker that stops reading must not make the simulator buffer without bound.
          if (!w.sock || w.sock.writableLength > 65_536) continue;
          const payload = `{"ts":${now},"seq":${++w.seq},"arch":"amd64","virtualizations":["process"],"cpu":{"cores":4,"free":4,"usage_pct":3},"memory_mb":{"total":8192,"free":8192},"instances":[]}`;
          w.sock.write(publishPacket(`nodes/${w.id}/information`, payload));
        }
      }
      lastSlot = slot;
    }, 10);

    const results: Record<number, StepResult> = {};
    let connected = 0;
    for (const step of steps) {
      const t1 = Date.now();
      await pool(workers.slice(connected, step), 100, (w) => openWorker(w, ready.mqtt, tls?.ca));
      connected = step;
      console.error(`[${label}] ${step} workers connected (${Date.now() - t1} ms); warming up ${orSmoke(5, 0.5)} s`);
      await new Promise((r) => setTimeout(r, orSmoke(5000, 500)));
      const c0 = cpuTicks(pid);
      const b0 = ready.broker_pid ? cpuTicks(ready.broker_pid) : 0;
      const h0 = await metric(ready.api, 'heartbeats_total');
      const w0 = Date.now();
      await new Promise((r) => setTimeout(r, orSmoke(10_000, 1000)));
      const secs = (Date.now() - w0) / 1000;
      const cpu = ((cpuTicks(pid) - c0) / 100 / secs) * 100;
      const hbs = ((await metric(ready.api, 'heartbeats_total')) - h0) / secs;
      const alive = await metric(ready.api, 'workers_alive');
      const r: StepResult = { cpu_pct: Number(cpu.toFixed(1)), rss_mb: Number(rssMb(pid).toFixed(1)), heartbeats_per_s: Math.round(hbs), alive };
      if (ready.broker_pid) {
        r.broker_cpu_pct = Number((((cpuTicks(ready.broker_pid) - b0) / 100 / secs) * 100).toFixed(1));
        r.broker_rss_mb = Number(rssMb(ready.broker_pid).toFixed(1));
      }
      results[step] = r;
      console.error(`[${label}] ${step} workers: cluster CPU ${r.cpu_pct} % of one core, RSS ${r.rss_mb} MB, ${r.heartbeats_per_s} heartbeats/s processed, ${alive} alive`
        + (r.broker_cpu_pct !== undefined ? `; Mosquitto CPU ${r.broker_cpu_pct} %, RSS ${r.broker_rss_mb} MB` : ''));
    }
    return results;
  } finally {
    stopWatching();
    if (hbTimer) clearInterval(hbTimer);
    for (const w of workers) w.sock?.destroy();
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const arg = process.argv.slice(2).find((a) => !a.startsWith('--'));
  const total = Number(arg ?? orSmoke(10_000, 20));
  if (!Number.isInteger(total) || total < 1) throw new Error(`workers must be a positive integer, got ${arg}`);
  const steps = [...new Set([Math.min(1000, total), total])];
  const embedded = await scenario(total, steps, 'embedded');
  const full = embedded[total]!;
  const small = embedded[steps[0]!]!;
  let peer: StepResult | undefined;
  if (!process.argv.includes('--no-peer')) {
    let hasMosquitto = true;
    try {
      execFileSync('mosquitto', ['-h'], { stdio: 'ignore' });
    } catch (e) {
      hasMosquitto = (e as NodeJS.ErrnoException).code !== 'ENOENT';
    }
    if (hasMosquitto) peer = (await scenario(total, [total], 'mosquitto'))[total];
    else console.error('mosquitto not installed: no peer run');
  }
  let withTls: StepResult | undefined;
  if (!process.argv.includes('--no-tls')) {
    const { createCa, issueCert } = await import('../orchestrator/tls/certs.ts');
    const dir = mkdtempSync(join(tmpdir(), 'canopy-scale-tls-'));
    try {
      const ca = createCa('scale bench CA');
      const broker = issueCert(ca, { name: 'broker', sans: ['127.0.0.1', 'localhost'] });
      writeFileSync(join(dir, 'broker.pem'), broker.cert);
      writeFileSync(join(dir, 'broker-key.pem'), broker.key);
      withTls = (await scenario(total, [total], 'embedded', { dir, ca: ca.cert }))[total];
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  console.log(JSON.stringify({
    bench: 'scale',
    workers: total,
    cluster_cpu_pct: full.cpu_pct,
    cluster_rss_mb: full.rss_mb,
    heartbeats_per_s: full.heartbeats_per_s,
    workers_alive: full.alive,
    at_1000: small,
    cpu_ratio_vs_1000: steps.length > 1 ? Number((full.cpu_pct / Math.max(small.cpu_pct, 0.1)).toFixed(2)) : 1,
    mosquitto_peer: peer ?? null,
    cpu_ratio_embedded_vs_mosquitto_total: peer ? Number((full.cpu_pct / Math.max(peer.cpu_pct + (peer.broker_cpu_pct ?? 0), 0.1)).toFixed(2)) : null,
    tls: withTls ?? null,
    cpu_ratio_tls_vs_plain: withTls ? Number((withTls.cpu_pct / Math.max(full.cpu_pct, 0.1)).toFixed(2)) : null,
  }));
}
