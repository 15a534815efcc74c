// `canopy undeploy <app|service>`: undeploys and deletes an application (all its services) or one
// service. With --wait (local deployment), returns once no worker runs its instances any more.
import type { Command } from 'commander';
import { findApplications, findServices } from '../client/lookup.ts';
import { openSession, withLogin } from '../client/session.ts';
import { fail } from '../client/terminal.ts';
import { waitOffWorkers } from '../client/worker-api.ts';

export function register(program: Command): void {
  program
    .command('undeploy')
    .description('undeploy and delete an application or a service')
    .argument('<name>', 'application (app, app.appns or id) or service (svc, svc.svcns, full name or id)')
    .option('--root <url>', 'root API URL, or root replicas as a comma-separated list (default: CANOPY_ROOT, or the local deployment of `canopy up`)')
    .option('--wait', 'local deployment: wait until the workers have removed the instances')
    .option('--timeout <s>', 'with --wait: give up after this many seconds', '30')
    .action(async (name: string, o: { root?: string; wait?: boolean; timeout: string }) => {
      const session = openSession({ root: o.root });
      try {
        await withLogin(session, async (c) => {
          const apps = await findApplications(c, name);
          const services = apps.length ? [] : await findServices(c, name);
          let ids: string[];
          if (apps.length > 1) throw new Error(`"${name}" names ${apps.length} applications; use one of: ${apps.map((a) => `${a.applicationID} (${a.application_name}.${a.application_namespace})`).join(', ')}`);
          if (services.length > 1) throw new Error(`"${name}" names ${services.length} services; use one of: ${services.map((s) => s.service.name).join(', ')}`);
          if (apps.length === 1) {
            const a = apps[0]!;
            ids = a.microservices.map((m) => m.microserviceID);
            await c.deleteApplication(a.applicationID);
            console.log(`undeployed application ${a.application_name}.${a.application_namespace} (${ids.length} services)`);
          } else if (services.length === 1) {
            const s = services[0]!.service;
            ids = [s.microserviceID];
            await c.deleteService(s.microserviceID);
            console.log(`undeployed service ${s.name}`);
          } else {
            throw new Error(`no application or service "${name}" (see \`canopy status\`)`);
          }
          if (!o.wait) return;
          if (!session.deployment) throw new Error('--wait needs the local deployment of `canopy up` (it asks the workers)');
          await waitOffWorkers(session.deployment, (i) => ids.includes(i.service_id), Number(o.timeout));
          console.log('removed from every worker');
        });
      } catch (e) {
        fail('undeploy', e);
      }
    });
}
