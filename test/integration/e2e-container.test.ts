// Containers end to end through root (SPEC §9): a `container` web server whose docker.io image is
// served by a registry mirror inside the lab (`--registry-mirror docker.io=http://ctl:5000`, an image
// built without the internet), reached from a `process` client on another worker by its rr address;
// an image that does not exist ends FAILED with the registry's words; a worker daemon SIGKILL and
// restart re-adopts the container (same pid); undeploy leaves no task, container, snapshot or cgroup.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { readFileSync, rmSync } from 'node:fs';
import { labFor, labSkipReason } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import { Deployment, poll, sleep } from '../../harness/e2e-harness.ts';
import { startRegistry, pushBusybox, registryConfig } from '../../harness/oci-registry.ts';
import { socketPathFor } from '../../orchestrator/worker/container/embedded.ts';

interface WorkerStatus { instances: Array<{ service_id: string; state: string; pid: number | null; reason: string }> }

function sla(mirrorHost: string, w1: string, w2: string): string {
  return JSON.stringify({
    sla_version: 'v2.0', customerID: 'Admin',
    applications: [{
      applicationID: '', application_name: 'ctrapp', application_namespace: 'demo', application_desc: 'container server, process client',
      microservices: [
        {
          microserviceID: '', microservice_name: 'web', microservice_namespace: 'demo', virtualization: 'container',
          code: 'docker.io/library/httpd:latest', cmd: [], memory: 64, vcpus: 0.2,
          addresses: { rr_ip: '10.30.40.40' }, constraints: [{ type: 'direct', node: w1 }],
        },
        {
          microserviceID: '', microservice_name: 'bad', microservice_namespace: 'demo', virtualization: 'container',
          code: `${mirrorHost}/library/no-such-image:1`, cmd: [], memory: 32, vcpus: 0.1, constraints: [{ type: 'direct', node: w1 }],
        },
        {
          microserviceID: '', microservice_name: 'client', microservice_namespace: 'demo', virtualization: 'process',
          cmd: ['sleep', '600'], memory: 32, vcpus: 0.1, constraints: [{ type: 'direct', node: w2 }],
        },
      ],
    }],
  });
}

test('e2e containers: a container server from a registry mirror, a process client, bad image, restart, clean undeploy',
  { skip: unavailable(labSkipReason()), timeout: 240_000 }, async (t) => {
    const lab = await labFor(t, { hosts: ['ctl', 'w1', 'w2'] });
    const ctl = lab.host('ctl');
    const mirror = `${ctl.ip}:5000`;
    // Images are pushed to a loopback registry here, then served from the same storage inside ctl.
    const reg = await startRegistry();
    t.after(() => reg.stop());
    await pushBusybox(reg.url, 'library/httpd', 'latest', {
      entrypoint: ['httpd', '-f', '-p', '80'], cmd: ['-h', '/www'], workingDir: '/www', files: { 'www/index.html': 'hello from a container\n' },
    });
    await reg.kill();
    ctl.spawn(['docker-registry', 'serve', registryConfig(reg.dir, mirror)]);
    await poll('registry inside ctl', async () => (await ctl.exec(['curl', '-sf', '-m', '2', `http://${mirror}/v2/`])).code === 0, 20_000);

    const d = new Deployment(lab, { workers: ['w1', 'w2'], workerArgs: ['--registry-mirror', `docker.io=http://${mirror}`, '--registry-mirror', `${mirror}=http://${mirror}`],
    });
    // Containers still running when a run fails: their shims and rootfs mounts live under d.dir.
    t.after(() => {
      try { execFileSync('pkill', ['-f', `${d.dir}/`]); } catch { /* none */ }
      for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
        const target = line.split(' ')[1];
        if (target?.startsWith(`${d.dir}/`)) execFileSync('umount', ['-l', target]);
      }
      rmSync(d.dir, { recursive: true, force: true });
    });
    const ctrOn = (args: string[]): string =>
      execFileSync('ctr', ['-a', socketPathFor(join(d.dir, 'w1', 'containerd')), '-n', 'canopy', ...args]).toString();
    t.after(() => d.stop());
    await d.start();
    const status = async (): Promise<WorkerStatus> => d.workerStatus<WorkerStatus>('w1');

    const app = await d.submit(sla(mirror, d.workerIdOf('w1'), d.workerIdOf('w2')));
    const id = (name: string): string => app.services.find((s) => s.microservice_name === name)!.microserviceID;
    for (const s of ['web', 'bad', 'client']) await d.deployInstance(id(s));
    const [web] = await d.waitState(id('web'), 1, ['RUNNING'], 90_000).catch(async (e: Error) => {
      throw new Error(`${e.message}: ${JSON.stringify(await d.instances(id('web')))}; w1: ${JSON.stringify(await status().catch(() => 'no status'))}`);
    });
    const [cli] = await d.waitState(id('client'), 1, ['RUNNING']);
    const get = async (): Promise<boolean> => {
      const r = await d.inInstance(cli!.worker_id!, id('client'), 0, ['curl', '-sS', '-m', '2', 'http://10.30.40.40/'], 6000);
      return r.stdout === 'hello from a container\n';
    };
    await poll('the process client reaches the container by its rr address', get, 30_000);

    const [bad] = await d.waitState(id('bad'), 1, ['FAILED'], 60_000);
    const badReason = String((bad as { reason?: unknown }).reason ?? JSON.stringify(bad));
    console.log(`# bad image: ${badReason}`);
    assert.match(badReason, /no-such-image.*not found/);

    // SIGKILL the worker daemon: the container runs on under its shim; the restarted daemon re-adopts it.
    const before = (await status()).instances.find((i) => i.service_id === id('web'))!;
    const p = d.procs.get('w1')!;
    const exited = new Promise((r) => p.once('exit', r));
    process.kill(-(p.pid as number), 'SIGKILL');
    await exited;
    d.startWorker('w1');
    await poll('re-adopted', async () => (await status()).instances.find((i) => i.service_id === id('web') && i.state === 'RUNNING'), 30_000);
    await sleep(1000);
    const after = (await status()).instances.find((i) => i.service_id === id('web'))!;
    assert.equal(after.pid, before.pid, 'same container process');
    await poll('client reaches the container again', get, 30_000);
    assert.equal(web!.worker_id, d.workerIdOf('w1'));

    await d.api('DELETE', `/api/v1/application/${app.applicationID}`);
    await poll('containers gone from containerd', async () => ctrOn(['containers', 'ls', '-q']).trim() === '' && ctrOn(['tasks', 'ls', '-q']).trim() === '', 30_000);
    const snaps = ctrOn(['snapshots', 'ls']).trim().split('\n').slice(1).map((l) => l.split(/\s+/)[0]);
    assert.deepEqual(snaps.filter((k) => !k?.startsWith('sha256:')), [], 'only the shared image layers stay');
    await poll('nothing left on w1', async () => (await d.leftovers('w1')).length === 0, 20_000);
  });
