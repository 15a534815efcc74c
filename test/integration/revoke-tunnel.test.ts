// Revocation rotates the tunnel keys (SPEC §10, §5.4). Three real workers on emulated hosts, a client
// on w1 calling a web server on w2 through the tunnel; w3 is revoked through root's API. The revoked
// worker still holds the old overlay key and the old cluster key, and the tunnel's sender id is only
// a number in the header: with those keys it could seal datagrams in w1's name. After the
// revocation the test does exactly that, from w3's host, to w2's tunnel port: w2 must drop every one
// of them and count it as `retired_key` in its /metrics. The remaining workers switched to the new
// keys without a restart: the client's requests keep getting answers, and both the cluster and the
// workers kept the new keys on disk (a restart starts with them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { labFor, labSkipReason } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import { Deployment, poll } from '../../harness/e2e-harness.ts';
import { TxPlan } from '../../native/io.ts';
import { TunnelCodec, TunnelType } from '../../netstack/tunnel.ts';
import { tunnelIdForSubnet, type TunnelKey } from '../../orchestrator/protocol/tunnel-identity.ts';

const TUNNEL_PORT = 50103;

interface Identity { worker_id: string; subnet_v4?: string; tunnel: TunnelKey; overlay_tunnel?: TunnelKey }

/** Datagrams a holder of `key` seals in the name of `senderId` (one small IPv4 packet each), as hex. */
function forged(key: TunnelKey, senderId: number, n: number): string[] {
  const codec = new TunnelCodec({ selfId: senderId, keys: new Map([[key.key_id, Buffer.from(key.key, 'hex')]]), keyId: key.key_id,
    peers: { has: () => true }, maxDatagram: 1400, encrypt: key.encrypt });
  const out: string[] = [];
  // An IPv4 header (20 bytes) and 8 bytes of UDP, addressed inside the overlay: content does not matter,
  // the datagram must not get past authentication.
  const inner = Buffer.from('4500001c0000000040110000' + '0a1e1e1e' + '0a1e1e1e' + '3039303900080000', 'hex');
  for (let i = 0; i < n; i++) {
    const plan = new TxPlan();
    codec.encode(TunnelType.Data, 0, inner, 0, inner.length, plan);
    const buf = new Uint8Array(2000);
    for (let s = 0; s < plan.segments; s++) out.push(Buffer.from(buf.subarray(0, plan.copySegment(s, buf))).toString('hex'));
  }
  codec.close();
  return out;
}

// Sends hex datagrams (argv[3..]) to argv[1]:argv[2] over UDP, from whichever host it runs on.
const SENDER = `const s=require('dgram').createSocket('udp4');const [h,p,...d]=process.argv.slice(1);
(async()=>{for(const x of d)await new Promise((r,j)=>s.send(Buffer.from(x,'hex'),Number(p),h,(e)=>e?j(e):r()));s.close();})();`;

test('revoking a worker rotates the tunnel keys: datagrams sealed with its keys are dropped and counted, the others keep talking',
  { skip: unavailable(labSkipReason()), timeout: 180_000 }, async (t) => {
    const lab = await labFor(t, { hosts: ['ctl', 'w1', 'w2', 'w3'], ipv6: false });
    const d = new Deployment(lab, { workers: ['w1', 'w2', 'w3'] });
    t.after(() => d.stop());
    try {
      await d.start();
      const { cli, c0 } = await d.deployWebClient(['w2'], 'w1');
      const get = async (): Promise<string> =>
        (await d.inInstance(c0.worker_id!, cli.microserviceID, 0, ['curl', '-sS', '-m', '3', '-o', '/dev/null', '-w', '%{http_code}', 'http://10.30.30.30/'], 8000)).stdout;
      await poll('the client on w1 reaches the server on w2', async () => (await get()) === '200', 30_000);

      const identity = (host: string): Identity => JSON.parse(readFileSync(join(d.dir, host, 'worker.json'), 'utf8')) as Identity;
      const victim = identity('w3');
      const w1 = identity('w1');
      assert.ok(victim.overlay_tunnel, 'the workers hold root\'s overlay key');
      const oldOverlay = victim.overlay_tunnel;
      const oldCluster = victim.tunnel;
      assert.ok(w1.subnet_v4);
      const metrics = async (host: string): Promise<Map<string, number>> => {
        const text = await lab.host(host).execOk(d.workerApiCurl(host, '/metrics'));
        const m = new Map<string, number>();
        for (const line of text.split('\n')) {
          const [k, v] = line.split(' ');
          if (k && v !== undefined && !k.startsWith('#')) m.set(k, Number(v));
        }
        return m;
      };
      const sendKey = async (host: string): Promise<number | undefined> => (await metrics(host)).get('canopy_tunnel_send_key_id');
      assert.equal(await sendKey('w2'), oldOverlay.key_id);

      await d.api('POST', `/api/v1/workers/${d.workerIdOf('w3')}/revoke`, {});
      for (const h of ['w1', 'w2']) {
        await poll(`${h} sends with the new overlay key`, async () => (await sendKey(h)) === oldOverlay.key_id + 1, 10_000);
      }
      // Traffic between the remaining workers flows on the new keys.
      for (let i = 0; i < 3; i++) assert.equal(await get(), '200', `request ${i + 1} after the rotation`);

      // The revoked worker forges datagrams in w1's name with each key it still holds.
      const before = (await metrics('w2')).get('canopy_datapath_tunnel_drop_retired_key') ?? 0;
      const datagrams = [...forged(oldOverlay, tunnelIdForSubnet(w1.subnet_v4), 5), ...forged(oldCluster, tunnelIdForSubnet(w1.subnet_v4), 5)];
      await lab.host('w3').execOk(['node', '-e', SENDER, lab.host('w2').ip, String(TUNNEL_PORT), ...datagrams]);
      const dropped = await poll('w2 dropped and counted the forged datagrams', async () => {
        const n = ((await metrics('w2')).get('canopy_datapath_tunnel_drop_retired_key') ?? 0) - before;
        return n >= datagrams.length ? n : undefined;
      }, 10_000);
      t.diagnostic(`w2 dropped ${dropped} datagrams sealed with retired keys`);
      assert.equal(await get(), '200', 'the forgeries did not disturb the real flow');

      // The new keys are on disk: the cluster's and each remaining worker's.
      const clusterKey = JSON.parse(readFileSync(join(d.dir, 'cluster', 'tunnel-key.json'), 'utf8')) as TunnelKey;
      assert.equal(clusterKey.key_id, oldCluster.key_id + 1);
      assert.notEqual(clusterKey.key, oldCluster.key);
      for (const h of ['w1', 'w2']) {
        const id = identity(h);
        assert.equal(id.tunnel.key, clusterKey.key, `${h} stored the new cluster key`);
        assert.equal(id.overlay_tunnel?.key_id, oldOverlay.key_id + 1, `${h} stored the new overlay key`);
      }
    } catch (e) {
      for (const n of ['root', 'cluster', 'w1', 'w2', 'w3']) t.diagnostic(`--- ${n} ---\n${d.output(n).slice(-3000)}`);
      throw e;
    }
  });
