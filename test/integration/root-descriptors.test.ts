// Descriptors against a real root: every fixture of Oakestra's format is accepted as it is; every
// descriptor of the invalid corpus gets a 4xx naming the offending field, never a 5xx, and leaves
// nothing stored.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { baseDescriptor, invalidCases } from '../fixtures/descriptors/invalid.ts';
import { RootHarness } from './root-harness.ts';
import { SLA_FIXTURES as FIXTURES } from '../../harness/fixtures.ts';


describe('root descriptors', () => {
  let h: RootHarness;
  let token: string;
  before(async () => {
    h = await RootHarness.start();
    token = await h.admin();
  });
  after(async () => h.close());

  test('every fixture is accepted as it is, and its pinned addresses are honoured', async () => {
    const files = readdirSync(FIXTURES).filter((f) => f.endsWith('.json'));
    assert.ok(files.length >= 4);
    for (const f of files) {
      const sla = JSON.parse(readFileSync(join(FIXTURES, f), 'utf8'));
      const r = await h.call('POST', '/api/v1/application', sla, token);
      assert.equal(r.status, 201, `${f}: ${r.text}`);
      for (const [i, ms] of sla.applications[0].microservices.entries()) {
        const svc = r.body.services[i];
        assert.equal(svc.microservice_name, ms.microservice_name);
        if (ms.addresses?.rr_ip) assert.equal(svc.rr_ip, ms.addresses.rr_ip, `${f}: pinned rr_ip`);
        if (ms.addresses?.closest_ip) assert.equal(svc.closest_ip, ms.addresses.closest_ip, `${f}: pinned closest_ip`);
      }
      // Two fixtures pin the same address: delete each before the next.
      for (const app of r.body.applications) assert.equal((await h.call('DELETE', `/api/v1/application/${app.applicationID}`, undefined, token)).status, 200);
    }
  });

  test(`the invalid corpus (${invalidCases.length} descriptors): 400/422 with the field path, nothing stored`, async () => {
    assert.ok(invalidCases.length >= 100);
    const misses: string[] = [];
    for (const c of invalidCases) {
      const r = c.raw !== undefined
        ? await h.call('POST', '/api/v1/application', undefined, token, { text: c.raw, contentType: c.contentType ?? 'application/json' })
        : await h.call('POST', '/api/v1/application', c.body, token);
      // SPEC §4: a rejected descriptor is 400 (unreadable) or 422 (readable, invalid); a body refused
      // before it is read (wrong media type, too large) has HTTP's own code, named by its case.
      if (c.status !== undefined ? r.status !== c.status : r.status !== 400 && r.status !== 422) {
        misses.push(`${c.name}: status ${r.status} ${r.text.slice(0, 200)}`);
        continue;
      }
      const paths: string[] = (r.body?.errors ?? []).map((e: { path: string }) => e.path);
      if (!paths.includes(c.path)) misses.push(`${c.name}: wanted path ${JSON.stringify(c.path)}, got ${JSON.stringify(paths)} (${r.status})`);
      if (r.body?.errors?.some((e: { message?: unknown }) => typeof e.message !== 'string' || e.message === '')) misses.push(`${c.name}: an error without a reason`);
    }
    assert.deepEqual(misses, []);
    const apps = await h.call('GET', '/api/v1/applications', undefined, token);
    assert.deepEqual(apps.body, [], 'a rejected descriptor stored an application');
    // The base descriptor itself is valid, and its pinned address was not leaked by the rejections.
    const ok = await h.call('POST', '/api/v1/application', baseDescriptor(), token);
    assert.equal(ok.status, 201, ok.text);
    assert.equal(ok.body.services[0].rr_ip, '10.30.1.1');
  });

  test('an address pinned by an existing service is refused with its path; nothing of the new descriptor is stored', async () => {
    const other = baseDescriptor();
    (other.applications as { application_name: string }[])[0]!.application_name = 'other';
    const r = await h.call('POST', '/api/v1/application', other, token);
    assert.equal(r.status, 422);
    assert.deepEqual(r.body.errors.map((e: { path: string }) => e.path), ['/applications/0/microservices/0/addresses/rr_ip']);
    assert.match(r.body.errors[0].message, /already taken/);
    const names = (await h.call('GET', '/api/v1/applications', undefined, token)).body.map((a: { application_name: string }) => a.application_name);
    assert.ok(!names.includes('other'));
  });

  test('names are case-insensitive on input and stored lower-case; numeric strings are read as numbers', async () => {
    const d = baseDescriptor();
    const app = (d.applications as Record<string, unknown>[])[0]!;
    app.application_name = 'MixedCase';
    const ms = (app.microservices as Record<string, unknown>[])[0]!;
    ms.microservice_name = 'WEB';
    ms.memory = '256';
    ms.addresses = {};
    const r = await h.call('POST', '/api/v1/application', d, token);
    assert.equal(r.status, 201, r.text);
    assert.equal(r.body.applications[0].application_name, 'mixedcase');
    assert.equal(r.body.services[0].microservice_name, 'web');
    assert.equal(r.body.services[0].memory, 256);
    assert.equal(r.body.services[0].name, 'mixedcase.test.web.test');
  });

  test('a full service range answers 503 and stores nothing of the descriptor', async () => {
    // 10.30.0.0/29 has 6 usable addresses: one service takes 2 (rr, closest), so the fourth cannot fit.
    const small = await RootHarness.start({ plan: { serviceV4: '10.30.0.0/29' } });
    try {
      const t = await small.admin();
      const d = baseDescriptor();
      const app = (d.applications as Record<string, unknown>[])[0]!;
      const one = (app.microservices as Record<string, unknown>[])[1]!;
      app.microservices = ['a', 'b', 'c', 'd'].map((n) => ({ ...one, microservice_name: n }));
      const r = await small.call('POST', '/api/v1/application', d, t);
      assert.equal(r.status, 503, r.text);
      assert.match(r.body.error, /no free address left in 10\.30\.0\.0\/29/);
      assert.deepEqual((await small.call('GET', '/api/v1/applications', undefined, t)).body, []);
      app.microservices = ['a', 'b', 'c'].map((n) => ({ ...one, microservice_name: n }));
      assert.equal((await small.call('POST', '/api/v1/application', d, t)).status, 201, 'the failed attempt left no addresses behind');
    } finally {
      await small.close();
    }
  });
});
