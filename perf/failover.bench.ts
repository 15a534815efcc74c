// Failover as SPEC §8 promises it (target ≤ 5 s, goal ≤ 2 s): a worker host fails (its daemon and
// instances SIGKILLed AND its lab link taken down, so nothing of it answers on the network) while a
// client on another worker keeps dialling the service's rr address. Per run, from the failure:
//   traffic_back_s  the client's first successful request through the rr address,
//   replaced_s      the replacement instance RUNNING (the cluster's own history timestamp),
//   route_pushed_s  the client's worker has the new route (its canopy_proxy_route_update_last_ms).
// Emulated hosts ctl (root, cluster), w1 (client), w2 and w3 (the server, pinned to either); runs
// alternate between w2 and w3: the failed host gets its link and its daemon back before the next run.
// Medians of `runs` (default 5) are printed.
//   npm run bench -- failover [runs=5]
import { Lab } from '../lab/lab.ts';
import { Deployment, poll, sweepWorker } from '../harness/e2e-harness.ts';
import { orSmoke } from './smoke.ts';

const RUNS = Number(process.argv[2] ?? orSmoke(5, 1));
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error(`runs must be a positive integer, got ${process.argv[2]}`);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

interface ClusterStatus {
  workers: Array<{ id: string; alive: boolean }>;
  instances: Array<{ service_id: string; instance_n: number; worker: string | null; state: string; history: Array<{ state: string; ts: number }> }>;
}

const lab = await Lab.create({ hosts: ['ctl', 'w1', 'w2', 'w3'], ipv6: false });
const d = new Deployment(lab, { workers: ['w1', 'w2', 'w3'] });
let finished = false;
const cleanUp = async (): Promise<void> => {
  if (finished) return;
  finished = true;
  await d.stop().catch((e: unknown) => process.stderr.write(`stop: ${String(e)}\n`));
  await lab.destroy();
};
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => void cleanUp().finally(() => process.exit(1)));
}

try {
  process.stderr.write('starting root, a cluster and three workers on emulated hosts…\n');
  await d.start();
  const { srv, cli, c0 } = await d.deployWebClient(['w2', 'w3'], 'w1');
  const rr = String((await d.service(srv.microserviceID)).rr_ip);
  const client = d.hostOfWorker(c0.worker_id!);
  const clientNs = d.netnsOf(c0.worker_id!, cli.microserviceID, 0);
  const url = `http://${rr}/`;
  const clusterStatus = (): Promise<ClusterStatus> => d.clusterStatus<ClusterStatus>();
  const lastPushMs = async (): Promise<number> => {
    const m = await client.execOk(['curl', '-sS', '-m', '3', 'http://127.0.0.1:10200/metrics']);
    return Number(/^canopy_proxy_route_update_last_ms (\d+)$/m.exec(m)?.[1] ?? 0);
  };
  const answers = async (): Promise<boolean> =>
    (await client.exec(['ip', 'netns', 'exec', clientNs, 'curl', '-s', '-m', '2', '-o', '/dev/null', '-f', url], { timeoutMs: 8000 })).code === 0;

  const traffic: number[] = [];
  const replaced: number[] = [];
  const pushed: number[] = [];
  for (let run = 1; run <= RUNS; run++) {
    await poll('the client reaches the server before the failure', answers, 30_000);
    const before = (await clusterStatus()).instances.find((i) => i.service_id === srv.microserviceID && i.state === 'RUNNING');
    if (!before?.worker) throw new Error('the server instance is not RUNNING before the failure');
    const victim = before.worker;
    const host = d.hostOfWorker(victim);
    // The client's retry loop runs inside its namespace and stamps its first success itself, so the
    // figure does not include this process's polling. Each curl is a new flow (a new source port) and
    // gives up after 0.5 s (a SYN to a dead instance is not answered): the figure's resolution.
    const loop = client.exec(['ip', 'netns', 'exec', clientNs, 'sh', '-c',
      `sleep 0.3; until curl -s -m 0.5 -o /dev/null -f ${url}; do sleep 0.02; done; date +%s%3N`], { timeoutMs: 90_000 });
    await new Promise((r) => setTimeout(r, 300));

    // The host fails: its link goes down and everything it ran dies at once.
    const failedAt = Date.now();
    await host.execOk(['ip', 'link', 'set', 'eth0', 'down']);
    process.kill(-(d.procs.get(host.name)!.pid as number), 'SIGKILL');
    sweepWorker(victim);

    const backOut = await loop;
    if (backOut.code !== 0) throw new Error(`the client's retry loop failed: ${backOut.stderr}`);
    const backAt = Number(backOut.stdout.trim());
    const inst = await poll('the replacement RUNNING at the cluster', async () => (await clusterStatus()).instances
      .find((i) => i.service_id === srv.microserviceID && i.state === 'RUNNING' && i.worker !== victim), 30_000, 100);
    const runningAt = [...inst.history].reverse().find((h) => h.state === 'RUNNING')!.ts;
    // The cluster pushes the route as it marks the instance RUNNING; the client's worker stamps its receipt.
    const pushAt = await poll('the client\'s worker has the new route', async () => {
      const t = await lastPushMs();
      return t >= runningAt ? t : undefined;
    }, 30_000, 100);

    const s = (t: number): number => +((t - failedAt) / 1000).toFixed(3);
    traffic.push(s(backAt));
    replaced.push(s(runningAt));
    pushed.push(s(pushAt));
    process.stderr.write(`run ${run}: ${victim} failed; traffic back ${s(backAt)} s, replacement RUNNING on ${inst.worker} ${s(runningAt)} s, route on the client's worker ${s(pushAt)} s\n`);

    // The failed host comes back (link, daemon) before the next run, so the server can move back.
    await host.execOk(['ip', 'link', 'set', 'eth0', 'up']);
    d.startWorker(host.name);
    await poll(`${victim} alive at the cluster again`, async () =>
      (await clusterStatus()).workers.find((w) => w.id === victim)?.alive === true, 60_000, 200);
  }

  const t = median(traffic), r = median(replaced), p = median(pushed);
  console.log(`failover (worker host killed and cut off), medians of ${RUNS}: traffic back ${t.toFixed(2)} s, replacement RUNNING ${r.toFixed(2)} s, route pushed ${p.toFixed(2)} s (SPEC target 5 s, goal 2 s)`);
  console.log(JSON.stringify({ bench: 'failover', traffic_back_s: +t.toFixed(3), replaced_s: +r.toFixed(3), route_pushed_s: +p.toFixed(3), runs: RUNS }));
} catch (e) {
  for (const n of ['cluster', 'w1', 'w2', 'w3']) process.stderr.write(`--- ${n} ---\n${d.output(n).slice(-3000)}\n`);
  throw e;
} finally {
  await cleanUp();
}
