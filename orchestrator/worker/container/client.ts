// A small containerd client over its gRPC socket, from containerd's own .proto files (vendored beside
// this file). Every call carries the `containerd-namespace` metadata; errors keep containerd's words.
import * as grpc from '@grpc/grpc-js';
import * as loader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';

const PROTO_DIR = join(dirname(fileURLToPath(import.meta.url)), 'proto');
const API = 'github.com/containerd/containerd/api/services';
const SERVICES = ['version', 'containers', 'tasks', 'snapshots', 'images', 'content', 'leases', 'diff'] as const;
type ServiceName = (typeof SERVICES)[number];
const SERVICE_CLASS: Record<ServiceName, string> = {
  version: 'Version', containers: 'Containers', tasks: 'Tasks', snapshots: 'Snapshots', images: 'Images', content: 'Content',
  leases: 'Leases', diff: 'Diff',
};

/** A containerd mount (rootfs of a snapshot). */
export interface Mount {
  type: string;
  source: string;
  target?: string;
  options: string[];
}

export interface Any {
  type_url: string;
  value: Buffer;
}

/** Task status names as containerd's enum spells them. */
export type TaskStatus = 'UNKNOWN' | 'CREATED' | 'RUNNING' | 'STOPPED' | 'PAUSED' | 'PAUSING';

export interface TaskInfo {
  id: string;
  pid: number;
  status: TaskStatus;
  exit_status: number;
}

export class ContainerdError extends Error {
  constructor(readonly code: grpc.status, message: string) {
    super(message);
  }

  get notFound(): boolean {
    return this.code === grpc.status.NOT_FOUND;
  }
}

type Unary = (req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: unknown) => void) => void;
type Stream = (req: object, md: grpc.Metadata, opts?: grpc.CallOptions) => grpc.ClientReadableStream<unknown>;

let packageDef: grpc.GrpcObject | undefined;

function definitions(): grpc.GrpcObject {
  packageDef ??= grpc.loadPackageDefinition(loader.loadSync(
    SERVICES.map((s) => `${API}/${s}/v1/${s}.proto`),
    { includeDirs: [PROTO_DIR], keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true },
  ));
  return packageDef;
}

export class ContainerdClient {
  private readonly clients = new Map<ServiceName, grpc.Client>();

  constructor(readonly socket: string, readonly namespace: string) {
    const defs = definitions();
    const root = (defs.containerd as grpc.GrpcObject).services as grpc.GrpcObject;
    for (const s of SERVICES) {
      const Ctor = ((root[s] as grpc.GrpcObject).v1 as grpc.GrpcObject)[SERVICE_CLASS[s]] as grpc.ServiceClientConstructor;
      this.clients.set(s, new Ctor(`unix://${socket}`, grpc.credentials.createInsecure()));
    }
  }

  private md(lease?: string): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set('containerd-namespace', this.namespace);
    // What is made under a lease is kept from garbage collection until the lease goes.
    if (lease) md.set('containerd-lease', lease);
    return md;
  }

  /** One unary call; `timeoutMs` 0 = none (Tasks.Wait blocks until the task exits). */
  call<T>(service: ServiceName, method: string, req: object, timeoutMs = 10_000, lease?: string): Promise<T> {
    const c = this.clients.get(service) as unknown as Record<string, Unary>;
    const fn = c[method];
    if (!fn) return Promise.reject(new Error(`containerd ${service} has no method ${method}`));
    const opts: grpc.CallOptions = timeoutMs > 0 ? { deadline: Date.now() + timeoutMs } : {};
    return new Promise((resolve, reject) => {
      fn.call(c, req, this.md(lease), opts, (e, r) => {
        if (e) reject(new ContainerdError(e.code, `containerd ${service}.${method}: ${e.details || e.message}`));
        else resolve(r as T);
      });
    });
  }

  /** A server-streaming call, collected. */
  async stream<T>(service: ServiceName, method: string, req: object, timeoutMs = 10_000): Promise<T[]> {
    const c = this.clients.get(service) as unknown as Record<string, Stream>;
    const s = c[method]!.call(c, req, this.md(), { deadline: Date.now() + timeoutMs });
    const out: T[] = [];
    try {
      for await (const m of s) out.push(m as T);
    } catch (e) {
      const err = e as grpc.ServiceError;
      throw new ContainerdError(err.code, `containerd ${service}.${method}: ${err.details || err.message}`);
    }
    return out;
  }

  /**
   * Runs `fn` under a fresh lease: what it makes is kept from garbage collection until the lease is
   * deleted after it (or expires by itself after `ttlMs`, should the worker die in between).
   */
  async withLease<T>(prefix: string, ttlMs: number, fn: (lease: string) => Promise<T>): Promise<T> {
    const id = `${prefix}-${randomBytes(6).toString('hex')}`;
    await this.call('leases', 'Create', { id, labels: { 'containerd.io/gc.expire': new Date(Date.now() + ttlMs).toISOString() } });
    try {
      return await fn(id);
    } finally {
      await this.call('leases', 'Delete', { id }).catch(() => {});
    }
  }

  /** Whether containerd answers now. */
  async ping(timeoutMs = 1000): Promise<boolean> {
    try {
      await this.call('version', 'Version', {}, timeoutMs);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Streams `chunks` into the content store as blob `expected` (Content.Write: WRITE messages, then a
   * COMMIT with its labels); containerd checks size and digest. Under `lease`.
   */
  async writeContent(ref: string, expected: string, total: number, chunks: AsyncIterable<Uint8Array>, labels: Record<string, string>, lease: string): Promise<void> {
    const c = this.clients.get('content') as unknown as Record<string, (md: grpc.Metadata, opts?: grpc.CallOptions) => grpc.ClientDuplexStream<object, unknown>>;
    const s = c.Write!.call(c, this.md(lease), {});
    const done = new Promise<void>((resolve, reject) => {
      s.on('data', () => {});
      s.on('error', (e: grpc.ServiceError) => reject(new ContainerdError(e.code, `containerd content.Write: ${e.details || e.message}`)));
      s.on('end', () => resolve());
    });
    done.catch(() => {});
    let offset = 0;
    // Waits for room in the stream, or fails with containerd's error if it ended the stream.
    const send = (m: object): Promise<void> => Promise.race([done.then(() => {
      throw new ContainerdError(grpc.status.ABORTED, `containerd content.Write: ended before ${expected} was committed`);
    }), new Promise<void>((resolve) => {
      if (s.write(m)) resolve();
      else s.once('drain', () => resolve());
    })]);
    for await (const chunk of chunks) {
      await send({ action: 'WRITE', ref, total, expected, offset, data: chunk });
      offset += chunk.length;
    }
    await send({ action: 'COMMIT', ref, total, expected, offset, labels });
    s.end();
    await done;
  }

  async readContent(digest: string): Promise<Buffer> {
    const parts = await this.stream<{ data: Buffer }>('content', 'Read', { digest, offset: 0, size: 0 });
    return Buffer.concat(parts.map((p) => p.data));
  }

  async task(id: string): Promise<TaskInfo | undefined> {
    try {
      const r = await this.call<{ process: TaskInfo }>('tasks', 'Get', { container_id: id });
      return r.process;
    } catch (e) {
      if (e instanceof ContainerdError && e.notFound) return undefined;
      throw e;
    }
  }

  /** Deletes what exists of a container: its task (killed first), the container and its snapshot. */
  async removeContainer(id: string, snapshotter: string): Promise<void> {
    const t = await this.task(id);
    if (t) {
      if (t.status !== 'STOPPED' && t.status !== 'CREATED') {
        await ignoreNotFound(this.call('tasks', 'Kill', { container_id: id, signal: 9, all: true }));
        await ignoreNotFound(this.call('tasks', 'Wait', { container_id: id }, 10_000));
      }
      await this.call('tasks', 'Delete', { container_id: id }).catch(async (e: unknown) => {
        // The task's own watcher deletes it too once Tasks.Wait returns: the loser of the two hears
        // NotFound, or "ttrpc: closed" from a shim already going. Either way the task is gone.
        if ((e instanceof ContainerdError && e.notFound) || (await this.task(id)) === undefined) return;
        throw e;
      });
    }
    // containerd removes a snapshot whatever refers to it: both at once.
    await Promise.all([ignoreNotFound(this.call('containers', 'Delete', { id })), ignoreNotFound(this.call('snapshots', 'Remove', { snapshotter, key: id }))]);
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
  }
}

export async function ignoreNotFound<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (e) {
    if (e instanceof ContainerdError && e.notFound) return undefined;
    throw e;
  }
}
