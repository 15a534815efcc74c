// Test images without the internet: a busybox-static layer (gzip tar with the applet links), an image
// config and a schema-2 manifest, uploaded through the registry HTTP API to Debian's `docker-registry`
// that the test starts on loopback (and removes, storage included, in stop()).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, copyFileSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export interface TestRegistry {
  /** host:port on loopback */
  host: string;
  url: string;
  /** Config and storage: another registry process may serve them (e.g. inside a lab host). */
  dir: string;
  /** Stops the registry process only (its storage stays for another). */
  kill(): Promise<void>;
  /** Stops it and removes its storage. */
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Writes a registry config serving `dir`'s storage on `addr`; returns its path. */
export function registryConfig(dir: string, addr: string): string {
  const f = join(dir, `config-${addr.replace(/[^0-9a-z]/gi, '_')}.yml`);
  writeFileSync(f, [
    'version: 0.1', 'log:', '  level: error', 'storage:', '  filesystem:', `    rootdirectory: ${join(dir, 'data')}`,
    '  delete:', '    enabled: true', 'http:', `  addr: ${addr}`, '',
  ].join('\n'));
  return f;
}

/** A registry on `listen` (host:port; default a free loopback port), with its own storage. */
export async function startRegistry(listen?: string): Promise<TestRegistry> {
  const dir = mkdtempSync(join(tmpdir(), 'canopy-registry-'));
  const host = listen ?? `127.0.0.1:${await freePort()}`;
  const child: ChildProcess = spawn('docker-registry', ['serve', registryConfig(dir, host)], { stdio: 'ignore' });
  const kill = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
  };
  const stop = async (): Promise<void> => {
    await kill();
    rmSync(dir, { recursive: true, force: true });
  };
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(`http://${host}/v2/`).then((r) => r.ok, () => false);
    if (ok) return { host, url: `http://${host}`, dir, kill, stop };
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new Error('docker-registry did not answer');
}

/** A gzip tar of busybox-static with a link for every applet, plus /etc/passwd, /tmp, /www and `extra` files (parents made). */
export function busyboxLayer(extra: Record<string, string | Buffer> = {}, padBytes = 0): { tar: Buffer; gz: Buffer; diffId: string } {
  const root = mkdtempSync(join(tmpdir(), 'canopy-layer-'));
  try {
    for (const d of ['bin', 'etc', 'tmp', 'www', 'proc', 'sys', 'dev', 'run']) mkdirSync(join(root, d));
    copyFileSync('/bin/busybox', join(root, 'bin/busybox'));
    for (const applet of execFileSync('/bin/busybox', ['--list']).toString().split('\n').filter((a) => a && a !== 'busybox')) {
      symlinkSync('busybox', join(root, 'bin', applet));
    }
    writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
    // A file that starts with `#!` is a script: executable, as an image's would be.
    for (const [path, text] of Object.entries(extra)) {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      rmSync(join(root, path), { force: true }); // never through an applet link onto busybox itself
      writeFileSync(join(root, path), text, { mode: typeof text === 'string' && text.startsWith('#!') ? 0o755 : 0o644 });
    }
    // Random bytes do not compress: the layer grows by as much.
    if (padBytes > 0) writeFileSync(join(root, 'pad'), randomBytes(padBytes));
    const tar = execFileSync('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', root, '-cf', '-', '.'], { maxBuffer: 64 << 20 });
    return { tar, gz: gzipSync(tar), diffId: sha(tar) };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

async function upload(registry: string, name: string, blob: Buffer): Promise<string> {
  const digest = sha(blob);
  const start = await fetch(`${registry}/v2/${name}/blobs/uploads/`, { method: 'POST' });
  if (start.status !== 202) throw new Error(`upload start: HTTP ${start.status}`);
  const loc = new URL(start.headers.get('location')!, registry);
  loc.searchParams.set('digest', digest);
  const put = await fetch(loc, { method: 'PUT', body: blob, headers: { 'content-type': 'application/octet-stream' } });
  if (put.status !== 201) throw new Error(`upload: HTTP ${put.status} ${await put.text()}`);
  return digest;
}

export interface ImageOptions {
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  workingDir?: string;
  user?: string;
  /** Files (path relative to / → content) added to the layer. */
  files?: Record<string, string | Buffer>;
  /** Incompressible bytes added to the layer (/pad), for a bigger image. */
  padBytes?: number;
}

function imageConfig(layer: { diffId: string }, o: ImageOptions): Buffer {
  return Buffer.from(JSON.stringify({
    architecture: ({ x64: 'amd64', arm64: 'arm64' } as Record<string, string>)[process.arch] ?? process.arch, os: 'linux',
    config: {
      Env: o.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      ...(o.entrypoint ? { Entrypoint: o.entrypoint } : {}), Cmd: o.cmd ?? ['sh'],
      ...(o.workingDir ? { WorkingDir: o.workingDir } : {}), ...(o.user ? { User: o.user } : {}),
    },
    rootfs: { type: 'layers', diff_ids: [layer.diffId] },
  }));
}

/** Pushes a busybox image as `name:tag` to the registry at `url` (http://host:port). */
export async function pushBusybox(url: string, name: string, tag: string, o: ImageOptions = {}): Promise<{ bytes: number }> {
  const layer = busyboxLayer(o.files, o.padBytes);
  const config = imageConfig(layer, o);
  const layerDigest = await upload(url, name, layer.gz);
  const configDigest = await upload(url, name, config);
  const manifest = JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: configDigest },
    layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.gz.length, digest: layerDigest }],
  });
  const res = await fetch(`${url}/v2/${name}/manifests/${tag}`, {
    method: 'PUT', body: manifest, headers: { 'content-type': 'application/vnd.docker.distribution.manifest.v2+json' },
  });
  if (res.status !== 201) throw new Error(`manifest: HTTP ${res.status} ${await res.text()}`);
  return { bytes: layer.gz.length + config.length + manifest.length };
}

export interface SlowProxy {
  url: string;
  host: string;
  /** Bytes of blob bodies sent so far. */
  blobBytes(): number;
  stop(): Promise<void>;
}

/**
 * A loopback HTTP proxy in front of a test registry that sends blob bodies at `bytesPerSecond` (in
 * 16 KiB steps), so a pull lasts long enough for its progress to be seen; everything else passes as is.
 */
export async function slowProxy(upstream: string, bytesPerSecond: number): Promise<SlowProxy> {
  const { createServer: createHttpServer, request } = await import('node:http');
  const up = new URL(upstream);
  let sent = 0;
  const timers = new Set<NodeJS.Timeout>();
  const server = createHttpServer((req, res) => {
    const fwd = request({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers: { ...req.headers, host: up.host } }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      if (!/\/blobs\/sha256:/.test(req.url ?? '') || req.method !== 'GET') {
        r.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => {
        let body = Buffer.concat(chunks);
        const step = 16 * 1024;
        const every = Math.max(1, Math.round((step / bytesPerSecond) * 1000));
        const next = (): void => {
          if (res.destroyed) return;
          const piece = body.subarray(0, step);
          body = body.subarray(step);
          sent += piece.length;
          if (body.length === 0) {
            res.end(piece);
            return;
          }
          res.write(piece);
          const t = setTimeout(() => {
            timers.delete(t);
            next();
          }, every);
          timers.add(t);
        };
        next();
      });
    });
    fwd.on('error', () => res.destroy());
    req.pipe(fwd);
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    blobBytes: () => sent,
    stop: async () => {
      for (const t of timers) clearTimeout(t);
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/** Makes a tar of `files` (path → content) at `out`, with the system tar. */
function tarOf(out: string, files: Record<string, Buffer | string>): void {
  const dir = mkdtempSync(join(tmpdir(), 'canopy-archive-'));
  try {
    for (const [path, content] of Object.entries(files)) {
      mkdirSync(join(dir, path, '..'), { recursive: true });
      writeFileSync(join(dir, path), content);
    }
    execFileSync('tar', ['-C', dir, '-cf', out, ...Object.keys(files)]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const hex = (digest: string): string => digest.slice('sha256:'.length);

/** A busybox image as `docker save` writes it (v1.2: manifest.json, config, uncompressed layer.tar), tagged `repoTags`. */
export function writeDockerArchive(out: string, repoTags: string[], o: ImageOptions = {}): void {
  const layer = busyboxLayer(o.files, o.padBytes);
  const config = imageConfig(layer, o);
  const id = hex(sha(config));
  const layerDir = hex(layer.diffId);
  tarOf(out, {
    'manifest.json': JSON.stringify([{ Config: `${id}.json`, RepoTags: repoTags, Layers: [`${layerDir}/layer.tar`] }]),
    [`${id}.json`]: config,
    [`${layerDir}/layer.tar`]: layer.tar,
    [`${layerDir}/VERSION`]: '1.0',
  });
}

/** A busybox image as an OCI layout tar (oci-layout, index.json, blobs/sha256/…), its index entry named `refName`. */
export function writeOciArchive(out: string, refName: string, o: ImageOptions = {}): void {
  const layer = busyboxLayer(o.files, o.padBytes);
  const config = imageConfig(layer, o);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', size: config.length, digest: sha(config) },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', size: layer.gz.length, digest: sha(layer.gz) }],
  }));
  tarOf(out, {
    'oci-layout': JSON.stringify({ imageLayoutVersion: '1.0.0' }),
    'index.json': JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', size: manifest.length, digest: sha(manifest), annotations: { 'org.opencontainers.image.ref.name': refName } }],
    }),
    [`blobs/sha256/${hex(sha(config))}`]: config,
    [`blobs/sha256/${hex(sha(layer.gz))}`]: layer.gz,
    [`blobs/sha256/${hex(sha(manifest))}`]: manifest,
  });
}
