// Revoking a worker rotates root's overlay key (SPEC §10), and every cluster must switch to the new
// one at once: the workers drop datagrams sealed with a retired key, so two clusters on different
// keys cannot talk. Two clusters on emulated hosts: c1 runs a client on w1, c2 runs the server on w2
// and a third worker w3, which is revoked while the client sends one request after another to the
// server's rr address. The clusters' periodic reports are 60 s apart, so c1 cannot learn the new key
// from a report answer within the test: root pushes it. Every request made while the revocation
// happens is answered, and both workers send with the new key afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { labFor, labSkipReason } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import { Deployment, poll, sleep } from '../../harness/e2e-harness.ts';

const REPORT_INTERVAL_MS = 60_000;
const REQUESTS = 24;

test('revoking a worker: the rotated overlay key reaches the other cluster at once, and cross-cluster requests keep being answered',
  { skip: unavailable(labSkipReason()), timeout: 240_000 }, async (t) => {
    const lab = await labFor(t, { hosts: ['ctl', 'w1', 'w2', 'w3'], ipv6: false });
    const d = new Deployment(lab, {
      workers: ['w1', 'w2', 'w3'], clusters: [{ name: 'c1', workers: ['w1'] }, { name: 'c2', workers: ['w2', 'w3'] }],
      clusterArgs: ['--report-interval', String(REPORT_INTERVAL_MS)],
      rootArgs: ['--cluster-silence', String(10 * REPORT_INTERVAL_MS)],
    });
    t.after(() => d.stop());
    try {
      await d.start();
      const { srv, cli, c0 } = await d.deployWebClient(['w2'], 'w1', { clientAfterWeb: true });
      const rr = (await d.service(srv.microserviceID)).rr_ip as string;
      const inClient = (argv: string[], ms: number) => d.inInstance(c0.worker_id!, cli.microserviceID, 0, argv, ms, 'c1');
      const curl = ['curl', '-sS', '-m', '3', '-o', '/dev/null', '-w', '%{http_code}\\n', `http://${rr}/`];
      await poll(`the client in c1 reaches http://${rr}/ in c2`, async () => (await inClient(curl, 8000)).stdout.trim() === '200', 30_000);
      const sendKey = async (host: string): Promise<number> =>
        Number(/^canopy_tunnel_send_key_id (\d+)$/m.exec(await lab.host(host).execOk(d.workerApiCurl(host, '/metrics')))?.[1] ?? 'NaN');
      const before = await sendKey('w1');
      assert.equal(await sendKey('w2'), before, 'both clusters send with root\'s overlay key');

      // One request after another from the client, while w3 is revoked in the middle of them.
      const loop = inClient(['sh', '-c', `for i in $(seq 1 ${REQUESTS}); do ${curl.map((a) => `'${a}'`).join(' ')}; sleep 0.25; done`], 200_000);
      let loopDone = false;
      const ended = (): void => {
        loopDone = true;
      };
      loop.then(ended, ended);
      await sleep(1500);
      const answer = await d.api('POST', `/api/v1/workers/${d.workerIdOf('w3')}/revoke?cluster=c2`, {}) as { overlay_key?: { key_id: number; clusters_told: string[] } };
      assert.equal(loopDone, false, 'the revocation happened while the requests were going on');
      const r = await loop;
      const codes = r.stdout.trim().split('\n');
      t.diagnostic(`answers during the revocation: ${codes.join(' ')}`);
      assert.equal(codes.length, REQUESTS, r.stderr);
      assert.deepEqual(codes.filter((c) => c !== '200'), [], `every request was answered (${r.stderr.trim()})`);
      assert.deepEqual(answer.overlay_key?.clusters_told, ['c1', 'c2'], 'root told both clusters the new key before answering');
      assert.equal(answer.overlay_key?.key_id, before + 1);
      // Each worker switched to the new key without waiting for its cluster's next report (60 s away).
      for (const h of ['w1', 'w2']) assert.equal(await sendKey(h), before + 1, `${h} sends with the new overlay key`);
    } catch (e) {
      for (const n of ['root', 'cluster', 'cluster-c2', 'w1', 'w2', 'w3']) t.diagnostic(`--- ${n} ---\n${d.output(n).slice(-3000)}`);
      throw e;
    }
  });
