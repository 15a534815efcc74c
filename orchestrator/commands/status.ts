// `canopy status [app|service]`: clusters, then one row per instance with state, placement,
// addresses and the reason of its last transition.
import type { Command } from 'commander';
import { findApplications, findServices, type FoundService } from '../client/lookup.ts';
import { openSession, withLogin } from '../client/session.ts';
import { fail, table } from '../client/terminal.ts';
import { workersView } from '../client/workers-view.ts';

export function register(program: Command): void {
  program
    .command('status')
    .description('instances with their states, workers, addresses and reasons')
    .argument('[name]', 'an application (app or app.appns) or a service (svc, svc.svcns, full name or id)')
    .option('--root <url>', 'root API URL, or root replicas as a comma-separated list (default: CANOPY_ROOT, or the local deployment of `canopy up`)')
    .option('--json', 'machine-readable')
    .option('--workers', "each cluster's workers with their Vivaldi coordinates (height, error) and the cluster's network summary")
    .action(async (name: string | undefined, o: { root?: string; json?: boolean; workers?: boolean }) => {
      const session = openSession({ root: o.root });
      try {
        await withLogin(session, async (c) => {
          if (o.workers) {
            const clusters = await c.clusters();
            console.log(o.json ? JSON.stringify(clusters.map((cl) => ({ name: cl.name, aggregate: cl.aggregate })), null, 2) : workersView(clusters));
            return;
          }
          let found: FoundService[];
          // Asked beside the services, not after them.
          const clustersAsked = name === undefined ? c.clusters() : Promise.resolve([]);
          clustersAsked.catch(() => {});
          if (name === undefined) {
            found = (await c.allServices()).map(({ app, service }) => ({ app, service }));
          } else {
            const apps = await findApplications(c, name);
            const appIds = new Set(apps.map((a) => a.applicationID));
            const all = await c.allServices();
            const services = await findServices(c, name);
            found = all.filter((x) => appIds.has(x.app.applicationID) || services.some((s) => s.service.microserviceID === x.service.microserviceID));
            if (found.length === 0 && apps.length === 0) throw new Error(`no application or service "${name}"`);
          }
          const clusters = await clustersAsked;
          if (o.json) {
            console.log(JSON.stringify({ clusters, services: found.map((f) => f.service) }, null, 2));
            return;
          }
          if (name === undefined) {
            if (session.deployment) console.log(`deployment ${session.deployment.name}: root ${c.url}, ${session.deployment.workers.length} workers`);
            for (const cl of clusters) {
              const agg = cl.aggregate as { workers_active?: number } | null;
              console.log(`cluster ${cl.name}  ${cl.status}${agg ? `, ${agg.workers_active ?? 0} active workers` : ''}`);
            }
            if (found.length === 0) {
              console.log('no services (deploy one with `canopy deploy <sla.json> --wait`)');
              return;
            }
            console.log('');
          }
          const rows: string[][] = [];
          for (const { service: s } of found) {
            if (s.instances.length === 0) rows.push([s.name, '-', 'no instances', '', '', '', '', `rr ${s.rr_ip} closest ${s.closest_ip}`]);
            for (const i of s.instances) {
              // An unplaced instance is not given up: say that root keeps retrying it (orchestrator/root/retry.ts).
              const retrying = i.next_retry ? ` (root retries it when room appears; ${i.retries} retries so far, next by ${i.next_retry.slice(11, 19)} UTC)` : '';
              rows.push([s.name, String(i.instance_n), i.state, i.worker_id ?? '-', i.cluster_name ?? '-', i.instance_ip, i.ns_ip ?? '-', `${i.reason}${retrying}`]);
            }
          }
          console.log(table(['SERVICE', '#', 'STATE', 'WORKER', 'CLUSTER', 'INSTANCE IP', 'NS IP', 'REASON'], rows));
          console.log('');
          for (const { service: s } of found) console.log(`${s.name}: rr ${s.rr_ip} ${s.rr_ip_v6}  closest ${s.closest_ip} ${s.closest_ip_v6}`);
        });
      } catch (e) {
        fail('status', e);
      }
    });
}
