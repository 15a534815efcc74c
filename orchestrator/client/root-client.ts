// A typed client of root's REST API (SPEC §7) for the CLI. Every failed call throws ApiCallError
// carrying the server's own message and its per-field errors, so the user reads what root said.
import type { InstanceView } from '../root/instance-view.ts';
import type { ApplicationView, ServiceView } from '../root/catalog.ts';
import { API_V1 } from '../root/api/paths.ts';
import { controlFetch } from '../protocol/tls.ts';

/** What a revocation's answer says about root's rotated overlay key (docs/protocols.md). */
export interface OverlayKeyNews {
  key_id: number;
  clusters_told: string[];
  clusters_missed: Array<{ cluster: string; error: string }>;
}

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
  /** Absent from roots older than #20. */
  refresh_token?: string;
  refresh_expires_in?: number;
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
  /** Called once when root refuses the token (it expired: access tokens live 15 min); then the call is retried. */
  renew: (() => Promise<void>) | undefined;
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

  private async call<T>(method: string, path: string, body?: unknown, raw?: string, asText = false): Promise<T> {
    try {
      return await this.callAny<T>(method, path, body, raw, asText);
    } catch (e) {
      if (!(e instanceof ApiCallError) || e.status !== 401 || !this.renew || !this.token) throw e;
      await this.renew();
      return this.callAny<T>(method, path, body, raw, asText);
    }
  }

  /** The replica requests go to now. */
  get currentUrl(): string {
    return this.urls[this.current] as string;
  }

  private async callAny<T>(method: string, path: string, body?: unknown, raw?: string, asText = false): Promise<T> {
    let last: unknown;
    for (let k = 0; k < this.urls.length; k++) {
      const at = (this.current + k) % this.urls.length;
      try {
        const answer = await this.callOne<T>(this.urls[at] as string, method, path, body, raw, asText);
        this.current = at;
        return answer;
      } catch (e) {
        if (!(e instanceof ApiCallError) || (e.status !== 0 && e.status !== 503) || unsafeToRetry.has(e)) throw e;
        last = e;
      }
    }
    throw last;
  }

  private async callOne<T>(base: string, method: string, path: string, body?: unknown, raw?: string, asText = false): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let payload: string | undefined;
    if (raw !== undefined) payload = raw;
    else if (body !== undefined) payload = JSON.stringify(body);
    if (payload !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await controlFetch(`${base}${path}`, { method, headers, body: payload, signal: AbortSignal.timeout(this.timeoutMs) });
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
    if (asText) return text as T;
    if (json === undefined && text !== '') throw new ApiCallError(res.status, `${method} ${path}: answer is not JSON`);
    return json as T;
  }

  /** A new access token for a refresh token (POST /api/v1/auth/refresh). */
  async refresh(refreshToken: string): Promise<LoginAnswer> {
    const saved = this.token;
    this.token = refreshToken;
    try {
      const a = await this.callAny<LoginAnswer>('POST', `${API_V1}/auth/refresh`, {});
      this.token = a.token;
      return a;
    } catch (e) {
      this.token = saved;
      throw e;
    }
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

  /** The newest `bytes` of an instance's stdout or stderr, read by root through its cluster and worker. */
  instanceLogs(serviceId: string, n: number, stream: 'stdout' | 'stderr', bytes = 65536): Promise<string> {
    return this.call('GET', `${API_V1}/service/${encodeURIComponent(serviceId)}/instance/${n}/logs?stream=${stream}&bytes=${bytes}`, undefined, undefined, true);
  }

  /** Revokes a cluster (admins), by name or id. */
  revokeCluster(cluster: string): Promise<{ revoked: string; cluster_id: string; instances_replaced?: number; overlay_key?: OverlayKeyNews }> {
    return this.call('POST', `${API_V1}/clusters/${encodeURIComponent(cluster)}/revoke`, {});
  }

  /** Revokes a worker (admins); `cluster` names its cluster when root has more than one. */
  revokeWorker(worker: string, cluster?: string): Promise<{ revoked: string; cluster: string; overlay_key?: OverlayKeyNews }> {
    return this.call('POST', `${API_V1}/workers/${encodeURIComponent(worker)}/revoke${cluster ? `?cluster=${encodeURIComponent(cluster)}` : ''}`, {});
  }

  clusters(activeOnly = false): Promise<ClusterInfo[]> {
    return this.call('GET', activeOnly ? `${API_V1}/clusters/active` : `${API_V1}/clusters`);
  }

  /** Every service the caller can see, with its application. */
  async allServices(): Promise<{ app: ApplicationInfo; service: ServiceInfo }[]> {
    // One request per application, all at once (`canopy status` waits for the slowest, not the sum).
    const apps = await this.applications();
    const services = await Promise.all(apps.map((app) => this.services(app.applicationID)));
    return apps.flatMap((app, i) => services[i]!.map((service) => ({ app, service })));
  }
}
