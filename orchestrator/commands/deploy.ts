// `canopy deploy <sla.json> [--wait]`: posts a descriptor to root and deploys one instance of each
// of its new services; with --wait follows each instance to RUNNING, printing every transition with
// its reason, and fails with the reason on timeout, a one-shot's FAILED, or a crash loop (the third
// FAILED of an instance its worker keeps restarting; orchestrator/client/watch.ts). An instance root
// cannot place yet (NO_*) is waited for, with its reason, since root retries it when room appears
// (a cluster reports more room, an instance is undeployed); --fail-unplaced gives up at once instead.
// One that no cluster could ever run (root's `placeable: false`) fails at once, with root's reason.
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import type { RootClient } from '../client/root-client.ts';
import { openSession, withLogin } from '../client/session.ts';
import { fail, StatusLine } from '../client/terminal.ts';
import { UNPLACED, watchInstances, type Unplaced, type WatchTarget } from '../client/watch.ts';

/** What `deploy --wait` prints for an instance root could not place yet (or still cannot, for another reason). */
export function unplacedLine(u: Unplaced, timeoutS: number): string {
  const who = `${u.target.label}#${u.target.instance}`;
  if (!u.first) return `  ${who} still ${u.state}: ${u.reason}`;
  const latest = u.nextRetry ? `, at the latest at ${u.nextRetry.slice(11, 19)} UTC` : '';
  return `  ${who} not placed yet: ${u.reason}\n  no room now: root retries it when room appears (a cluster reports more room, an instance is undeployed${latest}); waiting up to ${timeoutS} s (--fail-unplaced to stop at once)`;
}

/**
 * `--wait` of deploy and scale: prints every transition of the instances with its reason (one
 * timeline), a progress line, and the end; throws with the reason when one fails, times out, or can
 * never be placed.
 */
export async function followInstances(c: RootClient, targets: WatchTarget[], o: { timeoutS: number; failUnplaced: boolean }): Promise<void> {
  const line = new StatusLine();
  const started = Date.now();
  const status = new Map<WatchTarget, string>();
  const summary = () => `${[...status.values()].filter((s) => s === 'RUNNING' || s === 'COMPLETED').length}/${targets.length} running, ${((Date.now() - started) / 1000).toFixed(1)} s`;
  line.set(summary());
  const r = await watchInstances(c, targets, {
    timeoutMs: o.timeoutS * 1000,
    unplaced: o.failUnplaced ? 'fail' : 'wait',
    onUnplaced: (u) => {
      line.print(unplacedLine(u, o.timeoutS));
      line.set(summary());
    },
    onTransition: (t) => {
      status.set(t.target, t.state);
      line.print(`${t.ts.slice(11, 23)}  ${t.target.label}#${t.target.instance}  ${t.state.padEnd(19)} ${t.reason}`);
      line.set(summary());
    },
    // Pull progress: the same state with its latest reason, one line per step the worker sent.
    onProgress: (p) => {
      line.print(`${p.ts.slice(11, 23)}  ${p.target.label}#${p.target.instance}  ${p.state.padEnd(19)} ${p.reason}`);
      line.set(summary());
    },
    onTick: () => {
      line.set(summary());
      line.tick();
    },
  });
  line.clear();
  if (!r.ok) {
    const hint = o.failUnplaced && UNPLACED.has(r.state) ? '; it stays deployed and root retries it when room appears (undeploy the service to stop)' : '';
    throw new Error(`${r.target.label}#${r.target.instance} ${r.state}: ${r.reason}${hint}`);
  }
  const completed = [...status.values()].filter((x) => x === 'COMPLETED').length;
  const running = targets.length - completed;
  const parts = [running ? `${running} running` : '', completed ? `${completed} completed (one-shot)` : ''].filter(Boolean).join(', ');
  console.log(`all ${targets.length} instances up after ${((Date.now() - started) / 1000).toFixed(1)} s: ${parts}`);
}

export function register(program: Command): void {
  program
    .command('deploy')
    .description('create the applications of an SLA (v2.0 descriptor) and deploy their services')
    .argument('<sla>', 'descriptor file (JSON)')
    .option('--root <url>', 'root API URL, or root replicas as a comma-separated list (default: CANOPY_ROOT, or the local deployment of `canopy up`)')
    .option('--wait', 'follow every instance until it runs; exit 1 if one keeps failing (3 times), times out, or no cluster could ever run it (one with no room now is waited for: root retries it)')
    .option('--timeout <s>', 'with --wait: give up after this many seconds', '120')
    .option('--fail-unplaced', 'with --wait: exit 1 at once if an instance cannot be placed now, instead of waiting for root\'s retries')
    .action(async (file: string, o: { root?: string; wait?: boolean; timeout: string; failUnplaced?: boolean }) => {
      const timeoutS = Number(o.timeout);
      if (!(timeoutS > 0)) fail('deploy', new Error(`--timeout must be a positive number of seconds, got ${o.timeout}`));
      let sla: string;
      try {
        sla = readFileSync(file, 'utf8');
        JSON.parse(sla);
      } catch (e) {
        fail('deploy', new Error(`${file}: ${(e as Error).message}`));
      }
      const session = openSession({ root: o.root });
      try {
        await withLogin(session, async (c) => {
          const created = await c.createApplications(sla, true);
          for (const a of created.applications) console.log(`application ${a.application_name}.${a.application_namespace}  id ${a.applicationID}`);
          for (const s of created.services) {
            console.log(`  service ${s.name}  id ${s.microserviceID}  rr ${s.rr_ip}  closest ${s.closest_ip}`);
          }
          if (!o.wait) return;
          const targets: WatchTarget[] = created.services.flatMap((s) => s.instances.map((i) => ({ serviceId: s.microserviceID, label: s.name, instance: i.instance_n })));
          await followInstances(c, targets, { timeoutS, failUnplaced: o.failUnplaced === true });
        });
      } catch (e) {
        fail('deploy', e);
      }
    });
}
