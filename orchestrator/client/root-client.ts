// A typed client of root's REST API (SPEC §7) for the CLI. Every failed call throws ApiCallError
// carrying the server's own message and its per-field errors, so the user reads what root said.
import type { InstanceView } from '../root/instance-view.ts';
import type { ApplicationView, ServiceView } from '../root/catalog.ts';
import { API_V1 } from '../root/api/paths.ts';

export interface FieldProblem {
  path: string;
  message: string;
}

export class ApiCallError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errors: FieldProblem[] = [],
  ) {
    super(message);
    this.name = 'ApiCallError';
  }

  /** The message and one indented line per offending field. */
  describe(): string {
    return [this.message, ...this.errors.map((e) => `  ${e.path || '/'}: ${e.message}`)].join('\n');
  }
}

// The answers' shapes are root's own view types: one definition for server and client.
export type InstanceInfo = InstanceView;
export type InstanceEvent = InstanceView['history'][number];
export type ServiceInfo = ServiceView;
export type ApplicationInfo = ApplicationView;

export interface ClusterInfo {
  cluster_id: string;
  name: string;
  location: string;
  api_url: string;
  active: boolean;
  status: string;
  registered_at: string;
  last_seen: string | null;
  aggregate: unknown;
}

export interface LoginAnswer {
  token: string;
  username: string;
  role: 'admin' | 'user';
  expires_in: number;
}

export interface RootClientOptions {
  /**
   * Root's URL, e.g. http://127.0.0.1:10000, or several root replicas' URLs separated by commas: a
   * request goes to the one that answered last, and to the next when that one is unreachable or
   * answers 503 (both mean the request changed nothing).
   */
  url: string;
  token?: string;
  /** Per request; default 15 s. */
  timeoutMs?: number;
}

/** Unreachable-errors of changes that may have reached root before the connection failed. */
const unsafeToRetry = new WeakSet<Error>();

export class RootClient {
  /** The URL (or list) as given: the identity of this root for cached tokens. */
  readonly url: string;
  token: string | undefined;
  private readonly timeoutMs: number;
  private readonly urls: string[];
  private current = 0;

  constructor(o: RootClientOptions) {
    this.urls = o.url.split(',').map((u) => u.trim().replace(/\/+$/, '')).filter((u) => u !== '');
    if (this.urls.length === 0) throw new Error('no root URL given');
    this.url = this.urls.join(',');
    this.token = o.token;
    this.timeoutMs = o.timeoutMs ?? 15_000;
  }

  /** The replica requests go to now. */
  get currentUrl(): string {
    return this.urls[this.current] as string;
  }

  private async call<T>(method: string, path: string, body?: unknown, raw?: string): Promise<T> {
    let last: unknown;
    for (let k = 0; k < this.urls.length; k++) {
      const at = (this.current + k) % this.urls.length;
      try {
        const answer = await this.callOne<T>(this.urls[at] as string, method, path, body, raw);
        this.current = at;
        return answer;
      } catch (e) {
        if (!(e instanceof ApiCallError) || (e.status !== 0 && e.status !== 503) || unsafeToRetry.has(e)) throw e;
        last = e;
      }
    }
    throw last;
  }

  private async callOne<T>(base: string, method: string, path: string, body?: unknown, raw?: string): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let payload: string | undefined;
    if (raw !== undefined) payload = raw;
    else if (body !== undefined) payload = JSON.stringify(body);
    if (payload !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(`${base}${path}`, { method, headers, body: payload, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.code ?? cause?.message ?? (e as Error).message;
      const err = new ApiCallError(0, `root at ${base} is unreachable (${why})`);
      // A timeout may have reached root: a change goes elsewhere only if it cannot have arrived.
      const neverArrived = ['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH'].includes(cause?.code ?? '');
      if (method !== 'GET' && !neverArrived) unsafeToRetry.add(err);
      throw err;
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (!res.ok) {
      const o = (json ?? {}) as { error?: unknown; message?: unknown; errors?: unknown };
      const msg = typeof o.error === 'string' ? o.error : typeof o.message === 'string' ? o.message : (text.slice(0, 200) || res.statusText);
      const errors = Array.isArray(o.errors)
        ? o.errors.filter((x): x is FieldProblem => typeof x === 'object' && x !== null && typeof (x as FieldProblem).message === 'string')
        : [];
      throw new ApiCallError(res.status, `${method} ${path}: HTTP ${res.status}: ${msg}`, errors);
    }
    if (json === undefined && text !== '') throw new ApiCallError(res.status, `${method} ${path}: answer is not JSON`);
    return json as T;
  }

  async login(username: string, password: string): Promise<LoginAnswer> {
    const a = await this.call<LoginAnswer>('POST', `${API_V1}/auth/login`, { username, password });
    this.token = a.token;
    return a;
  }

  /** Posts a whole SLA (the file's text, so root reports errors at their JSON paths as written). */
  createApplications(sla: string, deploy: boolean): Promise<{ applications: ApplicationInfo[]; services: ServiceInfo[] }> {
    return this.call('POST', `${API_V1}/application${deploy ? '?deploy=true' : ''}`, undefined, sla);
  }

  applications(): Promise<ApplicationInfo[]> {
    return this.call('GET', `${API_V1}/applications`);
  }

  application(id: string): Promise<ApplicationInfo> {
    return this.call('GET', `${API_V1}/application/${encodeURIComponent(id)}`);
  }

  deleteApplication(id: string): Promise<{ deleted: string }> {
    return this.call('DELETE', `${API_V1}/application/${encodeURIComponent(id)}`);
  }

  services(appId: string): Promise<ServiceInfo[]> {
    return this.call('GET', `${API_V1}/services/${encodeURIComponent(appId)}`);
  }

  service(id: string): Promise<ServiceInfo> {
    return this.call('GET', `${API_V1}/service/${encodeURIComponent(id)}`);
  }

  deleteService(id: string): Promise<{ deleted: string }> {
    return this.call('DELETE', `${API_V1}/service/${encodeURIComponent(id)}`);
  }

  deployInstance(serviceId: string): Promise<InstanceInfo> {
    return this.call('POST', `${API_V1}/service/${encodeURIComponent(serviceId)}/instance`, {});
  }

  undeployInstance(serviceId: string, n: number): Promise<InstanceInfo> {
    return this.call('DELETE', `${API_V1}/service/${encodeURIComponent(serviceId)}/instance/${n}`);
  }

  clusters(activeOnly = false): Promise<ClusterInfo[]> {
    return this.call('GET', activeOnly ? `${API_V1}/clusters/active` : `${API_V1}/clusters`);
  }

  /** Every service the caller can see, with its application. */
  async allServices(): Promise<{ app: ApplicationInfo; service: ServiceInfo }[]> {
    const out: { app: ApplicationInfo; service: ServiceInfo }[] = [];
    for (const app of await this.applications()) {
      for (const service of await this.services(app.applicationID)) out.push({ app, service });
    }
    return out;
  }
}
