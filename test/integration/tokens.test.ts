// Short-lived access tokens (SPEC §10) against a real root: an expired access token gets 401, the
// refresh token from the login buys a new one that works, a refresh token is no access token and an
// access token no refresh token, and the CLI's client renews by itself when root refuses its token.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { RootHarness, ADMIN_PASSWORD } from './root-harness.ts';
import { RootClient } from '../../orchestrator/client/root-client.ts';

let h: RootHarness;
before(async () => {
  h = await RootHarness.start({ accessTtlS: 1 });
});
after(async () => {
  await h.close();
});

test('an expired access token is refused; a refresh works', { timeout: 30_000 }, async () => {
  const asked = Date.now();
  const login = await h.call('POST', '/api/v1/auth/login', { username: 'admin', password: ADMIN_PASSWORD });
  assert.equal(login.status, 200);
  const { token, refresh_token: refresh, expires_in } = login.body as { token: string; refresh_token: string; expires_in: number };
  assert.equal(expires_in, 1);
  // It lives at least expires_in from the moment it was asked for: JWT times are whole seconds, and
  // the expiry is rounded up, not down (rounded down, a 1 s token could expire within a millisecond).
  const { exp } = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { exp: number };
  assert.ok(exp * 1000 >= asked + expires_in * 1000, `expires at ${exp * 1000}, asked at ${asked}, expires_in ${expires_in}`);
  assert.equal((await h.call('GET', '/api/v1/applications', undefined, token)).status, 200);
  assert.equal((await h.call('GET', '/api/v1/applications', undefined, refresh)).status, 401, 'a refresh token is not an access token');
  assert.equal((await h.call('POST', '/api/v1/auth/refresh', undefined, token)).status, 401, 'an access token does not refresh');
  // JWT expiry has a resolution of one second: 2.1 s is past it whatever the rounding.
  await new Promise((r) => setTimeout(r, 2100));
  const expired = await h.call('GET', '/api/v1/applications', undefined, token);
  assert.equal(expired.status, 401);
  const renewed = await h.call('POST', '/api/v1/auth/refresh', undefined, refresh);
  assert.equal(renewed.status, 200, renewed.text);
  assert.equal((await h.call('GET', '/api/v1/applications', undefined, renewed.body.token as string)).status, 200);
  assert.equal((await h.call('POST', '/api/v1/auth/refresh', undefined, 'not-a-token')).status, 401);

  // The CLI's client: a refused token is renewed once and the call retried.
  const c = new RootClient({ url: h.url });
  const a = await c.login('admin', ADMIN_PASSWORD);
  let renewals = 0;
  c.renew = async () => {
    renewals++;
    await c.refresh(a.refresh_token!);
  };
  await new Promise((r) => setTimeout(r, 2100));
  assert.deepEqual(await c.applications(), []);
  assert.equal(renewals, 1);
});
