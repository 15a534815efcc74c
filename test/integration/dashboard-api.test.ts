// Root's dashboard routes against a real root on loopback (no deployment): the page at `/`, the live
// feed's authentication and its events when a descriptor is deployed and undeployed, the logs relay's
// checks, and a cluster's status for an unknown cluster.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ensureDashboard } from '../../scripts/build-dashboard.ts';
import { RootHarness } from './root-harness.ts';

const sla = (app: string) => ({
  sla_version: 'v2.0', customerID: 'Admin',
  applications: [{
    applicationID: '', application_name: app, application_namespace: 'test', application_desc: '',
    microservices: [{ microserviceID: '', microservice_name: 'web', microservice_namespace: 'test', virtualization: 'process', memory: 16, vcpus: 0.1, cmd: ['true'] }],
  }],
});

/** Reads server-sent events until `until` returns true for the collected events (or 10 s pass). */
async function readEvents(url: string, token: string, until: (events: { event: string; data: Record<string, unknown> }[]) => boolean, act: () => Promise<void>, stop?: AbortSignal): Promise<{ event: string; data: Record<string, unknown> }[]> {
  const abort = new AbortController();
  stop?.addEventListener('abort', () => abort.abort());
  const timer = setTimeout(() => abort.abort(), 10_000);
  const events: { event: string; data: Record<string, unknown> }[] = [];
  try {
    const res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: abort.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let acted = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let cut: number;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const ev = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (ev && data) events.push({ event: ev, data: JSON.parse(data) as Record<string, unknown> });
      }
      if (!acted && events.some((e) => e.event === 'ready')) {
        acted = true;
        await act();
      }
      if (until(events)) break;
    }
  } catch (e) {
    if (!abort.signal.aborted) throw e;
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  return events;
}

describe('dashboard routes', () => {
  let h: RootHarness;
  let admin: string;
  let alice: string;

  before(async () => {
    await ensureDashboard();
    h = await RootHarness.start();
    admin = await h.admin();
    alice = await h.user('alice', admin);
  });
  after(async () => h.close());

  test('`/` serves the page and its bundle without a token; unknown assets are 404', async () => {
    const page = await fetch(`${h.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    const html = await page.text();
    const js = /src="(\/assets\/app\.js[^"]*)"/.exec(html)?.[1];
    assert.ok(js, html);
    const bundle = await fetch(`${h.url}${js}`);
    assert.equal(bundle.status, 200);
    assert.match(bundle.headers.get('content-type') ?? '', /^text\/javascript/);
    assert.ok((await bundle.text()).length > 1000);
    assert.equal((await fetch(`${h.url}/assets/..%2Fsrc%2Fmain.tsx`)).status, 404);
    assert.equal((await fetch(`${h.url}/assets/nothing.js`)).status, 404);
    // Nothing in the page points outside root, and the browser is told to load nothing from elsewhere.
    assert.doesNotMatch(html, /https?:\/\//);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'self'/);
  });

  test('the live feed needs a token', async () => {
    assert.equal((await h.call('GET', '/api/v1/events')).status, 401);
    assert.equal((await h.call('GET', '/api/v1/events', undefined, 'not-a-token')).status, 401);
    assert.equal((await h.call('GET', '/api/v1/dashboard/logs/x/0')).status, 401);
    assert.equal((await h.call('GET', '/api/v1/dashboard/clusters/x')).status, 401);
  });

  test('deploying and undeploying shows up on the feed, and only to the owner and admins', async () => {
    let serviceId = '';
    let bobEvents = 0;
    const bob = await h.user('bob', admin);
    // Bob listens too, and must see none of alice's instance events.
    const bobStop = new AbortController();
    let bobListens: () => void = () => undefined;
    const bobReady = new Promise<void>((resolve) => {
      bobListens = resolve;
    });
    const bobRead = readEvents(`${h.url}/api/v1/events`, bob, () => false, async () => bobListens(), bobStop.signal).then((e) => {
      bobEvents = e.filter((x) => x.event === 'instance').length;
    });
    const events = await readEvents(`${h.url}/api/v1/events`, alice, (ev) => ev.some((e) => e.event === 'instance' && e.data.state === 'UNDEPLOYED'), async () => {
      await bobReady;
      const r = await h.call('POST', '/api/v1/application?deploy=true', sla('feedapp'), alice);
      assert.equal(r.status, 201, r.text);
      serviceId = r.body.services[0].microserviceID;
      // No cluster: root leaves it unplaced, then it is undeployed.
      const u = await h.call('DELETE', `/api/v1/service/${serviceId}/instance/0`, undefined, alice);
      assert.equal(u.status, 200, u.text);
    });
    assert.ok(events.some((e) => e.event === 'catalog'), JSON.stringify(events));
    const mine = events.filter((e) => e.event === 'instance');
    assert.ok(mine.every((e) => e.data.service_id === serviceId && e.data.instance_n === 0 && !('owner' in e.data)), JSON.stringify(mine));
    assert.deepEqual([mine[0]?.data.state, mine.at(-1)?.data.state], ['REQUESTED', 'UNDEPLOYED']);
    bobStop.abort();
    await bobRead;
    assert.equal(bobEvents, 0);
  });

  test('logs: another user\'s service is refused, an unknown instance is 404, an instance on no worker says why', async () => {
    const r = await h.call('POST', '/api/v1/application?deploy=true', sla('logapp'), alice);
    assert.equal(r.status, 201, r.text);
    const sid = r.body.services[0].microserviceID as string;
    const bob = await h.login('bob', 'bob-password');
    assert.equal((await h.call('GET', `/api/v1/dashboard/logs/${sid}/0`, undefined, bob)).status, 403);
    assert.equal((await h.call('GET', `/api/v1/dashboard/logs/${sid}/7`, undefined, alice)).status, 404);
    const events = await readEvents(`${h.url}/api/v1/dashboard/logs/${sid}/0`, alice, (ev) => ev.some((e) => e.event === 'problem'), async () => undefined);
    const problem = events.find((e) => e.event === 'problem');
    assert.match(String(problem?.data.message), /on no worker/);
  });

  test('a cluster that does not exist is 404', async () => {
    const r = await h.call('GET', '/api/v1/dashboard/clusters/nope', undefined, admin);
    assert.equal(r.status, 404);
  });
});
