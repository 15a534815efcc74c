// A worker daemon restart (SPEC §8): stopping the daemon removes its bridge, TUN, nftables table and
// DNS server while the instances keep running; the restarted daemon re-adopts them with the same
// addresses and the same processes, and a client on another worker reaches the server again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { labFor, labSkipReason } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import { Deployment, poll, sleep } from '../../harness/e2e-harness.ts';
import { tunnelIdForSubnet } from '../../orchestrator/protocol/tunnel-identity.ts';

interface WorkerStatus { connected: boolean; instances: Array<{ service_id: string; state: string; pid: number | null; ns_ip: string | null }> }

test('e2e restart: a restarted worker daemon re-adopts its instances and their network, nothing leaks',
  { skip: unavailable(labSkipReason()), timeout: 150_000 }, async (t) => {
    const lab = await labFor(t, { hosts: ['ctl', 'w1', 'w2'] });
    const d = new Deployment(lab, { workers: ['w1', 'w2'] });
    t.after(() => d.stop());
    const w2 = lab.host('w2');
    const status = async (): Promise<WorkerStatus> => d.workerStatus<WorkerStatus>('w2');
    const links = async (): Promise<string[]> => (await w2.execOk(['ip', '-o', 'link', 'show'])).split('\n')
      .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? '').filter((n) => /^(canopy|cv)/.test(n)).sort();
    try {
      await d.start();
      const { cli, c0 } = await d.deployWebClient(['w2'], 'w1');
      const get = async (): Promise<boolean> => {
        const r = await d.inInstance(c0!.worker_id!, cli.microserviceID, 0, ['curl', '-sS', '-m', '2', '-o', '/dev/null', '-w', '%{http_code}', 'http://closest.web/'], 6000);
        return r.stdout === '200';
      };
      await poll('client reaches the server', get, 20_000);
      const before = (await status()).instances[0]!;
      const linksBefore = await links();
      assert.equal(linksBefore.filter((n) => n.startsWith('cv')).length, 1, linksBefore.join(' '));

      // Stop the daemon (SIGTERM, no undeploy): the instance keeps running, the daemon's plumbing goes.
      const p = d.procs.get('w2')!;
      const exited = new Promise((r) => p.once('exit', r));
      process.kill(-(p.pid as number), 'SIGTERM');
      await exited;
      const down = await links();
      assert.deepEqual(down.filter((n) => n.startsWith('canopy')), [], `bridge and TUN removed with the daemon: ${down.join(' ')}`);
      const nft = await w2.exec(['nft', 'list', 'table', 'inet', 'canopy']);
      assert.notEqual(nft.code, 0, 'nftables table removed with the daemon');
      const alive = await w2.exec(['kill', '-0', String(before.pid)]);
      assert.equal(alive.code, 0, 'the instance process survives the daemon');

      d.startWorker('w2');
      await poll('restarted daemon connected', async () => (await status()).connected, 30_000);
      await poll('client reaches the server again', get, 30_000);
      await sleep(1500);
      const after = (await status()).instances[0]!;
      assert.equal(after.pid, before.pid, 'same process re-adopted');
      assert.equal(after.ns_ip, before.ns_ip, 'same namespace address');
      assert.equal(after.state, 'RUNNING');
      assert.deepEqual(await links(), linksBefore, 'the same links, none twice');

      // Admission: forged tunnel data from the cluster's host is dropped — with an unknown sender id,
      // and with an admitted worker's id but no key.
      const counters = async (): Promise<Record<string, number>> => {
        const m = await w2.execOk(['curl', '-sS', 'http://127.0.0.1:10200/metrics']);
        const get = (k: string): number => Number(new RegExp(`^canopy_datapath_${k} (\\d+)`, 'm').exec(m)?.[1] ?? 0);
        return { unknown: get('tunnel_drop_unknown_sender'), tag: get('tunnel_drop_bad_tag'), warm: get('keep_warm_ticks') };
      };
      const w1Subnet = (await d.workerStatus<{ subnet_v4: string }>('w1')).subnet_v4;
      const forge = (sender: number): string[] => ['python3', '-c', [
        'import socket, struct, sys',
        // A counter ahead of the receiver's replay window, so the tag check is what stops it.
        `hdr = struct.pack('>BBBBIQHHI', 1, 1, 0, 1, ${sender}, 9000000000000000, 0, 1, 40)`,
        'pkt = bytes([0x45]) + bytes(39) + bytes(16)',
        's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
        `for i in range(5): s.sendto(hdr + pkt, ('${w2.ip}', 50103))`,
      ].join('\n')];
      const c0s = await counters();
      // The client's requests reached the restarted worker's instance: its datapath keeps warm
      // between them (netstack/keep-warm.ts, on by default).
      assert.ok(c0s.warm > 0, `canopy_datapath_keep_warm_ticks on w2: ${c0s.warm}`);
      await lab.host('ctl').execOk(forge(0x01020304));
      await lab.host('ctl').execOk(forge(tunnelIdForSubnet(w1Subnet)));
      // Wait for the drops to be counted (the datagrams cross a loaded machine), then check exactly.
      const c1s = await poll('all ten forged datagrams counted', async () => {
        const c = await counters();
        return c.unknown - c0s.unknown >= 5 && c.tag - c0s.tag >= 5 ? c : undefined;
      }, 10_000, 100);
      assert.equal(c1s.unknown - c0s.unknown, 5, `unknown sender dropped: ${JSON.stringify([c0s, c1s])}`);
      assert.equal(c1s.tag - c0s.tag, 5, `admitted id without the key dropped: ${JSON.stringify([c0s, c1s])}`);
    } catch (e) {
      for (const n of ['cluster', 'w1', 'w2']) t.diagnostic(`--- ${n} ---\n${d.output(n).slice(-5000)}`);
      throw e;
    }
  });
