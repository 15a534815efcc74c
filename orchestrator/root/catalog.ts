// Applications and services of each user: created from descriptors, read, renamed, deleted. Every
// call checks ownership (admins see all). A descriptor is validated completely before anything is
// written, and written in one transaction, so a rejected one stores nothing.
import { randomBytes } from 'node:crypto';
import { validateDescriptor, validateMicroservice, type ValidationContext } from '../descriptor/validate.ts';
import type { FieldError, Microservice, PinnedAddresses } from '../descriptor/types.ts';
import { nameProblem, serviceFullName } from '../names.ts';
import type { AddressAllocator } from './addresses.ts';
import { ApiError, conflict, forbidden, invalid, notFound } from './errors.ts';
import type { InstanceManager } from './instances.ts';
import type { InstanceView } from './instance-view.ts';
import { isSettled } from '../protocol/instance-states.ts';
import type { ApplicationRecord, Role, RootStore, ServiceRecord } from './store.ts';

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

  private context(caller: Caller, own?: ServiceRecord): ValidationContext {
    return {
      serviceRangeV4: this.addresses.serviceV4,
      serviceRangeV6: this.addresses.serviceV6,
      addressTaken: (ip) => {
        const owner = this.store.addressOwner(ip);
        return owner !== undefined && owner.service_id !== own?.id;
      },
      serviceExists: (id) => {
        const s = this.store.service(id);
        return s !== undefined && (caller.role === 'admin' || s.owner === caller.id);
      },
    };
  }

  private ownedApp(caller: Caller, id: string): ApplicationRecord {
    const a = this.store.application(id);
    if (!a) throw notFound(`application ${id}`);
    if (caller.role !== 'admin' && a.owner !== caller.id) throw forbidden(`application ${id}`);
    return a;
  }

  ownedService(caller: Caller, id: string): ServiceRecord {
    const s = this.store.service(id);
    if (!s) throw notFound(`service ${id}`);
    if (caller.role !== 'admin' && s.owner !== caller.id) throw forbidden(`service ${id}`);
    return s;
  }

  appView(a: ApplicationRecord): ApplicationView {
    return {
      applicationID: a.id,
      application_name: a.name,
      application_namespace: a.namespace,
      application_desc: a.desc,
      owner: this.store.userById(a.owner)?.username ?? a.owner,
      created_at: new Date(a.created_at).toISOString(),
      microservices: this.store.listServices(a.id).map((s) => ({ microserviceID: s.id, microservice_name: s.name, microservice_namespace: s.namespace })),
    };
  }

  serviceView(s: ServiceRecord): ServiceView {
    const a = this.store.application(s.app_id);
    return {
      ...s.spec,
      microserviceID: s.id,
      applicationID: s.app_id,
      name: serviceFullName(a?.name ?? '', a?.namespace ?? '', s.name, s.namespace),
      rr_ip: s.rr_ip, rr_ip_v6: s.rr_ip_v6, closest_ip: s.closest_ip, closest_ip_v6: s.closest_ip_v6,
      created_at: new Date(s.created_at).toISOString(),
      instances: this.store.listInstances(s.id).map((i) => this.instances.view(i)),
    };
  }

  /** A service's policy addresses: pinned ones claimed, the rest allocated. */
  private policyAddresses(ms: Microservice, id: string): Pick<ServiceRecord, 'rr_ip' | 'rr_ip_v6' | 'closest_ip' | 'closest_ip_v6'> {
    const pin = (key: keyof PinnedAddresses, family: 4 | 6, kind: 'rr' | 'closest') =>
      ms.addresses[key] ? this.addresses.claim(ms.addresses[key] as string, kind, id) : this.addresses.allocate(family, kind, id);
    return { rr_ip: pin('rr_ip', 4, 'rr'), rr_ip_v6: pin('rr_ip_v6', 6, 'rr'), closest_ip: pin('closest_ip', 4, 'closest'), closest_ip_v6: pin('closest_ip_v6', 6, 'closest') };
  }

  private insertService(app: ApplicationRecord, ms: Microservice, id: string): ServiceRecord {
    const s: ServiceRecord = {
      id, app_id: app.id, owner: app.owner, name: ms.microservice_name, namespace: ms.microservice_namespace,
      spec: { ...ms, microserviceID: id }, ...this.policyAddresses(ms, id), next_n: 0, created_at: Date.now(),
    };
    this.store.insertService(s);
    return s;
  }

  /** Connectivity targets given by sibling name point at the sibling's new id. */
  private resolveSiblings(services: ServiceRecord[]): void {
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
      if (touched) this.store.updateService(s);
    }
  }

  private nameConflicts(caller: Caller, body: unknown): FieldError[] {
    const apps = (body as { applications?: unknown } | null)?.applications;
    if (!Array.isArray(apps)) return [];
    const out: FieldError[] = [];
    apps.forEach((a: { application_name?: unknown; application_namespace?: unknown }, i) => {
      if (typeof a.application_name !== 'string' || typeof a.application_namespace !== 'string') return;
      const [name, ns] = [a.application_name.toLowerCase(), a.application_namespace.toLowerCase()];
      if (this.store.applicationByName(caller.id, name, ns)) {
        out.push({ path: `/applications/${i}/application_name`, message: `you already have an application ${name} in namespace ${ns}` });
      }
    });
    return out;
  }

  /** POST /api/v1/application: creates every application of the SLA (and optionally one instance per service). */
  createFromDescriptor(caller: Caller, body: unknown, deploy: boolean): { applications: ApplicationView[]; services: ServiceView[] } {
    const checked = validateDescriptor(body, { ...this.context(caller), applicationIds: 'empty' });
    // An existing application of the same name is the bigger problem (its pinned addresses would
    // also be "taken"), so it is answered as a conflict, with the other errors after it.
    const conflicts = this.nameConflicts(caller, checked.ok || checked.status === 422 ? body : null);
    if (conflicts.length) throw new ApiError(409, conflicts[0]?.message as string, [...conflicts, ...(checked.ok ? [] : checked.errors)]);
    if (!checked.ok) throw invalid(checked.status, 'invalid descriptor', checked.errors);
    const apps = checked.value.applications;
    const created = this.store.transaction(() =>
      apps.map((a) => {
        const app: ApplicationRecord = {
          id: newId(), owner: caller.id, name: a.application_name, namespace: a.application_namespace, desc: a.application_desc, created_at: Date.now(),
        };
        this.store.insertApplication(app);
        const services = a.microservices.map((ms) => this.insertService(app, ms, newId()));
        this.resolveSiblings(services);
        return { app, services };
      }));
    const services = created.flatMap((c) => c.services);
    if (deploy) for (const s of services) this.instances.deploy(s, `deployed with the descriptor by ${caller.username}`);
    return { applications: created.map((c) => this.appView(c.app)), services: services.map((s) => this.serviceView(s)) };
  }

  /** POST /api/v1/service: adds the microservices of an SLA to existing applications (by applicationID). */
  addServices(caller: Caller, body: unknown, deploy: boolean): { services: ServiceView[] } {
    // A missing or foreign application is answered before the fields: nothing else can be right then.
    const raw = (body as { applications?: unknown } | null)?.applications;
    if (Array.isArray(raw)) {
      raw.forEach((a: { applicationID?: unknown } | null, i) => {
        const id = a?.applicationID;
        if (typeof id !== 'string' || id === '') return;
        const app = this.store.application(id);
        if (!app) throw new ApiError(404, `application ${id} not found`, [{ path: `/applications/${i}/applicationID`, message: 'no such application' }]);
        if (caller.role !== 'admin' && app.owner !== caller.id) throw forbidden(`application ${id}`);
      });
    }
    const checked = validateDescriptor(body, {
      ...this.context(caller),
      applicationIds: 'set',
      existingServiceNames: (appId) => this.store.listServices(appId).map((s) => s.name),
    });
    if (!checked.ok) throw invalid(checked.status, 'invalid descriptor', checked.errors);
    const targets = checked.value.applications.map((a, i) => {
      const app = this.store.application(a.applicationID) as ApplicationRecord;
      a.microservices.forEach((ms, j) => {
        if (this.store.listServices(app.id).some((s) => s.name === ms.microservice_name && s.namespace === ms.microservice_namespace)) {
          throw conflict(`service ${ms.microservice_name}.${ms.microservice_namespace} already exists in this application`, `/applications/${i}/microservices/${j}/microservice_name`);
        }
      });
      return { app, microservices: a.microservices };
    });
    const services = this.store.transaction(() =>
      targets.flatMap((t) => {
        const added = t.microservices.map((ms) => this.insertService(t.app, ms, newId()));
        this.resolveSiblings([...this.store.listServices(t.app.id)]);
        return added.map((s) => this.store.service(s.id) as ServiceRecord);
      }));
    if (deploy) for (const s of services) this.instances.deploy(s, `deployed with the descriptor by ${caller.username}`);
    return { services: services.map((s) => this.serviceView(s)) };
  }

  listApplications(caller: Caller): ApplicationView[] {
    return this.store.listApplications(caller.role === 'admin' ? undefined : caller.id).map((a) => this.appView(a));
  }

  getApplication(caller: Caller, id: string): ApplicationView {
    return this.appView(this.ownedApp(caller, id));
  }

  private hasLiveInstances(serviceIds: string[]): boolean {
    return serviceIds.some((id) => this.store.listInstances(id).some((i) => !isSettled(i.state)));
  }

  /** PUT /api/v1/application/:id: description always; name and namespace only while nothing runs. */
  updateApplication(caller: Caller, id: string, body: unknown): ApplicationView {
    const a = this.ownedApp(caller, id);
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
      const other = this.store.applicationByName(a.owner, next.name, next.namespace);
      if (other && other.id !== a.id) throw conflict(`application ${next.name}.${next.namespace} already exists`, '/application_name');
      if (this.hasLiveInstances(this.store.listServices(a.id).map((s) => s.id))) {
        throw conflict('cannot rename an application while it has instances (their DNS names would change)', '/application_name');
      }
    }
    this.store.updateApplication(next);
    return this.appView(next);
  }

  deleteApplication(caller: Caller, id: string): void {
    const a = this.ownedApp(caller, id);
    for (const s of this.store.listServices(a.id)) this.removeService(s, `application deleted by ${caller.username}`);
    this.store.deleteApplication(a.id);
  }

  listServices(caller: Caller, appId: string): ServiceView[] {
    const a = this.ownedApp(caller, appId);
    return this.store.listServices(a.id).map((s) => this.serviceView(s));
  }

  getService(caller: Caller, id: string): ServiceView {
    return this.serviceView(this.ownedService(caller, id));
  }

  /** PUT /api/v1/service/:id: a whole microservice object; applies to instances deployed afterwards. */
  updateService(caller: Caller, id: string, body: unknown): ServiceView {
    const s = this.ownedService(caller, id);
    const siblings = this.store.listServices(s.app_id).filter((x) => x.id !== s.id).map((x) => x.name);
    const checked = validateMicroservice(body, { ...this.context(caller, s), editingServiceId: s.id }, siblings);
    if (!checked.ok) throw invalid(checked.status, 'invalid microservice', checked.errors);
    const ms = checked.value;
    const renamed = ms.microservice_name !== s.name || ms.microservice_namespace !== s.namespace;
    if (renamed) {
      if (this.store.listServices(s.app_id).some((x) => x.id !== s.id && x.name === ms.microservice_name && x.namespace === ms.microservice_namespace)) {
        throw conflict(`service ${ms.microservice_name}.${ms.microservice_namespace} already exists in this application`, '/microservice_name');
      }
      if (this.hasLiveInstances([s.id])) throw conflict('cannot rename a service while it has instances (their DNS names would change)', '/microservice_name');
    }
    const repin = JSON.stringify(ms.addresses) !== JSON.stringify(s.spec.addresses);
    if (repin && this.hasLiveInstances([s.id])) throw conflict('cannot change pinned addresses while the service has instances', '/addresses');
    const byName = new Map(this.store.listServices(s.app_id).map((x) => [x.name, x.id]));
    for (const c of ms.connectivity) c.target_microservice_id = byName.get(c.target_microservice_id) ?? c.target_microservice_id;
    const next: ServiceRecord = { ...s, name: ms.microservice_name, namespace: ms.microservice_namespace, spec: { ...ms, microserviceID: s.id } };
    this.store.transaction(() => {
      if (repin) {
        this.addresses.releasePolicy(s.id);
        Object.assign(next, this.policyAddresses(ms, s.id));
      }
      this.store.updateService(next);
    });
    return this.serviceView(next);
  }

  private removeService(s: ServiceRecord, reason: string): void {
    this.instances.undeployAll(s.id, reason);
    this.store.transaction(() => {
      this.addresses.releaseService(s.id);
      this.store.deleteService(s.id);
    });
    this.instances.routes.forget(s.id);
  }

  deleteService(caller: Caller, id: string): void {
    this.removeService(this.ownedService(caller, id), `service deleted by ${caller.username}`);
  }

  /**
   * Where a client outside the overlay reaches an instance's host port mappings: the underlay address
   * of its worker (the host part of the tunnel endpoint the worker advertises), null until placed.
   */
  workerAddress(serviceId: string, n: number): string | null {
    const ep = this.store.instance(serviceId, n)?.tunnel_endpoint;
    if (!ep) return null;
    const v6 = /^\[([^\]]+)\]:\d+$/.exec(ep);
    return v6 ? (v6[1] as string) : ep.replace(/:\d+$/, '');
  }

  deployInstance(caller: Caller, id: string): InstanceView {
    const s = this.ownedService(caller, id);
    return this.instances.view(this.instances.deploy(s, `requested by ${caller.username}`));
  }

  undeployInstance(caller: Caller, id: string, n: number): InstanceView {
    const s = this.ownedService(caller, id);
    const i = this.store.instance(s.id, n);
    if (!i) throw notFound(`instance ${n} of service ${id}`);
    if (i.state === 'UNDEPLOYED') throw conflict(`instance ${n} is already undeployed`);
    this.instances.undeploy(i, `undeployed by ${caller.username}`);
    return this.instances.view(this.store.instance(s.id, n) ?? i);
  }
}
