// Root's push of remote tunnel peers to a cluster (POST /api/peers, docs/protocols.md): only root
// may push, a malformed push is refused whole with a clear error and changes nothing, a good one is
// taken like the peers of a report answer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InProcessStack, poll } from '../support/in-process-stack.ts';

const peer = { worker_id: 'remote-w', cluster_id: 'other-cluster', tunnel_id: 0x0a120900, tunnel_endpoint: '198.18.0.77:50103' };

test('POST /api/peers: root only, validated, taken like a report answer', { timeout: 60_000 }, async () => {
  const st = new InProcessStack('canopy-pp-');
  try {
    await st.startRoot();
    // Reports far apart: what changes below comes from the pushes.
    const cluster = await st.startCluster('pp', { reportIntervalMs: 600_000 });
    const token = await poll('cluster registered', async () => cluster.rootToken);
    const push = async (body: string, bearer: string | null = token): Promise<{ status: number; body: { error?: string; peers?: number } }> => {
      const r = await fetch(`${st.apiUrl}/api/peers`, {
        method: 'POST', body, headers: { 'content-type': 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
      });
      return { status: r.status, body: await r.json() as { error?: string; peers?: number } };
    };
    const remotePeers = (): unknown => cluster.status().remote_peers;

    assert.equal((await push(JSON.stringify({ peers: [peer] }), null)).status, 401, 'no token');
    assert.equal((await push(JSON.stringify({ peers: [peer] }), 'x'.repeat(43))).status, 401, 'wrong token');
    assert.equal(remotePeers(), 0);

    const ok = await push(JSON.stringify({ peers: [peer] }));
    assert.equal(ok.status, 200);
    assert.equal(ok.body.peers, 1);
    assert.equal(remotePeers(), 1);

    for (const [body, why] of [
      [JSON.stringify({ peers: [{ ...peer, worker_id: 'second' }, { ...peer, tunnel_endpoint: 'nowhere' }] }), /peers\[1\] needs .*tunnel_endpoint/],
      // Fastify's validator wraps a lone value in an array; the entry check refuses it.
      [JSON.stringify({ peers: 'all' }), /peers\[0\] needs/],
      [JSON.stringify({ nodes: [] }), /must have required property 'peers'/],
      ['{"peers": [', /json/i],
    ] as const) {
      const r = await push(body);
      assert.equal(r.status, 400, body);
      assert.match(r.body.error ?? '', why, body);
      assert.equal(remotePeers(), 1, `nothing changed after ${body}`);
    }
    assert.equal(cluster.counters.peer_pushes, 1, 'refused pushes are not counted as taken');

    const empty = await push(JSON.stringify({ peers: [] }));
    assert.equal(empty.status, 200);
    assert.equal(remotePeers(), 0, 'an empty list shuts the remote workers out');

    // Lists carry root's version: an older one arriving late (a report answer computed before the
    // last push) is dropped and counted, the same version again is taken.
    assert.equal((await push(JSON.stringify({ peers: [peer], peers_version: 2_000_000_000_100 }))).status, 200);
    assert.equal(remotePeers(), 1);
    assert.equal((await push(JSON.stringify({ peers: [], peers_version: 2_000_000_000_050 }))).status, 200);
    assert.equal(remotePeers(), 1, 'an older list changes nothing');
    assert.equal(cluster.counters.peer_lists_stale, 1);
    assert.equal((await push(JSON.stringify({ peers: [], peers_version: 2_000_000_000_100 }))).status, 200);
    assert.equal(remotePeers(), 0);
    assert.equal((await push(JSON.stringify({ peers: [peer], peers_version: -3 }))).status, 400, 'a negative version is refused');
  } finally {
    await st.close();
  }
});
