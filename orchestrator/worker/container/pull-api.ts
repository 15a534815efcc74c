// A pull through containerd's API, the work containerd 1.6 leaves to its client (the Go client's
// remotes/docker resolver and unpacker, reduced to what Canopy needs): resolve the reference at the
// registry (mirrors first, anonymous token auth), pick the worker's platform from an index, stream
// each missing blob into the content store (Content.Write, with the GC labels that tie a manifest to
// its children), create the image, then unpack each layer (Snapshots.Prepare, Diff.Apply,
// Snapshots.Commit under its chain ID). Everything is made under a lease, so a garbage collection
// during the pull (an eviction) cannot take half an image.
import { randomBytes } from 'node:crypto';
import { hostArch } from '../host-resources.ts';
import { ContainerdError, type ContainerdClient, type Mount } from './client.ts';
import { PullError, registryHost, type PullProgress } from './images.ts';
import { chainId } from './spec.ts';

const MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json',
];

const WRITE_BYTES = 1 << 20;

interface Desc {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string };
}

/** One registry endpoint: base URL (scheme, host) and the repository path under /v2/. */
interface Endpoint {
  base: string;
  repo: string;
}

/** `docker.io/library/nginx:1` → repository `library/nginx`, reference `1` (or a digest). */
export function splitRef(name: string): { host: string; repo: string; ref: string } {
  const host = registryHost(name);
  const rest = name.slice(host.length + 1);
  const at = rest.indexOf('@');
  if (at >= 0) return { host, repo: rest.slice(0, at), ref: rest.slice(at + 1) };
  const colon = rest.lastIndexOf(':');
  return { host, repo: rest.slice(0, colon), ref: rest.slice(colon + 1) };
}

/** Where to ask: the registry's mirrors in order, then the registry (plain HTTP for loopback). */
export function endpoints(name: string, mirrors: ReadonlyArray<[string, string]>, isLoopback: (h: string) => boolean, mirrorsOnly = false): Endpoint[] {
  const { host, repo } = splitRef(name);
  const out = mirrors.filter(([h]) => h === host).map(([, url]) => ({ base: url.replace(/\/+$/, ''), repo }));
  // --registry-mirrors-only: a mirrored registry's own address is never asked.
  if (mirrorsOnly && out.length > 0) return out;
  out.push({ base: host === 'docker.io' ? 'https://registry-1.docker.io' : `${isLoopback(host) ? 'http' : 'https'}://${host}`, repo });
  return out;
}

class Registry {
  private token: string | undefined;

  constructor(readonly ep: Endpoint) {}

  /** A GET with the registry's token auth: on 401 with a Bearer challenge, an anonymous token, once. */
  async get(path: string, accept?: string): Promise<Response> {
    const url = `${this.ep.base}/v2/${this.ep.repo}/${path}`;
    const headers: Record<string, string> = accept ? { accept } : {};
    let res = await this.fetch(url, headers);
    if (res.status === 401 && !this.token) {
      const challenge = res.headers.get('www-authenticate') ?? '';
      await res.body?.cancel();
      const m = /^Bearer (.*)$/i.exec(challenge);
      if (!m) throw new PullError(`${url}: unauthorized (${challenge || 'no challenge'})`, true);
      const params = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1]!, x[2]!]));
      if (!params.realm) throw new PullError(`${url}: unauthorized (challenge without realm)`, true);
      const t = new URL(params.realm);
      if (params.service) t.searchParams.set('service', params.service);
      t.searchParams.set('scope', params.scope ?? `repository:${this.ep.repo}:pull`);
      const tr = await this.fetch(t.toString(), {});
      if (!tr.ok) throw new PullError(`token from ${t.host}: HTTP ${tr.status}`, tr.status === 401 || tr.status === 403);
      const body = (await tr.json()) as { token?: string; access_token?: string };
      this.token = body.token ?? body.access_token;
      res = await this.fetch(url, headers);
    }
    return res;
  }

  private async fetch(url: string, headers: Record<string, string>): Promise<Response> {
    try {
      return await fetch(url, { headers: { ...headers, ...(this.token ? { authorization: `Bearer ${this.token}` } : {}) }, signal: AbortSignal.timeout(600_000) });
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new PullError(`${new URL(url).host}: ${cause?.code ?? cause?.message ?? (e as Error).message}`, false);
    }
  }
}

/** Resolves the reference at the first endpoint that has it: the registry client and the top descriptor. */
async function resolve(name: string, eps: Endpoint[]): Promise<{ reg: Registry; desc: Desc; body: Buffer }> {
  const { ref } = splitRef(name);
  const errors: string[] = [];
  let notFound: string | undefined;
  for (const ep of eps) {
    const reg = new Registry(ep);
    try {
      const res = await reg.get(`manifests/${ref}`, MANIFEST_TYPES.join(', '));
      if (res.status === 404) {
        await res.body?.cancel();
        notFound ??= new URL(ep.base).host;
        continue;
      }
      if (!res.ok) {
        errors.push(`${new URL(ep.base).host}: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
        continue;
      }
      const body = Buffer.from(await res.arrayBuffer());
      const digest = res.headers.get('docker-content-digest') ?? `sha256:${(await import('node:crypto')).createHash('sha256').update(body).digest('hex')}`;
      const mediaType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim() || (JSON.parse(body.toString('utf8')) as { mediaType?: string }).mediaType || MANIFEST_TYPES[2]!;
      return { reg, desc: { mediaType, digest, size: body.length }, body };
    } catch (e) {
      if (e instanceof PullError && e.permanent) throw new PullError(`pull of ${name} failed: ${e.message}`, true);
      errors.push((e as Error).message);
    }
  }
  if (notFound) throw new PullError(`pull of ${name} failed: ${name}: not found at ${notFound}`, true);
  throw new PullError(`pull of ${name} failed: ${errors.join('; ')}`, false);
}

export interface ApiPullOptions {
  mirrors: ReadonlyArray<[string, string]>;
  mirrorsOnly?: boolean;
  snapshotter: string;
  isLoopback: (host: string) => boolean;
  progress?: (p: PullProgress) => void;
}

/** Pulls and unpacks `name` (normalized) through containerd's API. */
export async function pullThroughApi(client: ContainerdClient, name: string, o: ApiPullOptions): Promise<void> {
  await client.withLease('canopy-pull', 3_600_000, async (lease) => {
    const { reg, desc: top, body: topBody } = await resolve(name, endpoints(name, o.mirrors, o.isLoopback, o.mirrorsOnly));
    let manifestDesc = top;
    let manifestBody = topBody;
    const written: Array<{ desc: Desc; body: Buffer; labels: Record<string, string> }> = [];
    let doc = JSON.parse(topBody.toString('utf8')) as { manifests?: Desc[]; config?: Desc; layers?: Desc[] };
    if (Array.isArray(doc.manifests)) {
      const arch = hostArch();
      const m = doc.manifests.find((x) => x.platform?.os === 'linux' && x.platform.architecture === arch);
      if (!m) throw new PullError(`pull of ${name} failed: no match for platform linux/${arch} in the manifest`, true);
      const i = doc.manifests.indexOf(m);
      written.push({ desc: top, body: topBody, labels: { [`containerd.io/gc.ref.content.m.${i}`]: m.digest } });
      const res = await reg.get(`manifests/${m.digest}`, MANIFEST_TYPES.join(', '));
      if (!res.ok) throw new PullError(`pull of ${name} failed: manifest ${m.digest}: HTTP ${res.status}`, res.status === 404);
      manifestBody = Buffer.from(await res.arrayBuffer());
      manifestDesc = { mediaType: m.mediaType, digest: m.digest, size: manifestBody.length };
      doc = JSON.parse(manifestBody.toString('utf8')) as typeof doc;
    }
    if (!doc.config || !Array.isArray(doc.layers)) throw new PullError(`pull of ${name} failed: not an image manifest (${manifestDesc.mediaType})`, true);
    const layers = doc.layers;
    const manifestLabels: Record<string, string> = { 'containerd.io/gc.ref.content.config': doc.config.digest };
    layers.forEach((l, i) => (manifestLabels[`containerd.io/gc.ref.content.l.${i}`] = l.digest));
    written.unshift({ desc: manifestDesc, body: manifestBody, labels: manifestLabels });

    // Blobs: config and layers, streamed; progress over all of them.
    const blobs = [doc.config, ...layers];
    const total = blobs.reduce((a, b) => a + Number(b.size), 0);
    let done = 0;
    const tell = o.progress ? setInterval(() => o.progress!({ done, total }), 500) : undefined;
    try {
      for (const b of blobs) {
        if (await haveContent(client, b.digest)) {
          done += Number(b.size);
          continue;
        }
        const res = await reg.get(`blobs/${b.digest}`);
        if (!res.ok || !res.body) throw new PullError(`pull of ${name} failed: blob ${b.digest}: HTTP ${res.status}`, res.status === 404);
        const ref = `canopy-${b.digest}`;
        await client.call('content', 'Abort', { ref }, 10_000, lease).catch(() => {});
        // The socket's chunks (16–64 KiB) gathered into 1 MiB writes, as containerd's own client copies:
        // one gRPC message per MiB instead of dozens.
        const counted = async function* (): AsyncIterable<Uint8Array> {
          let parts: Uint8Array[] = [];
          let held = 0;
          for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
            done += chunk.length;
            parts.push(chunk);
            held += chunk.length;
            if (held >= WRITE_BYTES) {
              yield Buffer.concat(parts);
              parts = [];
              held = 0;
            }
          }
          if (held > 0) yield Buffer.concat(parts);
        };
        await client.writeContent(ref, b.digest, Number(b.size), counted(), {}, lease);
      }
    } finally {
      if (tell) clearInterval(tell);
    }
    o.progress?.({ done: total, total });
    // Manifest (then index) after their children, so their GC labels point at content that exists.
    for (const w of written) {
      if (await haveContent(client, w.desc.digest)) {
        await client.call('content', 'Update', { info: { digest: w.desc.digest, labels: w.labels }, update_mask: { paths: Object.keys(w.labels).map((k) => `labels.${k}`) } }, 10_000, lease);
        continue;
      }
      const ref = `canopy-${w.desc.digest}`;
      await client.call('content', 'Abort', { ref }, 10_000, lease).catch(() => {});
      await client.writeContent(ref, w.desc.digest, w.body.length, (async function* () { yield w.body; })(), w.labels, lease);
    }

    // Unpack: each layer onto its parent's snapshot, named by chain ID.
    const cfg = JSON.parse((await client.readContent(doc.config.digest)).toString('utf8')) as { rootfs?: { diff_ids?: string[] } };
    const diffIds = cfg.rootfs?.diff_ids ?? [];
    if (diffIds.length !== layers.length) throw new PullError(`pull of ${name} failed: config lists ${diffIds.length} layers, manifest ${layers.length}`, true);
    let parent = '';
    for (let i = 0; i < layers.length; i++) {
      const chain = chainId(diffIds.slice(0, i + 1));
      if (!(await haveSnapshot(client, o.snapshotter, chain))) {
        const key = `extract-${randomBytes(6).toString('hex')} ${chain}`;
        const prepared = await client.call<{ mounts: Mount[] }>('snapshots', 'Prepare', { snapshotter: o.snapshotter, key, parent }, 30_000, lease);
        try {
          const l = layers[i]!;
          const applied = await client.call<{ applied: { digest: string } }>('diff', 'Apply', { diff: { media_type: l.mediaType, digest: l.digest, size: Number(l.size) }, mounts: prepared.mounts }, 600_000, lease);
          if (applied.applied.digest !== diffIds[i]) throw new PullError(`pull of ${name} failed: layer ${i} unpacks to ${applied.applied.digest}, the config says ${diffIds[i]}`, true);
          await client.call('snapshots', 'Commit', { snapshotter: o.snapshotter, name: chain, key }, 60_000, lease);
        } catch (e) {
          await client.call('snapshots', 'Remove', { snapshotter: o.snapshotter, key }, 30_000, lease).catch(() => {});
          if (!(e instanceof ContainerdError && e.code === 6)) throw e; // ALREADY_EXISTS: another pull committed it
        }
        await client.call('content', 'Update', {
          info: { digest: layers[i]!.digest, labels: { 'containerd.io/uncompressed': diffIds[i]! } }, update_mask: { paths: ['labels.containerd.io/uncompressed'] },
        }, 10_000, lease);
      }
      parent = chain;
    }
    // The config keeps the unpacked layers alive as long as the image is.
    const snapLabel = `containerd.io/gc.ref.snapshot.${o.snapshotter}`;
    await client.call('content', 'Update', { info: { digest: doc.config.digest, labels: { [snapLabel]: parent } }, update_mask: { paths: [`labels.${snapLabel}`] } }, 10_000, lease);

    const image = { name, target: { media_type: top.mediaType, digest: top.digest, size: top.size } };
    try {
      await client.call('images', 'Create', { image }, 10_000, lease);
    } catch (e) {
      if (!(e instanceof ContainerdError && e.code === 6)) throw e;
      await client.call('images', 'Update', { image, update_mask: { paths: ['target'] } }, 10_000, lease);
    }
  });
}

async function haveContent(client: ContainerdClient, digest: string): Promise<boolean> {
  try {
    await client.call('content', 'Info', { digest });
    return true;
  } catch (e) {
    if (e instanceof ContainerdError && e.notFound) return false;
    throw e;
  }
}

async function haveSnapshot(client: ContainerdClient, snapshotter: string, key: string): Promise<boolean> {
  try {
    await client.call('snapshots', 'Stat', { snapshotter, key });
    return true;
  } catch (e) {
    if (e instanceof ContainerdError && e.notFound) return false;
    throw e;
  }
}
