// Login throttling against a real root over real sockets: 20 wrong passwords for admin from one
// address end in 429 (with Retry-After) and the right password from there is refused too, while the
// right password from another address (127.0.0.2) still logs in, on both login routes' shared count.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { RootHarness, ADMIN_PASSWORD } from './root-harness.ts';

let h: RootHarness;
before(async () => {
  h = await RootHarness.start();
});
after(async () => {
  await h.close();
});

function login(from: string, password: string, path = '/api/v1/auth/login'): Promise<{ status: number; retryAfter?: string; body: string }> {
  const url = new URL(path, h.url);
  const body = JSON.stringify({ username: 'admin', password });
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', localAddress: from, agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] as string | undefined, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('20 wrong passwords → 429; the right one from another address still works', { timeout: 60_000 }, async () => {
  const statuses: number[] = [];
  for (let i = 0; i < 20; i++) {
    // Both surfaces count against the same user and address.
    statuses.push((await login('127.0.0.1', `wrong-${i}`, i % 2 ? '/api/auth/login' : '/api/v1/auth/login')).status);
  }
  assert.ok(statuses.slice(0, 5).every((s) => s === 401), `the first failures are plain 401s: ${statuses.join(' ')}`);
  assert.equal(statuses.at(-1), 429, `throttled by the 20th: ${statuses.join(' ')}`);
  const blocked = await login('127.0.0.1', ADMIN_PASSWORD);
  assert.equal(blocked.status, 429, 'from the attacking address even the right password waits');
  assert.ok(Number(blocked.retryAfter) >= 1, `Retry-After: ${blocked.retryAfter}`);
  assert.match(blocked.body, /too many failed logins/);
  const other = await login('127.0.0.2', ADMIN_PASSWORD);
  assert.equal(other.status, 200, other.body);
  assert.ok((JSON.parse(other.body) as { token?: string }).token);
});
