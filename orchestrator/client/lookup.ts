// Finding what the user named on the command line: an id, a short name, or a dotted full name.
import type { ApplicationInfo, RootClient, ServiceInfo } from './root-client.ts';

export interface FoundService {
  app: ApplicationInfo;
  service: ServiceInfo;
}

/**
 * Services matching `name`: an id, `svc`, `svc.svcns`, or the full `app.appns.svc.svcns`.
 * Ambiguous short names match several.
 */
export async function findServices(c: RootClient, name: string): Promise<FoundService[]> {
  const want = name.toLowerCase();
  const all = await c.allServices();
  return all.filter(({ service: s }) =>
    s.microserviceID === name || s.name === want || s.microservice_name === want
    || `${s.microservice_name}.${s.microservice_namespace}` === want);
}

/** Applications matching `name`: an id, `app`, or `app.appns`. */
export async function findApplications(c: RootClient, name: string): Promise<ApplicationInfo[]> {
  const want = name.toLowerCase();
  return (await c.applications()).filter((a) =>
    a.applicationID === name || a.application_name === want || `${a.application_name}.${a.application_namespace}` === want);
}

/** Exactly one service, or an error that lists the candidates. */
export async function oneService(c: RootClient, name: string): Promise<FoundService> {
  const found = await findServices(c, name);
  if (found.length === 0) throw new Error(`no service "${name}" (see \`canopy status\`)`);
  if (found.length > 1) throw new Error(`"${name}" names ${found.length} services; use one of: ${found.map((f) => f.service.name).join(', ')}`);
  return found[0]!;
}
