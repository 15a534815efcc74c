// A worker that is SIGKILLed and never comes back leaves its embedded containerd running (kept on
// purpose for a restart, for the shims). The cleanup paths (`canopy down`, the lab sweeper run before
// every integration run, the lab harness) stop it through embedded-reap.ts: the daemon, its shim, the
// container under the shim and the rootfs mounts under the data dir — and only once its worker is gone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmdirSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unavailable, needRoot, binaryMissing } from '../support/facility.ts';
import { startRegistry, pushBusybox } from '../../harness/oci-registry.ts';
import { reapOrphanedEmbeddedSync, embeddedOwnerAlive } from '../../orchestrator/worker/container/embedded-reap.ts';
import { reapEmbeddedSync } from '../../orchestrator/worker/container/embedded-reap.ts';

const EMBEDDED = join(import.meta.dirname, '../../orchestrator/worker/container/embedded.ts');
const alive = (pid: number): boolean => existsSync(`/proc/${pid}`) && !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
const mountsUnder = (dir: string): string[] => readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((t) => t.startsWith(`${dir}/`));

test('a killed worker\'s embedded containerd, shim, container and mounts are stopped by the sweeper, a live worker\'s are kept',
  { skip: unavailable(needRoot() ?? binaryMissing('containerd', ['--version'])), timeout: 120_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'canopy-reap-'));
    const ns = `canopy-reap-${process.pid}`;
    const reg = await startRegistry();
    let socket = '';
    try {
      await pushBusybox(reg.url, 'library/busybox', 'latest');
      // The "worker": a process that starts the embedded containerd as a worker daemon does, then is killed.
      const worker = spawn(process.execPath, ['--import', 'tsx', '-e',
        `import(${JSON.stringify(EMBEDDED)}).then((m) => m.startEmbedded(${JSON.stringify(dataDir)})).then((e) => { console.log(e.socket); setInterval(() => {}, 1e6); })`],
      { stdio: ['ignore', 'pipe', 'inherit'] });
      socket = await new Promise<string>((resolve, reject) => {
        let out = '';
        worker.stdout.on('data', (b: Buffer) => {
          out += b.toString();
          if (out.includes('\n')) resolve(out.trim());
        });
        worker.once('exit', (c) => reject(new Error(`worker exited ${c}`)));
      });
      const ctr = (...args: string[]): string => execFileSync('ctr', ['-a', socket, '-n', ns, ...args], { timeout: 60_000 }).toString();
      ctr('images', 'pull', '--plain-http', `${reg.host}/library/busybox:latest`);
      ctr('run', '-d', `${reg.host}/library/busybox:latest`, 'sleeper', 'sleep', '600');
      const containerPid = Number(/sleeper\s+(\d+)\s+RUNNING/.exec(ctr('tasks', 'ls'))?.[1]);
      const containerdPid = Number(readFileSync(join(dataDir, 'containerd', 'containerd.pid'), 'utf8'));
      assert.ok(alive(containerPid) && alive(containerdPid), 'container and containerd run');
      assert.ok(mountsUnder(dataDir).length > 0, 'the container\'s rootfs is mounted under the data dir');

      // While its worker runs, the sweeper keeps it.
      assert.ok(embeddedOwnerAlive(dataDir));
      assert.ok(!reapOrphanedEmbeddedSync().includes(dataDir), 'a live worker\'s containerd is kept');
      assert.ok(alive(containerdPid) && alive(containerPid));

      const exited = new Promise((r) => worker.once('exit', r));
      worker.kill('SIGKILL');
      await exited;
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(alive(containerdPid), 'the killed worker left containerd running (the leak the sweeper removes)');

      assert.ok(reapOrphanedEmbeddedSync().includes(dataDir), 'the orphaned containerd is reaped');
      assert.ok(!alive(containerdPid), 'containerd stopped');
      assert.ok(!alive(containerPid), 'the container under the shim stopped');
      const shims = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
        try { return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(socket); } catch { return false; }
      });
      assert.deepEqual(shims, [], 'no shim of that containerd left');
      assert.deepEqual(mountsUnder(dataDir), [], 'no mount left under the data dir');
    } finally {
      reapEmbeddedSync(dataDir);
      // ctr run's default cgroup is /<namespace>/<id> in each hierarchy: the test's own, removed here.
      for (const c of readdirSync('/sys/fs/cgroup')) {
        for (const d of [join('/sys/fs/cgroup', c, ns, 'sleeper'), join('/sys/fs/cgroup', c, ns)]) {
          try { rmdirSync(d); } catch { /* not there */ }
        }
      }
      rmSync(dataDir, { recursive: true, force: true });
      await reg.stop();
    }
  });
