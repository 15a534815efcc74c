// Image archives for air-gapped sites: docker-save (manifest.json) and OCI (oci-layout + index.json)
// tars, imported into the worker's containerd with `ctr images import` (docs/decisions.md), unpacked
// for the worker's snapshotter and platform. The archive is checked first (a tar with one of those
// layouts), so anything else is refused before containerd sees it. Names: a docker archive's
// RepoTags; an OCI archive's `io.containerd.image.name` or `org.opencontainers.image.ref.name` when
// that is a whole reference (a bare tag says nothing of which image it is, and is refused).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { hostArch } from '../host-resources.ts';
import { ContainerdError, type ContainerdClient } from './client.ts';
import { normalizeRef } from './images.ts';

import { ImportError } from './import-error.ts';

export { ImportError };

function run(cmd: string, args: string[], maxBuffer = 4 << 20): Promise<{ out: string; err: string; code: number }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { maxBuffer, timeout: 600_000 }, (e, out, err) => {
      const code = e ? (typeof (e as { code?: unknown }).code === 'number' ? (e as { code: number }).code : 1) : 0;
      resolve({ out: String(out), err: String(err), code });
    });
  });
}

type Layout = { kind: 'docker' } | { kind: 'oci'; index: OciIndex };

interface OciIndex {
  manifests?: Array<{ digest?: string; annotations?: Record<string, string> }>;
}

/** What kind of image archive `file` is; ImportError with what is wrong otherwise. */
export async function archiveLayout(file: string): Promise<Layout> {
  const list = await run('tar', ['-tf', file], 64 << 20);
  if (list.code !== 0) throw new ImportError(`not a tar archive (${list.err.trim().split('\n')[0] || `tar exited with ${list.code}`})`);
  const raw = list.out.split('\n').filter(Boolean);
  const entries = new Set(raw.map((e) => e.replace(/^\.\//, '')));
  if (entries.has('manifest.json')) return { kind: 'docker' };
  if (entries.has('index.json') && entries.has('oci-layout')) {
    const idx = await run('tar', ['-xOf', file, raw.find((e) => e.replace(/^\.\//, '') === 'index.json')!]);
    try {
      return { kind: 'oci', index: JSON.parse(idx.out) as OciIndex };
    } catch {
      throw new ImportError('index.json of the OCI archive is not JSON');
    }
  }
  throw new ImportError('not an image archive: no manifest.json (docker save) and no index.json with oci-layout (OCI)');
}

/** The whole reference an OCI index entry names, or undefined. */
function ociName(annotations: Record<string, string> | undefined): string | undefined {
  const name = annotations?.['io.containerd.image.name'] ?? annotations?.['org.opencontainers.image.ref.name'];
  if (!name || !/[/:@]/.test(name)) return undefined;
  try {
    return normalizeRef(name);
  } catch {
    return undefined;
  }
}

/**
 * Imports the images of an archive and unpacks them; returns their names. Temporary names (digest
 * images of the OCI entries) are renamed to the archive's own names and removed.
 */
export async function importArchive(client: ContainerdClient, file: string, snapshotter: string): Promise<string[]> {
  const layout = await archiveLayout(file);
  const before = new Set(await imageNames(client));
  // Every image ctr names itself gets this prefix (OCI entries, by digest): renamed below.
  const base = `canopy-import-${randomBytes(6).toString('hex')}`;
  const r = await run('ctr', ['-a', client.socket, '-n', client.namespace, 'images', 'import', '--snapshotter', snapshotter,
    '--platform', `linux/${hostArch()}`, '--base-name', base, '--digests', '--skip-digest-for-named', file]);
  // ctr says "unpacking <name> (<digest>)...done" for each image it made.
  const made = [...r.out.matchAll(/unpacking (\S+) \(sha256:[0-9a-f]+\)/g)].map((m) => m[1]!);
  const temporary = (await imageNames(client)).filter((n) => n.startsWith(base));
  const named: string[] = made.filter((n) => !n.startsWith(base));
  try {
    if (r.code !== 0) {
      const words = r.err.split('\n').map((l) => l.trim()).filter((l) => l && !/^time=/.test(l)).pop() ?? `ctr exited with ${r.code}`;
      throw new ImportError(`containerd refused the archive: ${words.replace(/^ctr: /, '')}`);
    }
    if (layout.kind === 'oci') {
      const wanted = new Map<string, string>();
      for (const m of layout.index.manifests ?? []) {
        const name = ociName(m.annotations);
        if (m.digest && name) wanted.set(m.digest, name);
      }
      for (const t of temporary) {
        const img = (await client.call<{ image: { target: object & { digest: string } } }>('images', 'Get', { name: t })).image;
        const name = wanted.get(img.target.digest);
        if (!name) continue;
        await client.call('images', 'Delete', { name }).catch(() => {});
        await client.call('images', 'Create', { image: { name, target: img.target, labels: {} } });
        named.push(name);
      }
      if (named.length === 0) {
        throw new ImportError('the OCI archive names no image by a whole reference (io.containerd.image.name, or org.opencontainers.image.ref.name like docker.io/library/nginx:1.25): nothing to run it by');
      }
    }
    if (named.length === 0) throw new ImportError('the archive holds no tagged image (docker save of an image without a tag?)');
    return [...new Set(named)].sort();
  } catch (e) {
    // Nothing of a refused archive stays: the images it made go, and their content with the last one.
    for (const n of named) if (!before.has(n)) await client.call('images', 'Delete', { name: n }).catch(() => {});
    throw e;
  } finally {
    for (let i = 0; i < temporary.length; i++) {
      await client.call('images', 'Delete', { name: temporary[i], sync: i === temporary.length - 1 }).catch((e: unknown) => {
        if (!(e instanceof ContainerdError && e.notFound)) throw e;
      });
    }
  }
}

async function imageNames(client: ContainerdClient): Promise<string[]> {
  return (await client.call<{ images: Array<{ name: string }> }>('images', 'List', {})).images.map((i) => i.name);
}
