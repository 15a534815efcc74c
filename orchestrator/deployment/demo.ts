// The demo of `canopy up`: a web server and a client that calls it as `closest.web`; success is the
// client's own log showing HTTP 200 answers. The descriptor,
// demo.sla.json, is the same web server and client as test/fixtures/sla/process-web-client.json.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiCallError, type RootClient } from '../client/root-client.ts';
import { watchInstances } from '../client/watch.ts';
import type { DeploymentState } from '../client/deployment-state.ts';

export const DEMO_SLA = join(import.meta.dirname, 'demo.sla.json');

export interface DemoResult {
  ok: boolean;
  /** The client's last log lines. */
  lines: string[];
  why: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * With two workers or more, pins web to the first and client to the second (a `direct` constraint),
 * so the demo's requests cross the tunnel between workers instead of staying on one.
 */
export function spreadAcrossWorkers(sla: string, s: DeploymentState): string {
  if (s.workers.length < 2) return sla;
  const d = JSON.parse(sla) as { applications: { microservices: { microservice_name: string; constraints?: unknown[] }[] }[] };
  const node: Record<string, string> = { web: s.workers[0]!.name, client: s.workers[1]!.name };
  for (const a of d.applications) {
    for (const m of a.microservices) {
      const w = node[m.microservice_name];
      if (w) m.constraints = [...(m.constraints ?? []), { type: 'direct', node: w }];
    }
  }
  return JSON.stringify(d);
}

export async function runDemo(c: RootClient, s: DeploymentState, say: (line: string) => void, o: { checkSeconds?: number } = {}): Promise<DemoResult> {
  say(`demo: deploying ${DEMO_SLA.replace(`${process.cwd()}/`, '')} (web: python3 http.server; client: curl http://closest.web/ every second)`);
  try {
    await c.createApplications(spreadAcrossWorkers(readFileSync(DEMO_SLA, 'utf8'), s), true);
  } catch (e) {
    if (!(e instanceof ApiCallError && e.status === 409)) throw e;
    say('demo: webapp.demo is already deployed; checking it');
  }
  const services = await c.allServices();
  const web = services.find((x) => x.service.name === 'webapp.demo.web.demo')?.service;
  const client = services.find((x) => x.service.name === 'webapp.demo.client.demo')?.service;
  if (!web || !client) return { ok: false, lines: [], why: 'root does not list webapp.demo.web.demo and webapp.demo.client.demo' };
  const targets = [web, client].flatMap((sv) => sv.instances.slice(0, 1).map((i) => ({ serviceId: sv.microserviceID, label: sv.name, instance: i.instance_n })));
  const r = await watchInstances(c, targets, {
    timeoutMs: 60_000,
    onTransition: (t) => say(`  ${t.target.label}#${t.target.instance}  ${t.state.padEnd(18)} ${t.reason}`),
  });
  if (!r.ok) return { ok: false, lines: [], why: `${r.target.label}#${r.target.instance} ${r.state}: ${r.reason}` };
  const inst = (await c.service(client.microserviceID)).instances[0]!;
  say(`demo: reading the client's log on ${inst.worker_id} (web runs on ${(await c.service(web.microserviceID)).instances[0]?.worker_id})`);
  const until = Date.now() + (o.checkSeconds ?? 20) * 1000;
  let lines: string[] = [];
  for (;;) {
    const text = await c.instanceLogs(client.microserviceID, inst.instance_n, 'stdout').catch(() => '');
    lines = text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
    if (lines.includes('200')) {
      const webInst = (await c.service(web.microserviceID)).instances[0];
      const served = webInst?.worker_id
        ? (await c.instanceLogs(web.microserviceID, webInst.instance_n, 'stderr').catch(() => '')).trim().split('\n').filter((l) => l.includes('GET')).slice(-2)
        : [];
      // Both start together, so the client's first requests may go out before web listens or before
      // its worker has the route: curl prints 000 for "no HTTP answer". Say so rather than leave it bare.
      const shown = lines.slice(-5);
      const early = shown.filter((l) => l === '000').length;
      const note = early && shown.indexOf('000') < shown.indexOf('200')
        ? [`(000: no HTTP answer yet — the client's first ${early === 1 ? 'request' : `${early} requests`} ran before web was serving)`]
        : [];
      return {
        ok: true,
        lines: [...shown, ...note, ...(served.length ? [`(web's log on ${webInst?.worker_id}:)`, ...served] : [])],
        why: `the client on ${inst.worker_id} got HTTP 200 from http://closest.web/ (web on ${webInst?.worker_id}), the client's instance IP ${inst.instance_ip} in the server's log`,
      };
    }
    if (Date.now() > until) break;
    await sleep(500);
  }
  const last = lines.at(-1);
  return {
    ok: false,
    lines: lines.slice(-5),
    why: last === undefined ? 'the client printed nothing'
      : `the client's requests to http://closest.web/ fail (curl prints ${last}${last === '000' ? ': no connection or no DNS answer' : ''}); service DNS and the overlay come from the worker's net manager`,
  };
}
