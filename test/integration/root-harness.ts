// A real root server on loopback for the root tests, with a throwaway data directory, and a small
// HTTP client for its API.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jsonLogger } from '../../orchestrator/protocol/log.ts';
import { RootServer, type RootOptions } from '../../orchestrator/root/server.ts';

export const ADMIN_PASSWORD = 'correct-horse-battery';
export const CLUSTER_KEY = 'test-join-key';

export interface Answer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- test client: answers are whatever JSON the server sent
  text: string;
}

export class RootHarness {
  root!: RootServer;

  private constructor(readonly dir: string, private readonly opts: Partial<RootOptions>) {}

  static async start(opts: Partial<RootOptions> = {}, dir = mkdtempSync(join(tmpdir(), 'canopy-root-'))): Promise<RootHarness> {
    const h = new RootHarness(dir, opts);
    await h.boot();
    return h;
  }

  private async boot(): Promise<void> {
    this.root = await RootServer.start({
      dataDir: this.dir, host: '127.0.0.1', port: 0, adminPassword: ADMIN_PASSWORD, clusterKey: CLUSTER_KEY,
      log: jsonLogger({ component: 'root' }, 'error'), announce: () => undefined, ...this.opts,
    });
  }

  get url(): string {
    return this.root.url;
  }

  /** Stops and starts the server on the same database. */
  async restart(): Promise<void> {
    await this.root.close();
    await this.boot();
  }

  async close(): Promise<void> {
    await this.root.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  async call(method: string, path: string, body?: unknown, token?: string, raw?: { text: string; contentType: string }): Promise<Answer> {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    let payload: string | undefined;
    if (raw) {
      headers['content-type'] = raw.contentType;
      payload = raw.text;
    } else if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    const res = await fetch(`${this.url}${path}`, { method, headers, body: payload });
    const text = await res.text();
    let parsed: unknown = undefined;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed, text };
  }

  async login(username: string, password: string): Promise<string> {
    const r = await this.call('POST', '/api/v1/auth/login', { username, password });
    if (r.status !== 200) throw new Error(`login ${username}: ${r.status} ${r.text}`);
    return r.body.token as string;
  }

  async admin(): Promise<string> {
    return this.login('admin', ADMIN_PASSWORD);
  }

  /** Creates a user and returns its token. */
  async user(name: string, adminToken: string): Promise<string> {
    const r = await this.call('POST', '/api/v1/users', { username: name, password: `${name}-password` }, adminToken);
    if (r.status !== 201) throw new Error(`create user ${name}: ${r.status} ${r.text}`);
    return this.login(name, `${name}-password`);
  }
}
