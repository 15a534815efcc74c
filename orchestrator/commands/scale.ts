// `canopy scale <service> <n>`: deploys or undeploys instances through root's API until the service
// has n live ones. Scaling down removes the instances that do least first: unplaced ones, then those
// not running yet, then the newest. With --wait it follows new instances as `deploy --wait` does,
// and (local deployment) waits until the workers have removed the undeployed ones.
import type { Command } from 'commander';
import { oneService } from '../client/lookup.ts';
import { openSession, withLogin } from '../client/session.ts';
import { fail } from '../client/terminal.ts';
import { UNPLACED, type WatchTarget } from '../client/watch.ts';
import { waitOffWorkers } from '../client/worker-api.ts';
import { followInstances } from './deploy.ts';

/** Instances that count toward the service's size: deployed and not finished. */
export function isLive(i: { state: string }, oneShot: boolean): boolean {
  return i.state !== 'UNDEPLOYED' && i.state !== 'COMPLETED' && !(oneShot && i.state === 'FAILED');
}

/** How many instances to add, and which (by number) to undeploy, to reach `want` live instances. */
export function planScale(instances: readonly { state: string; instance_n: number }[], oneShot: boolean, want: number): { add: number; remove: number[] } {
  const live = instances.filter((i) => isLive(i, oneShot));
  if (live.length <= want) return { add: want - live.length, remove: [] };
  const rank = (s: string): number => (UNPLACED.has(s) || s === 'REQUESTED' ? 0 : s === 'RUNNING' ? 2 : 1);
  const order = [...live].sort((a, b) => rank(a.state) - rank(b.state) || b.instance_n - a.instance_n);
  return { add: 0, remove: order.slice(0, live.length - want).map((i) => i.instance_n) };
}

export function register(program: Command): void {
  program
    .command('scale')
    .description('deploy or undeploy instances of a service until it has <n>')
    .argument('<service>', 'svc, svc.svcns, full name or id')
    .argument('<n>', 'number of instances wanted (0 or more)')
    .option('--root <url>', 'root API URL, or root replicas as a comma-separated list (default: CANOPY_ROOT, or the local deployment of `canopy up`)')
    .option('--wait', 'follow new instances until they run (as deploy --wait); local deployment: wait until removed ones are gone from the workers')
    .option('--timeout <s>', 'with --wait: give up after this many seconds', '120')
    .option('--fail-unplaced', 'with --wait: exit 1 at once if a new instance cannot be placed now')
    .action(async (name: string, nArg: string, o: { root?: string; wait?: boolean; timeout: string; failUnplaced?: boolean }) => {
      const want = Number(nArg);
      if (!/^\d+$/.test(nArg) || !Number.isSafeInteger(want)) fail('scale', new Error(`<n> must be a whole number ≥ 0, got ${nArg}`));
      const timeoutS = Number(o.timeout);
      if (!(timeoutS > 0)) fail('scale', new Error(`--timeout must be a positive number of seconds, got ${o.timeout}`));
      const session = openSession({ root: o.root });
      try {
        await withLogin(session, async (c) => {
          const { service } = await oneService(c, name);
          const plan = planScale(service.instances, service.one_shot, want);
          const before = service.instances.filter((i) => isLive(i, service.one_shot)).length;
          const added: WatchTarget[] = [];
          for (let k = 0; k < plan.add; k++) {
            const i = await c.deployInstance(service.microserviceID);
            added.push({ serviceId: service.microserviceID, label: service.name, instance: i.instance_n });
          }
          for (const n of plan.remove) await c.undeployInstance(service.microserviceID, n);
          const what = plan.add ? `deployed ${plan.add} (#${added.map((t) => t.instance).join(', #')})`
            : plan.remove.length ? `undeployed ${plan.remove.length} (#${plan.remove.join(', #')})` : 'nothing to do';
          console.log(`${service.name}: ${before} → ${want} instances: ${what}`);
          if (!o.wait) return;
          if (added.length) await followInstances(c, added, { timeoutS, failUnplaced: o.failUnplaced === true });
          if (plan.remove.length && session.deployment) {
            const gone = new Set(plan.remove);
            await waitOffWorkers(session.deployment, (i) => i.service_id === service.microserviceID && gone.has(i.instance_n), timeoutS);
            console.log('removed from every worker');
          }
        });
      } catch (e) {
        fail('scale', e);
      }
    });
}
