// Images for the container runtime: references normalised as Docker does, registry mirrors written as
// containerd's hosts.toml tree, pulls (resolve, fetch, unpack) through `ctr` with that tree, and the
// image's config read back through the content API. Pull progress comes from containerd's active
// ingests (Content.ListStatuses) while `ctr` runs.
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { isIP } from 'node:net';
import { hostArch } from '../host-resources.ts';
import { ContainerdError, type ContainerdClient } from './client.ts';
import { chainId, type ImageInfo, type ImageConfig } from './spec.ts';
import { pullThroughApi } from './pull-api.ts';

const DOCKER_HUB = 'docker.io';

/** `nginx` → `docker.io/library/nginx:latest`; `host:5000/a/b` → `host:5000/a/b:latest`. */
export function normalizeRef(ref: string): string {
  const r = ref.trim();
  if (!/^[a-z0-9]([a-zA-Z0-9._:@/-]*[a-zA-Z0-9])?$/.test(r) || r.includes('//')) throw new PullError(`"${ref}" is not an image reference`, true);
  let name = r;
  const slash = r.indexOf('/');
  const first = slash < 0 ? '' : r.slice(0, slash);
  if (slash < 0) name = `${DOCKER_HUB}/library/${r}`;
  else if (!(first.includes('.') || first.includes(':') || first === 'localhost')) name = `${DOCKER_HUB}/${r}`;
  const last = name.slice(name.lastIndexOf('/') + 1);
  if (!name.includes('@') && !last.includes(':')) name = `${name}:latest`;
  return name;
}

export function registryHost(normalized: string): string {
  return normalized.slice(0, normalized.indexOf('/'));
}

export class PullError extends Error {
  /** True when retrying cannot help (no such image, refused credentials, bad reference). */
  constructor(message: string, readonly permanent: boolean) {
    super(message);
  }
}

/** `docker.io=http://10.0.0.5:5000` → ['docker.io', 'http://10.0.0.5:5000']. */
export function parseMirror(s: string): [string, string] {
  const i = s.indexOf('=');
  const host = s.slice(0, i);
  const url = s.slice(i + 1);
  if (i <= 0 || !/^[a-zA-Z0-9.-]+(:\d+)?$/.test(host)) throw new Error(`--registry-mirror must be <registry host>=<url>: ${s}`);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`--registry-mirror: not a URL: ${url}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`--registry-mirror: only http:// or https:// mirrors: ${url}`);
  return [host, `${u.protocol}//${u.host}`];
}

export function isLoopback(host: string): boolean {
  const h = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return h === 'localhost' || (isIP(h) === 4 && h.startsWith('127.')) || h === '::1';
}

/**
 * containerd's hosts.toml tree: mirrors first (plain HTTP only where the mirror says http://), then the
 * registry itself; loopback registries are plain HTTP, every other one HTTPS. With `mirrorsOnly`, a
 * mirrored registry's `server` (containerd's last resort after the mirrors, tried even after a mirror's
 * "not found") is its first mirror, so a pull never leaves for the registry's own address.
 */
export function writeHostsDir(dir: string, mirrors: ReadonlyArray<[string, string]>, extraHosts: readonly string[], mirrorsOnly = false): void {
  rmSync(dir, { recursive: true, force: true });
  const hosts = new Set([...mirrors.map(([h]) => h), ...extraHosts]);
  for (const host of hosts) {
    const own = mirrors.filter(([h]) => h === host).map(([, url]) => url);
    const upstream = host === DOCKER_HUB ? 'https://registry-1.docker.io' : `${isLoopback(host) ? 'http' : 'https'}://${host}`;
    const server = mirrorsOnly && own.length > 0 ? own[0]! : upstream;
    const lines = [`server = "${server}"`, ''];
    // A mirror at the registry's own address (`10.0.0.5:5000=http://10.0.0.5:5000`) is how an
    // operator says "plain HTTP for this registry".
    // The mirror stays a [host] entry even when it is also the server: containerd 1.6 cannot decode a
    // hosts.toml without a host tree and then silently uses the registry's default address.
    for (const url of own) lines.push(`[host."${url}"]`, '  capabilities = ["pull", "resolve"]', '');
    mkdirSync(join(dir, host), { recursive: true });
    writeFileSync(join(dir, host, 'hosts.toml'), lines.join('\n'));
  }
}

/** The registry's words from ctr's stderr, and whether retrying could help. */
export function pullFailure(ref: string, stderr: string): PullError {
  // containerd tries mirrors, then the registry; a host that answered 404 is the registry's verdict
  // even when a later host failed differently (ctr prints only the last error).
  const notFound = /response was http\.StatusNotFound.*?host="?([^"\s]+)/.exec(stderr);
  if (notFound) return new PullError(`pull of ${ref} failed: ${ref}: not found at ${notFound[1]}`, true);
  const line = stderr.split('\n').map((l) => l.trim()).filter((l) => l.length > 0 && !/^(time=|elapsed|[a-z]+-sha256)/.test(l)).pop() ?? 'ctr failed';
  const words = line.replace(/^ctr: /, '');
  const permanent = /not found|unauthorized|denied|manifest unknown|no match for platform|invalid reference|name unknown/i.test(words);
  return new PullError(`pull of ${ref} failed: ${words}`, permanent);
}

export interface PullProgress {
  done: number;
  total: number;
}

/** How images are pulled: `ctr images pull`, or the client's work done against containerd's API (pull-api.ts). */
export type PullRoute = 'ctr' | 'api';

export class ImageStore {
  private readonly pulls = new Map<string, Promise<ImageInfo>>();
  /** Config and layers of images read before, with the digest they were read at. */
  private readonly known = new Map<string, { digest: string; info: ImageInfo }>();
  /** Set by the runtime (docs/decisions.md says which is the default and why). */
  route: PullRoute = 'ctr';

  constructor(
    private readonly client: ContainerdClient,
    private readonly hostsDir: string,
    private readonly mirrors: ReadonlyArray<[string, string]>,
    readonly snapshotter: string,
    /** Pull only through mirrors and from loopback registries (--registry-mirrors-only). */
    private readonly mirrorsOnly = false,
    private readonly hooks: {
      /** Every use of an image (its least-recently-used order). */
      used?: (name: string) => Promise<void>;
      /** A new image is on disk (the cache may be over its limit now). */
      pulled?: (name: string) => void;
    } = {},
  ) {
    writeHostsDir(hostsDir, mirrors, [], mirrorsOnly);
  }

  /** The image's config and layers, pulling and unpacking it first if needed. One pull per reference at a time. */
  ensure(ref: string, progress?: (p: PullProgress) => void): Promise<ImageInfo> {
    const name = normalizeRef(ref);
    let p = this.pulls.get(name);
    if (!p) {
      p = this.ensureOnce(name, progress).finally(() => this.pulls.delete(name));
      this.pulls.set(name, p);
    }
    return p;
  }

  private async ensureOnce(name: string, progress?: (p: PullProgress) => void): Promise<ImageInfo> {
    const have = await this.info(name).catch(() => undefined);
    // A cached image (every start but the first): the check and the use mark side by side. Marking an
    // image that turns out not to be unpacked only marks it once more below.
    if (have && (await Promise.all([this.unpacked(have), this.hooks.used?.(name)]))[0]) return have;
    await this.pull(name, progress);
    const info = await this.info(name);
    if (!(await this.unpacked(info))) throw new PullError(`image ${name} was pulled but not unpacked for ${this.snapshotter}`, false);
    await this.hooks.used?.(name);
    this.hooks.pulled?.(name);
    return info;
  }

  private async unpacked(info: ImageInfo): Promise<boolean> {
    try {
      await this.client.call('snapshots', 'Stat', { snapshotter: this.snapshotter, key: chainId(info.diffIds) });
      return true;
    } catch (e) {
      if (e instanceof ContainerdError && e.notFound) return false;
      throw e;
    }
  }

  private pull(name: string, progress?: (p: PullProgress) => void): Promise<void> {
    const host = registryHost(name);
    if (this.mirrorsOnly && !isLoopback(host) && !this.mirrors.some(([h]) => h === host)) {
      return Promise.reject(new PullError(`pull of ${name} refused: registry ${host} has no --registry-mirror and this worker pulls only through mirrors (--registry-mirrors-only)`, true));
    }
    if (this.route === 'api') {
      return pullThroughApi(this.client, name, { mirrors: this.mirrors, mirrorsOnly: this.mirrorsOnly, snapshotter: this.snapshotter, isLoopback, ...(progress ? { progress } : {}) })
        .catch((e: unknown) => {
          if (e instanceof PullError) throw e;
          throw new PullError(`pull of ${name} failed: ${(e as Error).message}`, false);
        });
    }
    if (isLoopback(host)) writeHostsDir(this.hostsDir, this.mirrors, [host], this.mirrorsOnly);
    const timer = progress ? setInterval(() => {
      void this.client.call<{ statuses: Array<{ offset: number; total: number }> }>('content', 'ListStatuses', {}, 2000).then((r) => {
        if (r.statuses.length === 0) return;
        progress({ done: r.statuses.reduce((a, s) => a + s.offset, 0), total: r.statuses.reduce((a, s) => a + s.total, 0) });
      }, () => {});
    }, 500) : undefined;
    return new Promise<void>((resolve, reject) => {
      execFile('ctr', ['-a', this.client.socket, '-n', this.client.namespace, 'images', 'pull', '--hosts-dir', this.hostsDir,
        '--snapshotter', this.snapshotter, '--platform', `linux/${hostArch()}`, name], { timeout: 600_000, maxBuffer: 16 << 20 }, (err, _out, stderr) => {
        if (timer) clearInterval(timer);
        if (err) reject(pullFailure(name, `${stderr}\n${err.killed ? 'pull timed out' : ''}`));
        else resolve();
      });
    });
  }

  /** Config and diff IDs of a stored image (for the worker's platform when it is an index). */
  async info(name: string): Promise<ImageInfo> {
    const r = await this.client.call<{ image: { target: { media_type: string; digest: string } } }>('images', 'Get', { name });
    // What a digest names never changes: an image read before is not read again (a start reads it
    // every time), unless its name now points elsewhere.
    const known = this.known.get(name);
    if (known?.digest === r.image.target.digest) return known.info;
    const info = await this.read(name, r.image.target);
    if (this.known.size >= 1000) this.known.clear();
    this.known.set(name, { digest: r.image.target.digest, info });
    return info;
  }

  private async read(name: string, target: { media_type: string; digest: string }): Promise<ImageInfo> {
    let desc = target;
    let doc = JSON.parse((await this.client.readContent(desc.digest)).toString('utf8')) as Record<string, unknown>;
    if (Array.isArray(doc.manifests)) {
      const want = hostArch();
      const m = (doc.manifests as Array<{ digest: string; mediaType: string; platform?: { os?: string; architecture?: string } }>)
        .find((x) => x.platform?.os === 'linux' && x.platform.architecture === want);
      if (!m) throw new PullError(`image ${name} has no manifest for linux/${want}`, true);
      desc = { media_type: m.mediaType, digest: m.digest };
      doc = JSON.parse((await this.client.readContent(desc.digest)).toString('utf8')) as Record<string, unknown>;
    }
    const cfgDigest = (doc.config as { digest?: string } | undefined)?.digest;
    if (!cfgDigest) throw new PullError(`image ${name}: manifest without config`, true);
    const cfg = JSON.parse((await this.client.readContent(cfgDigest)).toString('utf8')) as { config?: ImageConfig; rootfs?: { diff_ids?: string[] } };
    return { config: cfg.config ?? {}, diffIds: cfg.rootfs?.diff_ids ?? [] };
  }
}
