// The container runtime a worker daemon adds beside `process`: on an operator's containerd socket
// (--containerd) or on the worker's own embedded containerd, started under its data dir. Without a
// containerd binary or a socket that answers, the worker runs on without `container`.
// The runtime and its gRPC client are loaded only when the worker first needs them (lazy.ts: gRPC and
// its proto loader cost a worker ~9 MB; issue 16).
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { LazyContainerRuntime } from './lazy.ts';
import type { PullRoute } from './images.ts';
import type { Sandbox } from '../runtime/sandbox.ts';
import type { Logger } from '../../protocol/log.ts';

export interface WorkerContainerOptions {
  dataDir: string;
  /** An operator's containerd socket; absent = the embedded one. */
  socket?: string;
  /** `host=url` strings from --registry-mirror. */
  mirrors: string[];
  /** --image-cache-mb (0 = no limit; default DEFAULT_IMAGE_CACHE_MB). */
  imageCacheMb?: number;
  /** Image archives (*.tar) imported at start, as K3s does (default <data dir>/images). */
  imageDir?: string;
  /** --registry-mirrors-only: no pull ever goes to a registry's own address. */
  mirrorsOnly?: boolean;
  /** --pull-via: `ctr images pull` or containerd's API (docs/decisions.md). */
  pullVia?: PullRoute;
}

/**
 * Imports the archives of the image folder that are new or changed since the last start (a record of
 * name, size and mtime in the data dir); a bad one is logged with its reason and skipped.
 */
export async function importImageDir(runtime: { importArchive(file: string): Promise<string[]> }, dir: string, dataDir: string, log: Logger): Promise<void> {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.tar')).sort();
  } catch {
    return;
  }
  const recordFile = join(dataDir, 'images-imported.json');
  let record: Record<string, string> = {};
  try {
    record = JSON.parse(readFileSync(recordFile, 'utf8')) as Record<string, string>;
  } catch { /* first start */ }
  for (const f of files) {
    const path = join(dir, f);
    const st = statSync(path);
    const stamp = `${st.size}:${st.mtimeMs}`;
    if (record[path] === stamp) continue;
    try {
      const images = await runtime.importArchive(path);
      log.info('imported image archive from the image folder', { file: path, images });
      record[path] = stamp;
    } catch (e) {
      log.error('image archive in the image folder not imported', { file: path, error: (e as Error).message });
    }
  }
  writeFileSync(recordFile, JSON.stringify(record));
}

function haveContainerd(): boolean {
  try {
    execFileSync('containerd', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Validates the flags now, so a bad mirror is a CLI error before anything starts. */
export async function containerRuntimeFor(o: WorkerContainerOptions): Promise<(sandbox: Sandbox, log: Logger) => Promise<LazyContainerRuntime[]>> {
  const mirrors = o.mirrors.length > 0 ? o.mirrors.map((await import('./images.ts')).parseMirror) : [];
  const mirrorsOnly = o.mirrorsOnly ?? false;
  return async (sandbox, log) => {
    const imageDir = o.imageDir ?? join(o.dataDir, 'images');
    const withImages = async (r: LazyContainerRuntime): Promise<LazyContainerRuntime[]> => {
      if (r.available()) await importImageDir(r, imageDir, o.dataDir, log);
      return [r];
    };
    if (o.socket) {
      if (!existsSync(o.socket)) log.warn('containerd socket not there (yet): container runtime unavailable until it answers', { socket: o.socket });
      return withImages(await LazyContainerRuntime.open(sandbox, { socket: o.socket, mirrors, mirrorsOnly, log, imageCacheMb: o.imageCacheMb, pullVia: o.pullVia }));
    }
    if (!haveContainerd()) {
      log.warn('no containerd on this host: this worker runs `process` only');
      return [];
    }
    try {
      const { startEmbedded } = await import('./embedded.ts');
      const embedded = await startEmbedded(o.dataDir);
      return withImages(await LazyContainerRuntime.open(sandbox, { socket: embedded.socket, mirrors, mirrorsOnly, log, imageCacheMb: o.imageCacheMb, pullVia: o.pullVia, onClose: () => embedded.stop() }));
    } catch (e) {
      log.error('embedded containerd did not start: this worker runs `process` only', { error: (e as Error).message });
      return [];
    }
  };
}
