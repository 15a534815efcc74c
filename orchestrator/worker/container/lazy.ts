// The container runtime as the node engine holds it: loaded on first use. The gRPC client, its proto
// files and the runtime cost an idle worker ~9 MB (issue 16: a worker in 64 MB), and a worker that
// runs no container never needs them. Until then, whether containerd answers is asked with one bare
// gRPC call over node:http2 (Version, an empty message), and the containers a crashed daemon left
// are listed with `ctr`; everything else loads the runtime, which then answers for itself.
import { connect, constants } from 'node:http2';
import { connect as connectSocket } from 'node:net';
import { execFile } from 'node:child_process';
import type { ContainerRuntime, ContainerRuntimeOptions } from './runtime.ts';
import type { RunHandle } from '../runtime/exit.ts';
import type { Sandbox } from '../runtime/sandbox.ts';
import type { InstanceRuntime, ProgressReport, RunSpec } from '../runtime/types.ts';

const PING_EVERY_MS = 2000;

/**
 * containerd's Version over gRPC without a gRPC library: a unary call is an HTTP/2 POST of a
 * length-prefixed message (5 zero bytes for an empty one), answered with grpc-status 0.
 */
export function pingContainerd(socket: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (ok: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      session.close();
      session.destroy();
      resolve(ok);
    };
    const session = connect('http://localhost', { createConnection: () => connectSocket(socket) });
    const timer = setTimeout(() => finish(false), timeoutMs);
    session.on('error', () => finish(false));
    const req = session.request({
      [constants.HTTP2_HEADER_METHOD]: 'POST',
      [constants.HTTP2_HEADER_PATH]: '/containerd.services.version.v1.Version/Version',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    let status: string | undefined;
    req.on('response', (h) => {
      if (Number(h[constants.HTTP2_HEADER_STATUS]) !== 200) finish(false);
      // A trailers-only answer carries the status in the headers.
      if (h['grpc-status'] !== undefined) status = String(h['grpc-status']);
    });
    req.on('trailers', (t) => { status = String(t['grpc-status']); });
    req.on('data', () => {});
    req.on('end', () => finish(status === '0'));
    req.on('error', () => finish(false));
    req.end(Buffer.alloc(5));
  });
}

export class LazyContainerRuntime implements InstanceRuntime {
  readonly kind = 'container';
  private loaded: Promise<ContainerRuntime> | undefined;
  private real: ContainerRuntime | undefined;
  private answering = false;
  /** Whether leftovers() has listed this worker's containers, and the keys it found. */
  private listed = false;
  private readonly found = new Set<string>();
  private readonly pinger: NodeJS.Timeout;

  constructor(readonly sandbox: Sandbox, private readonly o: ContainerRuntimeOptions) {
    this.pinger = setInterval(() => void this.ping(1500), PING_EVERY_MS);
    this.pinger.unref();
  }

  /** Asks containerd once before the engine advertises anything. */
  static async open(sandbox: Sandbox, o: ContainerRuntimeOptions): Promise<LazyContainerRuntime> {
    const r = new LazyContainerRuntime(sandbox, o);
    await r.ping(3000);
    return r;
  }

  /** Whether the runtime has been loaded (tests and /metrics). */
  get isLoaded(): boolean {
    return this.real !== undefined;
  }

  private async ping(timeoutMs: number): Promise<void> {
    if (this.loaded) return;
    const ok = await pingContainerd(this.o.socket, timeoutMs);
    if (this.loaded) return;
    if (ok !== this.answering) {
      this.o.log[ok ? 'info' : 'warn'](ok ? 'containerd answers: container runtime available' : 'containerd does not answer: container runtime unavailable', { socket: this.o.socket });
    }
    this.answering = ok;
  }

  /** The runtime itself, loaded once; from then on it pings and answers for itself. */
  load(): Promise<ContainerRuntime> {
    this.loaded ??= (async () => {
      clearInterval(this.pinger);
      const { ContainerRuntime } = await import('./runtime.ts');
      this.real = await ContainerRuntime.open(this.sandbox, this.o);
      this.o.log.debug('container runtime loaded', { socket: this.o.socket });
      return this.real;
    })();
    return this.loaded;
  }

  available(): boolean {
    return this.real ? this.real.available() : this.answering;
  }

  async prepare(key: string, spec: RunSpec, progress?: ProgressReport): Promise<{ netns: string }> {
    return (await this.load()).prepare(key, spec, progress);
  }

  async create(key: string, spec: RunSpec): Promise<void> {
    return (await this.load()).create(key, spec);
  }

  async start(key: string, spec: RunSpec): Promise<RunHandle> {
    return (await this.load()).start(key, spec);
  }

  async adopt(key: string, spec: RunSpec): Promise<RunHandle | undefined> {
    return (await this.load()).adopt(key, spec);
  }

  async kill(key: string, graceMs: number): Promise<void> {
    // Cgroup-wide, as the runtime itself does it: nothing of containerd is needed.
    if (this.real) return this.real.kill(key, graceMs);
    await this.sandbox.kill(key, graceMs);
  }

  /** Every instance's teardown passes here, process instances' too: one that containerd holds
   *  nothing for must not load the runtime (the engine tears each key down in every runtime). */
  async teardown(key: string): Promise<void> {
    if (!this.loaded && this.listed && !this.found.has(key)) return;
    this.found.delete(key);
    return (await this.load()).teardown(key);
  }

  async importArchive(file: string): Promise<string[]> {
    return (await this.load()).importArchive(file);
  }

  /** This worker's containers (labelled with its id): through `ctr` while the runtime is not loaded. */
  async leftovers(): Promise<string[]> {
    if (this.real) return this.real.leftovers();
    const worker = this.sandbox.workerId;
    const ids = await new Promise<string[]>((resolve, reject) => {
      execFile('ctr', ['-a', this.o.socket, '-n', this.o.namespace ?? 'canopy', 'containers', 'ls', '-q', `labels."canopy.worker"==${worker}`],
        { timeout: 10_000 }, (err, stdout, stderr) => {
          if (err) reject(new Error(`listing this worker's containers: ${stderr.trim() || err.message}`));
          else resolve(stdout.split('\n').map((l) => l.trim()).filter(Boolean));
        });
    });
    // The runtime names a container `<worker>-<key>` (ContainerRuntime.containerId).
    const keys = ids.filter((id) => id.startsWith(`${worker}-`)).map((id) => id.slice(worker.length + 1));
    // Until the runtime loads, containerd holds containers only for these keys: an earlier daemon's.
    for (const k of keys) this.found.add(k);
    this.listed = true;
    return keys;
  }

  async close(): Promise<void> {
    clearInterval(this.pinger);
    if (this.loaded) await (await this.loaded).close();
    else await this.o.onClose?.();
  }
}
