// Test images without the internet: a busybox-static layer (gzip tar with the applet links), an image
// config and a schema-2 manifest, uploaded through the registry HTTP API to Debian's `docker-registry`
// that the test starts on loopback (and removes, storage included, in stop()).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
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
export function busyboxLayer(extra: Record<string, string | Buffer> = {}): { gz: Buffer; diffId: string } {
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
    const tar = execFileSync('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', root, '-cf', '-', '.'], { maxBuffer: 64 << 20 });
    return { gz: gzipSync(tar), diffId: sha(tar) };
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
}

/** Pushes a busybox image as `name:tag` to the registry at `url` (http://host:port). */
export async function pushBusybox(url: string, name: string, tag: string, o: ImageOptions = {}): Promise<{ bytes: number }> {
  const layer = busyboxLayer(o.files);
  const config = Buffer.from(JSON.stringify({
    architecture: ({ x64: 'amd64', arm64: 'arm64' } as Record<string, string>)[process.arch] ?? process.arch, os: 'linux',
    config: {
      Env: o.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      ...(o.entrypoint ? { Entrypoint: o.entrypoint } : {}), Cmd: o.cmd ?? ['sh'],
      ...(o.workingDir ? { WorkingDir: o.workingDir } : {}), ...(o.user ? { User: o.user } : {}),
    },
    rootfs: { type: 'layers', diff_ids: [layer.diffId] },
  }));
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
