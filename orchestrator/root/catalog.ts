// Applications and services of each user: created from descriptors, read, renamed, deleted. Every
// call checks ownership (admins see all). A descriptor is validated completely before anything is
// written, and written in one transaction, so a rejected one stores nothing.
import { randomBytes } from 'node:crypto';
import { validateDescriptor, validateMicroservice, type ValidationContext } from '../descriptor/validate.ts';
import type { FieldError, Microservice, PinnedAddresses } from '../descriptor/types.ts';
import { nameProblem, serviceFullName } from '../names.ts';
import type { AddressAllocator } from './addresses.ts';
import { ApiError, conflict, forbidden, invalid, notFound } from './errors.ts';
import { ServiceGone, type InstanceManager } from './instances.ts';
import { parseIp } from '../descriptor/ip.ts';
import type { InstanceView } from './instance-view.ts';
import { isSettled } from '../protocol/instance-states.ts';
import { StoreConflict, type ApplicationRecord, type Role, type RootStore, type ServiceRecord } from './store.ts';

export interface Caller {
  id: string;
  username: string;
  role: Role;
}

export interface ServiceView extends Microservice {
  microserviceID: string;
  applicationID: string;
  name: string;
  rr_ip: string;
  rr_ip_v6: string;
  closest_ip: string;
  closest_ip_v6: string;
  created_at: string;
  instances: InstanceView[];
}

export interface ApplicationView {
  applicationID: string;
  application_name: string;
  application_namespace: string;
  application_desc: string;
  owner: string;
  created_at: string;
  microservices: { microserviceID: string; microservice_name: string; microservice_namespace: string }[];
}

const newId = () => randomBytes(12).toString('hex');

export class Catalog {
  constructor(
    private readonly store: RootStore,
    private readonly addresses: AddressAllocator,
    private readonly instances: InstanceManager,
  ) {}

  /**
   * What the descriptor check asks the store, read before it runs (the check itself is synchronous):
   * the owners of the addresses the body pins, the services it names as connectivity targets, and
   * the services of the applications it adds to. A pinned address taken between this read and the
   * write is caught by the write (AddressTaken).
   */
  private async context(caller: Caller, body: unknown, own?: ServiceRecord): Promise<ValidationContext> {
    const addresses = new Set<string>();
    const serviceIds = new Set<string>();
    const appIds = new Set<string>();
    const walk = (v: unknown, depth: number): void => {
      if (depth > 40 || typeof v !== 'object' || v === null) return;
      if (Array.isArray(v)) {
        for (const x of v) walk(x, depth + 1);
        return;
      }
      for (const [k, x] of Object.entries(v)) {
        if (k === 'addresses' && typeof x === 'object' && x !== null) {
          for (const a of Object.values(x)) {
            const ip = typeof a === 'string' ? parseIp(a) : null;
            if (ip) addresses.add(ip.text);
          }
        } else if (k === 'target_microservice_id' && typeof x === 'string') serviceIds.add(x);
        else if (k === 'applicationID' && typeof x === 'string') appIds.add(x);
        else walk(x, depth + 1);
      }
    };
    walk(body, 0);
    const owners = new Map(await Promise.all([...addresses].map(async (a) => [a, await this.store.addressOwner(a)] as const)));
    const services = new Map(await Promise.all([...serviceIds].map(async (id) => [id, await this.store.service(id)] as const)));
    const names = new Map(await Promise.all([...appIds].map(async (id) => [id, (await this.store.listServices(id)).map((x) => x.name)] as const)));
    return {
      serviceRangeV4: this.addresses.serviceV4,
      serviceRangeV6: this.addresses.serviceV6,
      addressTaken: (ip) => {
        const owner = owners.get(ip);
        return owner !== undefined && owner.service_id !== own?.id;
      },
      serviceExists: (id) => {
        const s = services.get(id);
        return s !== undefined && (caller.role === 'admin' || s.owner === caller.id);
      },
      existingServiceNames: (appId) => names.get(appId) ?? [],
    };
  }

  private async ownedApp(caller: Caller, id: string): Promise<ApplicationRecord> {
    const a = await this.store.application(id);
    if (!a) throw notFound(`application ${id}`);
    if (caller.role !== 'admin' && a.owner !== caller.id) throw forbidden(`application ${id}`);
    return a;
  }

  async ownedService(caller: Caller, id: string): Promise<ServiceRecord> {
    const s = await this.store.service(id);
    if (!s) throw notFound(`service ${id}`);
    if (caller.role !== 'admin' && s.owner !== caller.id) throw forbidden(`service ${id}`);
    return s;
  }

  async appView(a: ApplicationRecord): Promise<ApplicationView> {
    const [owner, services] = await Promise.all([this.store.userById(a.owner), this.store.listServices(a.id)]);
    return {
      applicationID: a.id,
      application_name: a.name,
      application_namespace: a.namespace,
      application_desc: a.desc,
      owner: owner?.username ?? a.owner,
      created_at: new Date(a.created_at).toISOString(),
      microservices: services.map((s) => ({ microserviceID: s.id, microservice_name: s.name, microservice_namespace: s.namespace })),
    };
  }

  async serviceView(s: ServiceRecord): Promise<ServiceView> {
    const a = await this.store.application(s.app_id);
    const instances = await Promise.all((await this.store.listInstances(s.id)).map((i) => this.instances.view(i)));
    return {
      ...s.spec,
      microserviceID: s.id,
      applicationID: s.app_id,
      name: serviceFullName(a?.name ?? '', a?.namespace ?? '', s.name, s.namespace),
      rr_ip: s.rr_ip, rr_ip_v6: s.rr_ip_v6, closest_ip: s.closest_ip, closest_ip_v6: s.closest_ip_v6,
      created_at: new Date(s.created_at).toISOString(),
      instances,
    };
  }

  /** A service's policy addresses: pinned ones claimed, the rest allocated. */
  private async policyAddresses(ms: Microservice, id: string): Promise<Pick<ServiceRecord, 'rr_ip' | 'rr_ip_v6' | 'closest_ip' | 'closest_ip_v6'>> {
    const pin = (key: keyof PinnedAddresses, family: 4 | 6, kind: 'rr' | 'closest') =>
      ms.addresses[key] ? this.addresses.claim(ms.addresses[key] as string, kind, id) : this.addresses.allocate(family, kind, id);
    // One after another: the allocator's cursor is not meant for concurrent use.
    const rr_ip = await pin('rr_ip', 4, 'rr');
    const rr_ip_v6 = await pin('rr_ip_v6', 6, 'rr');
    const closest_ip = await pin('closest_ip', 4, 'closest');
    const closest_ip_v6 = await pin('closest_ip_v6', 6, 'closest');
    return { rr_ip, rr_ip_v6, closest_ip, closest_ip_v6 };
  }

  private async insertService(app: ApplicationRecord, ms: Microservice, id: string): Promise<ServiceRecord> {
    const s: ServiceRecord = {
      id, app_id: app.id, owner: app.owner, name: ms.microservice_name, namespace: ms.microservice_namespace,
      spec: { ...ms, microserviceID: id }, ...(await this.policyAddresses(ms, id)), next_n: 0, created_at: Date.now(),
    };
    await this.store.insertService(s);
    return s;
  }

  /** Connectivity targets given by sibling name point at the sibling's new id. */
  private async resolveSiblings(services: ServiceRecord[]): Promise<void> {
    const byName = new Map(services.map((s) => [s.name, s.id]));
    for (const s of services) {
      let touched = false;
      for (const c of s.spec.connectivity) {
        const id = byName.get(c.target_microservice_id);
        if (id) {
          c.target_microservice_id = id;
          touched = true;
        }
      }
      if (touched) await this.store.updateService(s);
    }
  }

  private async nameConflicts(caller: Caller, body: unknown): Promise<FieldError[]> {
    const apps = (body as { applications?: unknown } | null)?.applications;
    if (!Array.isArray(apps)) return [];
    const out: FieldError[] = [];
    for (const [i, a] of (apps as { application_name?: unknown; application_namespace?: unknown }[]).entries()) {
      if (typeof a?.application_name !== 'string' || typeof a.application_namespace !== 'string') continue;
      const [name, ns] = [a.application_name.toLowerCase(), a.application_namespace.toLowerCase()];
      if (await this.store.applicationByName(caller.id, name, ns)) {
        out.push({ path: `/applications/${i}/application_name`, message: `you already have an application ${name} in namespace ${ns}` });
      }
    }
    return out;
  }

  /** POST /api/v1/application: creates every application of the SLA (and optionally one instance per service). */
  async createFromDescriptor(caller: Caller, body: unknown, deploy: boolean): Promise<{ applications: ApplicationView[]; services: ServiceView[] }> {
    const checked = validateDescriptor(body, { ...(await this.context(caller, body)), applicationIds: 'empty' });
    // An existing application of the same name is the bigger problem (its pinned addresses would
    // also be "taken"), so it is answered as a conflict, with the other errors after it.
    const conflicts = await this.nameConflicts(caller, checked.ok || checked.status === 422 ? body : null);
    if (conflicts.length) throw new ApiError(409, conflicts[0]?.message as string, [...conflicts, ...(checked.ok ? [] : checked.errors)]);
    if (!checked.ok) throw invalid(checked.status, 'invalid descriptor', checked.errors);
    const apps = checked.value.applications;
    const created = await this.store.transaction(async () => {
      const out: { app: ApplicationRecord; services: ServiceRecord[] }[] = [];
      for (const a of apps) {
        const app: ApplicationRecord = {
          id: newId(), owner: caller.id, name: a.application_name, namespace: a.application_namespace, desc: a.application_desc, created_at: Date.now(),
        };
        await this.store.insertApplication(app);
        const services: ServiceRecord[] = [];
        for (const ms of a.microservices) services.push(await this.insertService(app, ms, newId()));
        await this.resolveSiblings(services);
        out.push({ app, services });
      }
      return out;
    }).catch(async (err: unknown) => {
      // A concurrent request took a name or pinned address between the check and the write.
      if (err instanceof StoreConflict) throw new ApiError(409, 'an application of this name exists already', [...(await this.nameConflicts(caller, body)), { path: '', message: 'created concurrently' }]);
      throw err;
    });
    const services = created.flatMap((c) => c.services);
    if (deploy) for (const s of services) await this.instances.deploy(s, `deployed with the descriptor by ${caller.username}`);
    return { applications: await Promise.all(created.map((c) => this.appView(c.app))), services: await Promise.all(services.map((s) => this.serviceView(s))) };
  }

  /** POST /api/v1/service: adds the microservices of an SLA to existing applications (by applicationID). */
  async addServices(caller: Caller, body: unknown, deploy: boolean): Promise<{ services: ServiceView[] }> {
    // A missing or foreign application is answered before the fields: nothing else can be right then.
    const raw = (body as { applications?: unknown } | null)?.applications;
    if (Array.isArray(raw)) {
      for (const [i, a] of (raw as ({ applicationID?: unknown } | null)[]).entries()) {
        const id = a?.applicationID;
        if (typeof id !== 'string' || id === '') continue;
        const app = await this.store.application(id);
        if (!app) throw new ApiError(404, `application ${id} not found`, [{ path: `/applications/${i}/applicationID`, message: 'no such application' }]);
        if (caller.role !== 'admin' && app.owner !== caller.id) throw forbidden(`application ${id}`);
      }
    }
    const checked = validateDescriptor(body, { ...(await this.context(caller, body)), applicationIds: 'set' });
    if (!checked.ok) throw invalid(checked.status, 'invalid descriptor', checked.errors);
    const targets: { app: ApplicationRecord; microservices: Microservice[] }[] = [];
    for (const [i, a] of checked.value.applications.entries()) {
      const app = (await this.store.application(a.applicationID)) as ApplicationRecord;
      const existing = await this.store.listServices(app.id);
      a.microservices.forEach((ms, j) => {
        if (existing.some((s) => s.name === ms.microservice_name && s.namespace === ms.microservice_namespace)) {
          throw conflict(`service ${ms.microservice_name}.${ms.microservice_namespace} already exists in this application`, `/applications/${i}/microservices/${j}/microservice_name`);
        }
      });
      targets.push({ app, microservices: a.microservices });
    }
    const services = await this.store.transaction(async () => {
      const out: ServiceRecord[] = [];
      for (const t of targets) {
        const added: ServiceRecord[] = [];
        for (const ms of t.microservices) added.push(await this.insertService(t.app, ms, newId()));
        await this.resolveSiblings([...(await this.store.listServices(t.app.id))]);
        for (const s of added) out.push((await this.store.service(s.id)) as ServiceRecord);
      }
      return out;
    }).catch((err: unknown) => {
      if (err instanceof StoreConflict) throw conflict('a service of this name was added concurrently', '/applications');
      throw err;
    });
    if (deploy) for (const s of services) await this.instances.deploy(s, `deployed with the descriptor by ${caller.username}`);
    return { services: await Promise.all(services.map((s) => this.serviceView(s))) };
  }

  async listApplications(caller: Caller): Promise<ApplicationView[]> {
    return Promise.all((await this.store.listApplications(caller.role === 'admin' ? undefined : caller.id)).map((a) => this.appView(a)));
  }

  async getApplication(caller: Caller, id: string): Promise<ApplicationView> {
    return this.appView(await this.ownedApp(caller, id));
  }

  private async hasLiveInstances(serviceIds: string[]): Promise<boolean> {
    for (const id of serviceIds) if ((await this.store.listInstances(id)).some((i) => !isSettled(i.state))) return true;
    return false;
  }

  /** PUT /api/v1/application/:id: description always; name and namespace only while nothing runs. */
  async updateApplication(caller: Caller, id: string, body: unknown): Promise<ApplicationView> {
    const a = await this.ownedApp(caller, id);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid(400, 'body must be an object', [{ path: '', message: 'must be an object' }]);
    const b = body as Record<string, unknown>;
    const next = { ...a };
    const errors: { path: string; message: string }[] = [];
    for (const [field, key] of [['application_name', 'name'], ['application_namespace', 'namespace']] as const) {
      if (b[field] === undefined) continue;
      const problem = nameProblem(b[field]);
      if (problem) errors.push({ path: `/${field}`, message: problem });
      else next[key] = (b[field] as string).toLowerCase();
    }
    if (b.application_desc !== undefined) {
      if (typeof b.application_desc !== 'string' || b.application_desc.length > 4096) errors.push({ path: '/application_desc', message: 'must be a string of at most 4096 characters' });
      else next.desc = b.application_desc;
    }
    if (errors.length) throw invalid(422, 'invalid application', errors);
    if (next.name !== a.name || next.namespace !== a.namespace) {
      const other = await this.store.applicationByName(a.owner, next.name, next.namespace);
      if (other && other.id !== a.id) throw conflict(`application ${next.name}.${next.namespace} already exists`, '/application_name');
      if (await this.hasLiveInstances((await this.store.listServices(a.id)).map((s) => s.id))) {
        throw conflict('cannot rename an application while it has instances (their DNS names would change)', '/application_name');
      }
    }
    await this.store.updateApplication(next).catch((err: unknown) => {
      if (err instanceof StoreConflict) throw conflict(`application ${next.name}.${next.namespace} already exists`, '/application_name');
      throw err;
    });
    return this.appView(next);
  }

  async deleteApplication(caller: Caller, id: string): Promise<void> {
    const a = await this.ownedApp(caller, id);
    for (const s of await this.store.listServices(a.id)) await this.removeService(s, `application deleted by ${caller.username}`);
    await this.store.deleteApplication(a.id);
  }

  async listServices(caller: Caller, appId: string): Promise<ServiceView[]> {
    const a = await this.ownedApp(caller, appId);
    return Promise.all((await this.store.listServices(a.id)).map((s) => this.serviceView(s)));
  }

  async getService(caller: Caller, id: string): Promise<ServiceView> {
    return this.serviceView(await this.ownedService(caller, id));
  }

  /** PUT /api/v1/service/:id: a whole microservice object; applies to instances deployed afterwards. */
  async updateService(caller: Caller, id: string, body: unknown): Promise<ServiceView> {
    const s = await this.ownedService(caller, id);
    const all = await this.store.listServices(s.app_id);
    const siblings = all.filter((x) => x.id !== s.id).map((x) => x.name);
    const checked = validateMicroservice(body, { ...(await this.context(caller, body, s)), editingServiceId: s.id }, siblings);
    if (!checked.ok) throw invalid(checked.status, 'invalid microservice', checked.errors);
    const ms = checked.value;
    const renamed = ms.microservice_name !== s.name || ms.microservice_namespace !== s.namespace;
    if (renamed) {
      if (all.some((x) => x.id !== s.id && x.name === ms.microservice_name && x.namespace === ms.microservice_namespace)) {
        throw conflict(`service ${ms.microservice_name}.${ms.microservice_namespace} already exists in this application`, '/microservice_name');
      }
      if (await this.hasLiveInstances([s.id])) throw conflict('cannot rename a service while it has instances (their DNS names would change)', '/microservice_name');
    }
    const repin = JSON.stringify(ms.addresses) !== JSON.stringify(s.spec.addresses);
    if (repin && (await this.hasLiveInstances([s.id]))) throw conflict('cannot change pinned addresses while the service has instances', '/addresses');
    const byName = new Map(all.map((x) => [x.name, x.id]));
    for (const c of ms.connectivity) c.target_microservice_id = byName.get(c.target_microservice_id) ?? c.target_microservice_id;
    const next: ServiceRecord = { ...s, name: ms.microservice_name, namespace: ms.microservice_namespace, spec: { ...ms, microserviceID: s.id } };
    await this.store.transaction(async () => {
      if (repin) {
        await this.addresses.releasePolicy(s.id);
        Object.assign(next, await this.policyAddresses(ms, s.id));
      }
      await this.store.updateService(next);
    }).catch((err: unknown) => {
      if (err instanceof StoreConflict) throw conflict(`service ${ms.microservice_name}.${ms.microservice_namespace} already exists in this application`, '/microservice_name');
      throw err;
    });
    return this.serviceView(next);
  }

  private async removeService(s: ServiceRecord, reason: string): Promise<void> {
    await this.instances.undeployAll(s.id, reason);
    await this.store.transaction(async () => {
      await this.addresses.releaseService(s.id);
      await this.store.deleteService(s.id);
    });
    await this.instances.routes.forget(s.id);
  }

  async deleteService(caller: Caller, id: string): Promise<void> {
    await this.removeService(await this.ownedService(caller, id), `service deleted by ${caller.username}`);
  }

  /**
   * Where a client outside the overlay reaches an instance's host port mappings: the underlay address
   * of its worker (the host part of the tunnel endpoint the worker advertises), null until placed.
   */
  async workerAddresses(serviceId: string): Promise<Map<number, string | null>> {
    return new Map((await this.store.listInstances(serviceId)).map((i) => [i.n, workerAddressOf(i.tunnel_endpoint)]));
  }

  async deployInstance(caller: Caller, id: string): Promise<InstanceView> {
    // The service is read as its next instance number is taken (one statement, not two); only a
    // take that found nothing reads it again, to tell 404 from 403.
    const taken = await this.store.takeInstanceNumberOf(id, caller.role === 'admin' ? undefined : caller.id);
    if (!taken) {
      await this.ownedService(caller, id);
      throw notFound(`service ${id}`);
    }
    const s = taken.service;
    const i = await this.instances.deploy(s, `requested by ${caller.username}`, taken).catch((err: unknown) => {
      if (err instanceof ServiceGone) throw notFound(`service ${id}`);
      throw err;
    });
    return this.instances.view(i, { spec: s.spec, history: [{ state: 'REQUESTED', reason: i.reason, ts: i.created_at }] });
  }

  async undeployInstance(caller: Caller, id: string, n: number): Promise<InstanceView> {
    const s = await this.ownedService(caller, id);
    const i = await this.store.instance(s.id, n);
    if (!i) throw notFound(`instance ${n} of service ${id}`);
    if (i.state === 'UNDEPLOYED') throw conflict(`instance ${n} is already undeployed`);
    await this.instances.undeploy(i, `undeployed by ${caller.username}`);
    return this.instances.view((await this.store.instance(s.id, n)) ?? i);
  }
}

/**
 * Where a client outside the overlay reaches an instance's host port mappings: the underlay address
 * of its worker (the host part of the tunnel endpoint the worker advertises), null until placed.
 */
export function workerAddressOf(ep: string | null): string | null {
  if (!ep) return null;
  const v6 = /^\[([^\]]+)\]:\d+$/.exec(ep);
  return v6 ? (v6[1] as string) : ep.replace(/:\d+$/, '');
}
