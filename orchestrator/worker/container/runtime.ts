// The `container` runtime: an OCI image run by containerd inside the instance's sandbox (the net
// manager's namespace, the sandbox's cgroup, the instance directory for logs and exit status). The
// image is pulled once and shared; each run gets its own snapshot. stdout/stderr go through a tiny log
// driver that containerd's shim runs, so logs keep flowing while the worker daemon is down, and a
// restarted daemon re-adopts running tasks by asking containerd.
import { writeFileSync, rmSync, rmdirSync, readdirSync, mkdirSync, closeSync, openSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ContainerdClient, ContainerdError, type Mount } from './client.ts';
import { ImageStore, PullError, normalizeRef, type PullRoute } from './images.ts';
import { ImageCache, DEFAULT_IMAGE_CACHE_MB } from './image-cache.ts';
import { importArchive } from './image-import.ts';
import { runtimeSpec, chainId } from './spec.ts';
import { netnsResolvConfPath, removeNetnsResolvConf } from '../../../dns/resolv-conf.ts';
import { exitReason, type ExitInfo, type RunHandle } from '../runtime/exit.ts';
import type { Sandbox } from '../runtime/sandbox.ts';
import type { InstanceRuntime, ProgressReport, RunSpec } from '../runtime/types.ts';
import type { Logger } from '../../protocol/log.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SPEC_TYPE = 'types.containerd.io/opencontainers/runtime-spec/1/Spec';
const LABEL_WORKER = 'canopy.worker';
const LABEL_KEY = 'canopy.key';

/**
 * containerd's shim runs this with the container's stdout on fd 3 and stderr on fd 4; closing fd 5 says
 * "ready", and the task is created only then. Ready comes first: the pipes are the shim's, so what the
 * container writes before the copies run waits in them.
 */
const LOG_DRIVER = `#!/bin/sh
# Canopy's container log driver (written by the worker; containerd's shim runs it with no PATH).
exec 5>&-
d="$2"
/bin/cat <&3 4<&- >>"$d/stdout.log" &
/bin/cat <&4 3<&- >>"$d/stderr.log" &
exec 3<&- 4<&-
wait
`;

export interface ContainerRuntimeOptions {
  socket: string;
  /** containerd namespace holding Canopy's images and containers. */
  namespace?: string;
  snapshotter?: string;
  /** [registry host, mirror URL] pairs. */
  mirrors?: ReadonlyArray<[string, string]>;
  /** Never fall back from the mirrors to a registry's own address (--registry-mirrors-only). */
  mirrorsOnly?: boolean;
  log: Logger;
  /** Called by close() (stops an embedded containerd on a clean exit). */
  onClose?: () => Promise<void>;
  /** How images are pulled (default 'ctr'). */
  pullVia?: PullRoute;
  /** Images take at most this much disk (MB) before unused ones are evicted, least recently used first; 0 = no limit. */
  imageCacheMb?: number;
}

export class ContainerRuntime implements InstanceRuntime {
  readonly kind = 'container';
  readonly client: ContainerdClient;
  readonly images: ImageStore;
  readonly snapshotter: string;
  readonly cache: ImageCache;
  private answering = false;
  private readonly pinger: NodeJS.Timeout;
  private readonly logDriver: string;
  /** The image of every instance this runtime holds (prepared, not torn down): never evicted. */
  private readonly pinned = new Map<string, string>();
  /** The rootfs mounts of each instance's container that prepare() made, for the create() after it. */
  private readonly prepared = new Map<string, Mount[]>();
  /** The pid of each instance's task created and not yet started. */
  private readonly created = new Map<string, number>();

  constructor(readonly sandbox: Sandbox, private readonly o: ContainerRuntimeOptions) {
    this.client = new ContainerdClient(o.socket, o.namespace ?? 'canopy');
    this.snapshotter = o.snapshotter ?? 'overlayfs';
    this.cache = new ImageCache(this.client, this.snapshotter, (o.imageCacheMb ?? DEFAULT_IMAGE_CACHE_MB) * 1048576, o.log);
    this.images = new ImageStore(this.client, join(sandbox.instancesDir, '..', 'registry-hosts'), o.mirrors ?? [], this.snapshotter, o.mirrorsOnly ?? false,
      { used: (name) => this.cache.touch(name), pulled: () => void this.evictUnused() });
    this.images.route = o.pullVia ?? 'ctr';
    this.logDriver = join(sandbox.instancesDir, '..', 'container-log-driver');
    writeFileSync(this.logDriver, LOG_DRIVER, { mode: 0o755 });
    this.pinger = setInterval(() => void this.client.ping(1500).then((ok) => this.noteAnswer(ok)), 2000);
    this.pinger.unref();
  }

  /** Connects and checks that containerd answers (the runtime is advertised only while it does). */
  static async open(sandbox: Sandbox, o: ContainerRuntimeOptions): Promise<ContainerRuntime> {
    const r = new ContainerRuntime(sandbox, o);
    r.noteAnswer(await r.client.ping(3000));
    // The limit may be lower than at the last start.
    if (r.answering) void r.evictUnused();
    return r;
  }

  /** Images in use: those of containers in the namespace (any worker's) and of instances being prepared here. */
  async imagesInUse(): Promise<Set<string>> {
    const r = await this.client.call<{ containers: Array<{ image: string }> }>('containers', 'List', {});
    return new Set([...r.containers.map((c) => c.image), ...this.pinned.values()]);
  }

  /** Imports the images of a docker-save or OCI archive (image-import.ts); their names. */
  async importArchive(file: string): Promise<string[]> {
    const names = await importArchive(this.client, file, this.snapshotter);
    // Just imported counts as used: an air-gapped site's images are not the first to be evicted.
    for (const n of names) await this.cache.touch(n);
    void this.evictUnused();
    this.o.log.info('image archive imported', { file, images: names });
    return names;
  }

  /** Brings the image cache under its limit (least recently used unused images first); the names evicted. */
  evictUnused(): Promise<string[]> {
    return this.cache.evict(() => this.imagesInUse()).catch((e: Error) => {
      this.o.log.warn('image cache eviction failed', { error: e.message });
      return [];
    });
  }

  private noteAnswer(ok: boolean): void {
    if (ok !== this.answering) this.o.log[ok ? 'info' : 'warn'](ok ? 'containerd answers: container runtime available' : 'containerd does not answer: container runtime unavailable', { socket: this.o.socket });
    this.answering = ok;
  }

  available(): boolean {
    return this.answering;
  }

  /** containerd ids are per namespace, and workers on one host may share a containerd. */
  containerId(key: string): string {
    return `${this.sandbox.workerId}-${key}`;
  }

  /**
   * The namespace and cgroup, and beside them (they need nothing of each other) the image, the
   * container and its snapshot: everything but the task, which needs the namespace.
   */
  async prepare(key: string, spec: RunSpec, progress?: ProgressReport): Promise<{ netns: string }> {
    if (!spec.image) throw new PullError('a container needs an image reference in `code`', true);
    const ref = normalizeRef(spec.image);
    // Pinned first: a new image may take the cache over its limit, and this one is never its own victim.
    this.pinned.set(key, ref);
    this.prepared.delete(key);
    this.created.delete(key);
    const t0 = performance.now();
    const took: Record<string, number> = {};
    const timed = <T>(step: string, p: Promise<T>): Promise<T> => p.then((v) => {
      took[`${step}_ms`] = ms(performance.now() - t0);
      return v;
    });
    const [{ netns }, mounts] = await settled([
      timed('sandbox', this.sandbox.prepare(key, spec)),
      timed('container', this.prepareContainer(key, spec, ref, progress)),
    ]);
    this.prepared.set(key, mounts);
    this.o.log.debug('container prepare steps', { instance: key, ...took });
    return { netns };
  }

  /** The image (pulled if needed), what an earlier run left removed, then the container and its snapshot; the rootfs mounts. */
  private async prepareContainer(key: string, spec: RunSpec, ref: string, progress?: ProgressReport): Promise<Mount[]> {
    const id = this.containerId(key);
    // What an earlier run left (a crash between create and start, a previous exit): each run starts clean.
    const [image] = await settled([
      this.images.ensure(ref, (p) => progress?.(`pulling ${ref}: ${mb(p.done)} of ${mb(p.total)} MB`)),
      this.client.removeContainer(id, this.snapshotter),
    ]);
    const netns = this.sandbox.netnsName(key);
    // The container bind-mounts the namespace's resolver config, which the network writes later (while
    // the task is created): an empty file now, filled in place before the task starts.
    ensureFile(netnsResolvConfPath(netns));
    const ociSpec = runtimeSpec(image, {
      cmd: spec.cmd, args: spec.args, environment: spec.environment, memory: spec.memory, vcpus: spec.vcpus,
      pidsMax: this.sandbox.pidsMax, netns, cgroupRel: this.sandbox.cgroupRel(key), hostname: key.slice(0, 63),
    });
    // The container first, then its snapshot: a container refers to its snapshot key from the moment it
    // exists (containerd checks no snapshot at create), so a garbage collection that another deletion
    // triggers in between (containerd runs one at once after any removal) cannot take the new snapshot,
    // which would fail the task with "failed to mount rootfs component". Containerd's own client holds
    // the snapshot with a lease instead, at two more metadata writes (lease create and delete).
    await this.client.call('containers', 'Create', {
      container: {
        id, image: ref, labels: { [LABEL_WORKER]: this.sandbox.workerId, [LABEL_KEY]: key },
        runtime: { name: 'io.containerd.runc.v2' }, spec: { type_url: SPEC_TYPE, value: Buffer.from(JSON.stringify(ociSpec)) },
        snapshotter: this.snapshotter, snapshot_key: id,
      },
    });
    const prepared = await this.client.call<{ mounts: Mount[] }>('snapshots', 'Prepare', {
      snapshotter: this.snapshotter, key: id, parent: chainId(image.diffIds), labels: { [LABEL_WORKER]: this.sandbox.workerId },
    });
    return prepared.mounts;
  }

  /**
   * The task, created and not started: runc has made the container's namespaces and joined the
   * instance's network namespace and cgroup; the entrypoint has not run. Needs no network, so the
   * instance attaches it meanwhile; start() then only starts.
   */
  async create(key: string, spec: RunSpec): Promise<void> {
    this.created.delete(key);
    const mounts = this.prepared.get(key) ?? await this.prepareContainer(key, spec, normalizeRef(spec.image ?? ''));
    this.prepared.delete(key);
    if (!this.sandbox.cgroup(key)) throw new Error(`cgroup for ${key} is missing`);
    rmSync(this.sandbox.exitFile(key), { force: true });
    const t0 = performance.now();
    const logs = `binary://${this.logDriver}?d=${encodeURIComponent(this.sandbox.dir(key))}`;
    const task = await this.client.call<{ pid: number }>('tasks', 'Create', {
      container_id: this.containerId(key), rootfs: mounts, stdin: '', stdout: logs, stderr: logs, terminal: false,
    }, 30_000);
    this.created.set(key, task.pid);
    this.o.log.debug('container task created', { instance: key, task_create_ms: ms(performance.now() - t0) });
  }

  async start(key: string, spec: RunSpec): Promise<RunHandle> {
    if (!this.created.has(key)) await this.create(key, spec);
    const pid = this.created.get(key);
    this.created.delete(key);
    if (pid === undefined) throw new Error(`the task of ${key} was not created`);
    const cgroup = this.sandbox.cgroup(key);
    if (!cgroup) throw new Error(`cgroup for ${key} is missing`);
    const oomBefore = cgroup.oomKills();
    const t0 = performance.now();
    await this.client.call('tasks', 'Start', { container_id: this.containerId(key) }, 30_000);
    this.o.log.debug('container started', { instance: key, task_start_ms: ms(performance.now() - t0) });
    return { pid, exited: this.waitFor(key, spec, oomBefore) };
  }

  /**
   * Resolves when the task's main process ends: containerd's exit status, the OOM verdict from the
   * sandbox's cgroup, the status written to the instance's exit file; then the task is deleted (its
   * shim goes), while the container and snapshot stay until teardown.
   */
  private async waitFor(key: string, spec: RunSpec, oomBefore: number): Promise<ExitInfo> {
    const id = this.containerId(key);
    let code: number | null = null;
    for (;;) {
      try {
        const r = await this.client.call<{ exit_status: number }>('tasks', 'Wait', { container_id: id }, 0);
        code = r.exit_status;
        break;
      } catch (e) {
        // containerd restarting: ask again; the task itself runs on under its shim.
        if (e instanceof ContainerdError && (e.code === grpc.status.UNAVAILABLE || e.code === grpc.status.CANCELLED)) {
          await sleep(500);
          continue;
        }
        break;
      }
    }
    const cg = this.sandbox.cgroup(key);
    const oom = cg !== undefined && cg.oomKills() > oomBefore;
    if (code !== null) writeFileSync(this.sandbox.exitFile(key), `${code}\n`);
    await this.client.call('tasks', 'Delete', { container_id: id }).catch(() => {});
    const reason = code === null && !oom ? 'the task vanished from containerd (no exit status)' : exitReason(code, null, oom, spec.memory);
    return { code, signal: null, oomKilled: oom, reason };
  }

  async adopt(key: string, spec: RunSpec): Promise<RunHandle | undefined> {
    const t = await this.client.task(this.containerId(key));
    if (!t || t.status === 'CREATED' || t.status === 'UNKNOWN') return undefined;
    if (spec.image) this.pinned.set(key, normalizeRef(spec.image));
    const cg = this.sandbox.cgroup(key);
    return { pid: t.pid, exited: this.waitFor(key, spec, cg?.oomKills() ?? 0) };
  }

  async kill(key: string, graceMs: number): Promise<void> {
    // The container's processes are in the sandbox's cgroup: the one cgroup-wide stop serves both runtimes.
    await this.sandbox.kill(key, graceMs);
  }

  async teardown(key: string): Promise<void> {
    this.prepared.delete(key);
    this.created.delete(key);
    await this.client.removeContainer(this.containerId(key), this.snapshotter);
    // The resolver config create() made (the network removes its own on detach; with none, this does).
    await removeNetnsResolvConf(this.sandbox.netnsName(key));
    this.pinned.delete(key);
  }

  async leftovers(): Promise<string[]> {
    const r = await this.client.call<{ containers: Array<{ labels: Record<string, string> }> }>('containers', 'List', {
      filters: [`labels."${LABEL_WORKER}"==${this.sandbox.workerId}`],
    });
    return r.containers.map((c) => c.labels[LABEL_KEY]).filter((k): k is string => typeof k === 'string' && k.length > 0);
  }

  async close(): Promise<void> {
    clearInterval(this.pinger);
    this.client.close();
    await this.o.onClose?.();
    removeRuncParents(this.sandbox.workerId);
  }
}

/**
 * runc creates the instance's cgroup in every v1 hierarchy (devices, cpuset, blkio, …), not only in
 * the controllers the sandbox manages; the empty parents it leaves there go when the runtime closes.
 */
function removeRuncParents(workerId: string, root = '/sys/fs/cgroup'): void {
  let hierarchies: string[];
  try {
    hierarchies = readdirSync(root);
  } catch {
    return;
  }
  for (const h of hierarchies) {
    for (const rel of [`canopy/${workerId}`, 'canopy']) {
      try {
        rmdirSync(join(root, h, rel));
      } catch {
        // absent, or still holding a group in use
      }
    }
  }
}

/**
 * Promise.all that settles every step before it throws: a step still running after another failed
 * (a container being created) would otherwise outlive the start, and escape the teardown after it.
 */
async function settled<T extends readonly unknown[]>(steps: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const r = await Promise.allSettled(steps);
  for (const x of r) if (x.status === 'rejected') throw x.reason;
  return r.map((x) => (x as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

/** Creates `file` (and its directory) empty if it is not there; leaves its content if it is. */
function ensureFile(file: string): void {
  mkdirSync(dirname(file), { recursive: true });
  closeSync(openSync(file, 'a'));
}

function ms(x: number): number {
  return Math.round(x * 10) / 10;
}

function mb(bytes: number): string {
  return (bytes / 1048576).toFixed(1);
}
