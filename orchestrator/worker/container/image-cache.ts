// The worker's image cache limit: when the images in Canopy's containerd namespace take more than the
// limit, the least recently used image no instance uses is deleted, until they fit or only images in
// use are left. An image's size is what it holds on disk: its blobs (index, manifest, config, the
// compressed layers) and its unpacked layers (snapshot usage); what several images share counts once
// in the total. "Used" is a label on the image (`canopy.last-used`, ms since the epoch) set whenever
// an instance asks for it, so the order survives a worker restart. Deletion goes through containerd's
// Images.Delete with sync, whose garbage collection removes the content and snapshots no other image
// refers to (the labels a pull leaves on the manifest and config tie them to the image).
import type { ContainerdClient } from './client.ts';
import { ContainerdError } from './client.ts';
import { chainId } from './spec.ts';
import { hostArch } from '../host-resources.ts';
import type { Logger } from '../../protocol/log.ts';

export const LAST_USED_LABEL = 'canopy.last-used';
export { DEFAULT_IMAGE_CACHE_MB } from './defaults.ts';

interface Descriptor {
  media_type: string;
  digest: string;
  size: number;
}

interface StoredImage {
  name: string;
  labels: Record<string, string>;
  target: Descriptor;
  created_at?: { seconds: number };
}

/** An image as the cache sees it. */
export interface CachedImage {
  name: string;
  lastUsed: number;
  /** Bytes of its own blobs and unpacked layers (shared ones included). */
  bytes: number;
  /** Blob digests and snapshot chain IDs, with their sizes. */
  parts: Map<string, number>;
}

/** The blobs of an image for one platform: digests with sizes, and the layers' diff IDs. */
export async function imageParts(client: ContainerdClient, target: Descriptor, arch = hostArch()): Promise<{ blobs: Map<string, number>; diffIds: string[] }> {
  const blobs = new Map<string, number>([[target.digest, Number(target.size)]]);
  let doc = JSON.parse((await client.readContent(target.digest)).toString('utf8')) as Record<string, unknown>;
  if (Array.isArray(doc.manifests)) {
    const m = (doc.manifests as Array<{ digest: string; size: number; platform?: { os?: string; architecture?: string } }>)
      .find((x) => x.platform?.os === 'linux' && x.platform.architecture === arch);
    if (!m) return { blobs, diffIds: [] };
    blobs.set(m.digest, Number(m.size));
    doc = JSON.parse((await client.readContent(m.digest)).toString('utf8')) as Record<string, unknown>;
  }
  const config = doc.config as { digest?: string; size?: number } | undefined;
  for (const l of (doc.layers as Array<{ digest: string; size: number }> | undefined) ?? []) blobs.set(l.digest, Number(l.size));
  if (!config?.digest) return { blobs, diffIds: [] };
  blobs.set(config.digest, Number(config.size ?? 0));
  const cfg = JSON.parse((await client.readContent(config.digest)).toString('utf8')) as { rootfs?: { diff_ids?: string[] } };
  return { blobs, diffIds: cfg.rootfs?.diff_ids ?? [] };
}

export class ImageCache {
  /** Unpacked size of a committed snapshot (immutable once committed). */
  private readonly usage = new Map<string, number>();
  private running: Promise<string[]> | undefined;
  private again = false;

  constructor(
    private readonly client: ContainerdClient,
    private readonly snapshotter: string,
    /** 0 = no limit. */
    readonly limitBytes: number,
    private readonly log: Logger,
  ) {}

  /** Marks an image as used now (an instance asked for it). */
  async touch(name: string, now = Date.now()): Promise<void> {
    try {
      await this.client.call('images', 'Update', {
        image: { name, labels: { [LAST_USED_LABEL]: String(now) } },
        update_mask: { paths: [`labels.${LAST_USED_LABEL}`] },
      });
    } catch (e) {
      if (!(e instanceof ContainerdError && e.notFound)) throw e;
    }
  }

  /** Every image of the namespace with its size and when it was last used. */
  async images(): Promise<CachedImage[]> {
    const r = await this.client.call<{ images: StoredImage[] }>('images', 'List', {});
    const out: CachedImage[] = [];
    for (const img of r.images) {
      let parts: Map<string, number>;
      try {
        const { blobs, diffIds } = await imageParts(this.client, img.target);
        parts = blobs;
        for (let k = 1; k <= diffIds.length; k++) {
          const id = chainId(diffIds.slice(0, k));
          parts.set(`snapshot:${id}`, await this.snapshotUsage(id));
        }
      } catch (e) {
        // An image whose content is partly gone (an interrupted pull): only its name is left to count.
        if (!(e instanceof ContainerdError && e.notFound)) throw e;
        parts = new Map();
      }
      const labelled = Number(img.labels?.[LAST_USED_LABEL]);
      const lastUsed = Number.isFinite(labelled) && labelled > 0 ? labelled : (img.created_at?.seconds ?? 0) * 1000;
      out.push({ name: img.name, lastUsed, bytes: [...parts.values()].reduce((a, b) => a + b, 0), parts });
    }
    return out;
  }

  private async snapshotUsage(id: string): Promise<number> {
    const known = this.usage.get(id);
    if (known !== undefined) return known;
    try {
      const u = await this.client.call<{ size: number }>('snapshots', 'Usage', { snapshotter: this.snapshotter, key: id }, 30_000);
      this.usage.set(id, Number(u.size));
      return Number(u.size);
    } catch (e) {
      if (e instanceof ContainerdError && e.notFound) return 0;
      throw e;
    }
  }

  /** Bytes on disk of all the images (shared parts once). */
  static total(images: readonly CachedImage[]): number {
    const all = new Map<string, number>();
    for (const i of images) for (const [k, v] of i.parts) all.set(k, v);
    return [...all.values()].reduce((a, b) => a + b, 0);
  }

  /**
   * Deletes least recently used images that no instance uses until the rest fit the limit; returns
   * the names deleted. One pass at a time: a call during a pass runs another after it.
   */
  evict(inUse: () => Promise<Set<string>>): Promise<string[]> {
    if (this.limitBytes <= 0) return Promise.resolve([]);
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      const gone: string[] = [];
      try {
        do {
          this.again = false;
          gone.push(...(await this.evictOnce(inUse)));
        } while (this.again);
      } finally {
        this.running = undefined;
      }
      return gone;
    })();
    return this.running;
  }

  private async evictOnce(inUse: () => Promise<Set<string>>): Promise<string[]> {
    const gone: string[] = [];
    for (;;) {
      const images = await this.images();
      const total = ImageCache.total(images);
      if (total <= this.limitBytes) return gone;
      const used = await inUse();
      const victim = images.filter((i) => !used.has(i.name)).sort((a, b) => a.lastUsed - b.lastUsed)[0];
      if (!victim) {
        this.log.warn('image cache over its limit, but every image is in use', { total_mb: mb(total), limit_mb: mb(this.limitBytes), images: images.length });
        return gone;
      }
      // sync: containerd's garbage collection runs before the answer, so the next measure sees the room.
      await this.client.call('images', 'Delete', { name: victim.name, sync: true }, 60_000).catch((e: unknown) => {
        if (!(e instanceof ContainerdError && e.notFound)) throw e;
      });
      for (const k of victim.parts.keys()) if (k.startsWith('snapshot:')) this.usage.delete(k.slice('snapshot:'.length));
      this.log.info('image evicted (least recently used, no instance uses it)', {
        image: victim.name, image_mb: mb(victim.bytes), last_used: new Date(victim.lastUsed).toISOString(), total_mb: mb(total), limit_mb: mb(this.limitBytes),
      });
      gone.push(victim.name);
    }
  }
}

function mb(bytes: number): number {
  return Math.round((bytes / 1048576) * 10) / 10;
}
