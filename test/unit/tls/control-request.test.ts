// controlRequest: the daemons' calls between tiers on node:http (no fetch, no undici): the status and
// body come back, failures are TypeErrors with the socket error as cause, as fetch's are.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { controlRequest } from '../../../orchestrator/protocol/tls.ts';

test('controlRequest: answers, refusals and timeouts', async () => {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      if (req.url === '/slow') return;
      res.writeHead(req.url === '/missing' ? 404 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ method: req.method, auth: req.headers.authorization ?? null, body }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const a = await controlRequest(`${base}/x`, { method: 'POST', headers: { authorization: 'Bearer k' }, body: '{"n":1}' });
    assert.equal(a.status, 200);
    assert.equal(a.ok, true);
    assert.deepEqual(JSON.parse(a.text), { method: 'POST', auth: 'Bearer k', body: '{"n":1}' });
    const missing = await controlRequest(new URL('/missing', base));
    assert.equal(missing.status, 404);
    assert.equal(missing.ok, false);
    await assert.rejects(controlRequest(`${base}/slow`, { signal: AbortSignal.timeout(100) }), (e: Error) => e instanceof TypeError);
    await assert.rejects(controlRequest('ftp://127.0.0.1/'), /not an http\(s\) URL/);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
  await assert.rejects(controlRequest(base), (e: Error & { cause?: { code?: string } }) => e instanceof TypeError && e.cause?.code === 'ECONNREFUSED');
});
