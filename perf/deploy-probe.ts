// What the deploy and container benchmarks share: a web service on one worker and a process "prober"
// instance on the other, and the prober's view of the web service's rr address (first answer, answers
// now). Both measure "REST call → first answer through the overlay" the same way, so their figures
// compare.
import { spawn, spawnSync } from 'node:child_process';
import type { RootClient, ServiceInfo } from '../orchestrator/client/root-client.ts';
import { watchInstances } from '../orchestrator/client/watch.ts';
import { workerStatus } from '../orchestrator/client/worker-api.ts';
import type { DeploymentState } from '../orchestrator/client/deployment-state.ts';

type Worker = DeploymentState['workers'][0];

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/**
 * Runs a curl loop in `netns` until `url` answers 2xx; resolves with the wall clock (ms) of success.
 * Until an instance exists its rr address holds or drops the SYN (no RST), so each try gives up
 * connecting after 0.1 s: with a 1 s limit the first answer is only known to the next whole second.
 */
export function firstAnswer(netns: string, url: string, timeoutS = 60): Promise<number> {
  const script = `end=$(( $(date +%s) + ${timeoutS} )); until curl -s --connect-timeout 0.1 -m 1 -o /dev/null -f ${url}; do [ $(date +%s) -ge $end ] && exit 1; sleep 0.02; done; date +%s%N`;
  return new Promise((resolve, reject) => {
    const p = spawn('ip', ['netns', 'exec', netns, 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.once('exit', (code) => (code === 0 ? resolve(Number(out.trim()) / 1e6) : reject(new Error(`no answer from ${url} within ${timeoutS} s`))));
  });
}

export function answersNow(netns: string, url: string): boolean {
  return spawnSync('ip', ['netns', 'exec', netns, 'curl', '-s', '-m', '1', '-o', '/dev/null', '-f', url]).status === 0;
}

export interface InstanceHistory {
  service_id: string;
  instance_n: number;
  history: { state: string; ts: number }[];
}

export async function workerHistory(w: Worker): Promise<InstanceHistory[]> {
  return (await workerStatus<{ instances: InstanceHistory[] }>(w)).instances;
}

export interface WebAndProber {
  web: ServiceInfo;
  prober: ServiceInfo;
  /** The prober instance's network namespace (canopy-<worker>-<service id>-<n>). */
  probeNs: string;
  /** The web service's rr address, as the prober asks it. */
  url: string;
}

/**
 * Registers `web` (pinned to `webWorker`) and a sleeping process prober (pinned to `probeWorker`) as
 * one application, and starts the prober only: each run then adds web instances itself.
 */
export async function webAndProber(c: RootClient, namespace: string, desc: string, web: Record<string, unknown>, webWorker: Worker, probeWorker: Worker): Promise<WebAndProber> {
  const sla = {
    sla_version: 'v2.0', customerID: 'Admin',
    applications: [{
      applicationID: '', application_name: 'bench', application_namespace: namespace, application_desc: desc,
      microservices: [
        { microserviceID: '', microservice_name: 'web', microservice_namespace: 'b', ...web, constraints: [{ type: 'direct', node: webWorker.name }] },
        { microserviceID: '', microservice_name: 'prober', microservice_namespace: 'b', virtualization: 'process', cmd: ['sleep', '1000000'],
          memory: 16, vcpus: 0.1, constraints: [{ type: 'direct', node: probeWorker.name }] },
      ],
    }],
  };
  const created = await c.createApplications(JSON.stringify(sla), false);
  const webSvc = created.services.find((s) => s.microservice_name === 'web') as ServiceInfo;
  const prober = created.services.find((s) => s.microservice_name === 'prober') as ServiceInfo;
  await c.deployInstance(prober.microserviceID);
  const ok = await watchInstances(c, [{ serviceId: prober.microserviceID, label: 'prober', instance: 0 }], { timeoutMs: 60_000, onTransition: () => {} });
  if (!ok.ok) throw new Error(`prober: ${ok.state} ${ok.reason}`);
  return { web: webSvc, prober, probeNs: `canopy-${probeWorker.name}-${prober.microserviceID}-0`, url: `http://${webSvc.rr_ip}/` };
}

export interface TimedDeploy {
  instance_n: number;
  /** Wall clock (ms) of the REST call that added the instance. */
  t0: number;
  /** REST call → first answer through the rr address, in seconds. */
  firstAnswerS: number;
  /** When the web worker saw the instance RUNNING (its own clock, the same machine), if it did. */
  runningAt: number | undefined;
}

/**
 * One measured run: waits until the rr address no longer answers (the previous instance is gone),
 * starts the prober's curl loop, adds one web instance through root and times its first answer.
 */
export async function timeDeploy(c: RootClient, p: WebAndProber, webWorker: Worker, timeoutS = 60): Promise<TimedDeploy> {
  while (answersNow(p.probeNs, p.url)) await sleep(200);
  const answered = firstAnswer(p.probeNs, p.url, timeoutS);
  const t0 = Date.now();
  const inst = await c.deployInstance(p.web.microserviceID);
  const t1 = await answered;
  const onWorker = (await workerHistory(webWorker)).find((x) => x.service_id === p.web.microserviceID && x.instance_n === inst.instance_n);
  return { instance_n: inst.instance_n, t0, firstAnswerS: (t1 - t0) / 1000, runningAt: onWorker?.history.find((h) => h.state === 'RUNNING')?.ts };
}
