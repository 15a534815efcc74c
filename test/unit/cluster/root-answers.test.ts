// What the cluster takes from root's answers for the overlay (docs/protocols.md, root ↔ cluster):
// the overlay key and the other clusters' workers. A malformed field is named and left out; the
// rest of the answer still counts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { overlayNews, parsePeersPush } from '../../../orchestrator/cluster/root-client.ts';
import { parseOverlayTunnel, parseRemotePeers, RootAnswerError } from '../../../orchestrator/protocol/root-cluster.ts';

const key = { key_id: 128, key: 'ab'.repeat(32), encrypt: false };
const peer = { worker_id: 'w2', cluster_id: 'c2id', tunnel_id: 0x0a120100, tunnel_endpoint: '198.18.0.3:50103' };

test('an overlay key is taken as sent; absent means an older root', () => {
  assert.deepEqual(parseOverlayTunnel(key), key);
  assert.equal(parseOverlayTunnel(undefined), undefined);
  assert.equal(parseOverlayTunnel(null), undefined);
});

test('a malformed overlay key is a clear error', () => {
  for (const bad of [{ ...key, key: 'xyz' }, { ...key, key_id: 256 }, { key_id: 128, key: key.key }, 'key', 7]) {
    assert.throws(() => parseOverlayTunnel(bad), (e: unknown) => e instanceof RootAnswerError && /overlay_tunnel must be/.test(e.message), JSON.stringify(bad));
  }
});

test('remote peers: valid entries are kept, each malformed one is named', () => {
  const { peers, rejected } = parseRemotePeers([peer, { ...peer, tunnel_id: 0 }, { ...peer, tunnel_endpoint: 'nowhere' }, null, { ...peer, worker_id: 'w3', tunnel_endpoint: '[2001:2::3]:50103' }]);
  assert.deepEqual(peers.map((p) => p.worker_id), ['w2', 'w3']);
  assert.equal(rejected.length, 3);
  assert.match(rejected[0]!, /^peers\[1\] needs/);
  assert.deepEqual(parseRemotePeers('no').rejected, ['peers must be an array']);
  assert.deepEqual(parseRemotePeers(undefined), { peers: [], rejected: [] });
});

test('a report answer with a bad key still delivers its peers, and names the problem', () => {
  const news = overlayNews({ ok: true, overlay_tunnel: { ...key, key: 'short' }, peers: [peer] }, true);
  assert.equal(news.overlay, undefined);
  assert.deepEqual(news.peers, [peer]);
  assert.equal(news.problems.length, 1);
  assert.match(news.problems[0]!, /overlay_tunnel/);
});

test('a registration answer carries the key but no peers; an answer without the fields changes nothing', () => {
  assert.deepEqual(overlayNews({ cluster_id: 'x', token: 't', overlay_tunnel: key, peers: [peer] }, false), { overlay: key, problems: [] });
  assert.deepEqual(overlayNews({ ok: true }, true), { problems: [] });
});

test('a peers push from root is taken whole, or refused whole with the reason', () => {
  assert.deepEqual(parsePeersPush({ peers: [peer] }), { peers: [peer], version: undefined }, 'an older root sends no version');
  assert.deepEqual(parsePeersPush({ peers: [peer], peers_version: 1_790_000_000_000 }), { peers: [peer], version: 1_790_000_000_000 });
  assert.deepEqual(parsePeersPush({ peers: [] }), { peers: [], version: undefined }, 'an empty list is a valid push (the last remote caller stopped)');
  for (const [bad, why] of [
    [{ peers: [peer, { ...peer, tunnel_id: 0 }] }, /peers refused, nothing changed: peers\[1\] needs/],
    [{ peers: 'w2' }, /peers must be an array/],
    [{ peer: [peer] }, /body must be an object \{ peers/],
    [[peer], /body must be an object/],
    [null, /body must be an object/],
    [{ peers: [peer], peers_version: -1 }, /peers_version must be a non-negative integer: -1/],
    [{ peers: [peer], peers_version: '7' }, /peers_version must be a non-negative integer: "7"/],
  ] as const) {
    assert.throws(() => parsePeersPush(bad), (e: unknown) => e instanceof RootAnswerError && why.test(e.message), JSON.stringify(bad));
  }
  const many = { peers: Array.from({ length: 10 }, () => ({ ...peer, tunnel_endpoint: 'x' })) };
  assert.throws(() => parsePeersPush(many), /and 7 more$/);
});

test('a report answer carries the version of its peers; a bad version is named and the peers still count', () => {
  assert.deepEqual(overlayNews({ ok: true, peers: [peer], peers_version: 42 }, true), { peers: [peer], peersVersion: 42, problems: [] });
  assert.deepEqual(overlayNews({ ok: true, peers: [peer], peers_version: 1.5 }, true),
    { peers: [peer], problems: ['peers_version must be a non-negative integer: 1.5'] });
});
