// Oakestra's README descriptor (test/fixtures/sla/oakestra-readme-clientsrvr.json), deployed UNCHANGED
// through root in the lab: two `container` services whose docker.io images come through
// `--registry-mirror docker.io=http://<ctl>:5000`, a registry inside the lab (SPEC §9).
//
// There is no internet, so the two images are stand-ins built from busybox-static under the same
// names (harness/oci-registry.ts):
// - docker.io/library/nginx:latest: busybox httpd serving a page on port 80 (nginx's port) and on
//   port 60, the container side of the descriptor's host mapping "6080:60/tcp" (real nginx listens on
//   80 only, so with the real image that mapping would reach nothing);
// - docker.io/curlimages/curl:7.82.0: curl's image layout (ENTRYPOINT /entrypoint.sh, CMD curl) with
//   /usr/bin/curl a script that fetches its URL argument with busybox wget. The descriptor's own
//   command (`sh -c "tail -f /dev/null"`) keeps it idle; the test runs `curl` inside it with
//   `ctr tasks exec`, as an operator would with `docker exec`.
// Each worker offers 1 vCPU (--vcpus 1) and each service asks for 1, so the two land on different
// workers without editing the descriptor. Undeploy leaves no task, container, instance snapshot,
// mount, namespace or cgroup. The same deployment shows the registry guard in the lab: an image the
// mirror does not have ends FAILED with the mirror's "not found", never trying Docker Hub.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { labFor, labSkipReason } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import { Deployment, poll } from '../../harness/e2e-harness.ts';
import { SLA_FIXTURES } from '../../harness/fixtures.ts';
import { pushBusybox } from '../../harness/oci-registry.ts';
import { labRegistry } from '../../harness/lab-registry.ts';
import { socketPathFor } from '../../orchestrator/worker/container/embedded.ts';

const CURL_STANDIN = `#!/bin/sh
# curl stand-in: the URL is the last argument that is not an option; busybox wget fetches it
# (under timeout: busybox 1.35's own wget -T crashes).
url=""
for a in "$@"; do case "$a" in -*) ;; *) url="$a" ;; esac; done
exec timeout 5 wget -q -O - "$url"
`;
const PAGE = 'Welcome to nginx! (a busybox httpd stand-in)\n';

test('Oakestra\'s README descriptor, unchanged, through root with container images from a lab mirror', { skip: unavailable(labSkipReason()), timeout: 300_000 }, async (t) => {
  const lab = await labFor(t, { hosts: ['ctl', 'w1', 'w2'] });
  const registry = await labRegistry(lab.host('ctl'), async (url) => {
    await pushBusybox(url, 'library/nginx', 'latest', {
      entrypoint: ['sh', '-c', 'httpd -p 60 -h /www && exec httpd -f -p 80 -h /www'], cmd: [], files: { 'www/index.html': PAGE },
    });
    await pushBusybox(url, 'curlimages/curl', '7.82.0', {
      entrypoint: ['/entrypoint.sh'], cmd: ['curl'], files: { 'usr/bin/curl': CURL_STANDIN, 'entrypoint.sh': '#!/bin/sh\nexec "$@"\n' },
    });
  });
  t.after(() => registry.stop());
  const d = new Deployment(lab, {
    workers: ['w1', 'w2'],
    workerArgs: ['--vcpus', '1', '--memory', '2000', '--registry-mirror', `docker.io=http://${registry.host}`],
  });
  // stop() also stops each worker's embedded containerd, its shims and mounts (embedded-reap.ts).
  t.after(() => d.stop());
  await d.start();
  const ctr = (host: string, ...args: string[]): string =>
    execFileSync('ctr', ['-a', socketPathFor(join(d.dir, host, 'containerd')), '-n', 'canopy', ...args], { timeout: 30_000 }).toString();
  const hostOf = (workerId: string): string => ['w1', 'w2'].find((h) => d.workerIdOf(h) === workerId)!;

  try {
    const sla = readFileSync(join(SLA_FIXTURES, 'oakestra-readme-clientsrvr.json'), 'utf8');
    const app = await d.submit(sla);
    const id = (name: string): string => app.services.find((s) => s.microservice_name === name)!.microserviceID;
    await d.deployInstance(id('nginx'));
    await d.deployInstance(id('curl'));
    const [nginx] = await d.waitState(id('nginx'), 1, ['RUNNING'], 120_000);
    const [curl] = await d.waitState(id('curl'), 1, ['RUNNING'], 120_000);
    assert.notEqual(nginx!.worker_id, curl!.worker_id, 'one vCPU per worker: the two services run on different workers');
    const curlHost = hostOf(curl!.worker_id!);
    const nginxHost = hostOf(nginx!.worker_id!);
    const [curlContainer] = ctr(curlHost, 'containers', 'ls', '-q').trim().split('\n');
    assert.ok(curlContainer, 'the curl container exists in its worker\'s containerd');

    let n = 0;
    const fromCurl = (url: string): string => {
      try {
        return ctr(curlHost, 'tasks', 'exec', '--exec-id', `probe${n++}`, curlContainer!, 'curl', '-s', '-m', '5', url);
      } catch (e) {
        return `failed: ${(e as { stderr?: Buffer }).stderr?.toString() ?? String(e)}`;
      }
    };
    for (const url of ['http://10.30.30.30/', 'http://closest.nginx/', 'http://nginx/', 'http://nginx.test/']) {
      const body = await poll(`${url} from the curl container`, async () => fromCurl(url) === PAGE, 30_000, 300).then(() => PAGE, () => fromCurl(url));
      if (body !== PAGE) {
        const diag = ctr(curlHost, 'tasks', 'exec', '--exec-id', `diag${n++}`, curlContainer!, 'sh', '-c',
          `ip -o addr; ip route; cat /etc/resolv.conf; timeout 5 wget -O - ${url} 2>&1; echo exit=$?`);
        t.diagnostic(`inside the curl container:\n${diag}`);
        for (const h of ['w1', 'w2']) t.diagnostic(`--- ${h} counters ---\n${await d.workerCounters(h)}`);
      }
      assert.equal(body, PAGE, `${url} from the curl container on ${curlHost} to nginx on ${nginxHost}`);
    }
    // The host port mapping: port 6080 on nginx's worker reaches the container's port 60.
    const viaPort = await lab.host('ctl').exec(['curl', '-sS', '-m', '5', `http://${lab.host(nginxHost).ip}:6080/`]);
    assert.equal(viaPort.stdout, PAGE, `host port 6080 on ${nginxHost}: ${viaPort.stderr}`);

    await d.api('DELETE', `/api/v1/application/${app.applicationID}`);
    for (const h of ['w1', 'w2']) {
      await poll(`no task or container left on ${h}`, async () => ctr(h, 'containers', 'ls', '-q').trim() === '' && ctr(h, 'tasks', 'ls', '-q').trim() === '', 30_000);
      const snaps = ctr(h, 'snapshots', 'ls').trim().split('\n').slice(1).map((l) => l.split(/\s+/)[0]);
      assert.deepEqual(snaps.filter((k) => !k?.startsWith('sha256:')), [], `${h}: only the shared image layers stay`);
      const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m.startsWith(`${join(d.dir, h)}/`));
      assert.deepEqual(mounts, [], `${h}: no mount left`);
      await poll(`nothing left on ${h}`, async () => (await d.leftovers(h)).length === 0, 20_000).catch(async () => assert.deepEqual(await d.leftovers(h), []));
    }

    // The guard in the lab: docker.io's mirror is the only place a pull goes, even after its 404.
    const missing = await d.submit(JSON.stringify({
      sla_version: 'v2.0', customerID: 'Admin',
      applications: [{
        applicationID: '', application_name: 'guard', application_namespace: 'test', application_desc: 'an image the mirror lacks',
        microservices: [{ microserviceID: '', microservice_name: 'gone', microservice_namespace: 'test', virtualization: 'container',
          code: 'docker.io/library/not-in-the-lab:1', cmd: [], memory: 32, vcpus: 0.1 }],
      }],
    }));
    await d.deployInstance(missing.services[0]!.microserviceID);
    const [failed] = await d.waitState(missing.services[0]!.microserviceID, 1, ['FAILED'], 60_000);
    const reason = String((failed as { reason?: unknown }).reason ?? JSON.stringify(failed));
    t.diagnostic(`image the mirror lacks: ${reason}`);
    assert.match(reason, new RegExp(`not-in-the-lab.*not found at ${registry.host.replace(/\./g, '\\.')}`));
    assert.doesNotMatch(reason, /registry-1\.docker\.io/);
    for (const h of ['w1', 'w2']) {
      const toml = readFileSync(join(d.dir, h, 'registry-hosts', 'docker.io', 'hosts.toml'), 'utf8');
      assert.match(toml, new RegExp(`^server = "http://${registry.host.replace(/\./g, '\\.')}"$`, 'm'), `${h}: the mirror is containerd's last resort`);
    }
    await d.api('DELETE', `/api/v1/application/${missing.applicationID}`);
  } catch (e) {
    for (const n of ['root', 'cluster', 'w1', 'w2']) t.diagnostic(`--- ${n} ---\n${d.output(n).slice(-4000)}`);
    throw e;
  }
});
