// The browser dashboard in Debian's headless Chromium (driven by playwright-core) against a one-worker
// `canopy up` deployment: log in; a descriptor with an error shows the error at its field; deploy the
// demo by upload and watch its instances reach RUNNING without a reload; scale web to 2 and back;
// follow the client's logs until a new line arrives; the fleet map with the cluster and its worker;
// tablet width and keyboard; undeploy. Every page passes axe-core without serious or critical
// violations, and each test leaves a screenshot in test/output/dashboard/.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { CHROMIUM, CHROMIUM_FLAGS } from '../../harness/chromium.ts';
import { binaryMissing, needRoot, unavailable } from '../support/facility.ts';
import { down, up } from '../../orchestrator/deployment/local.ts';
import { readState, type DeploymentState } from '../../orchestrator/client/deployment-state.ts';
import { ensureDashboard } from '../../scripts/build-dashboard.ts';
import { createHash, X509Certificate } from 'node:crypto';

const OUT = join(import.meta.dirname, '../output/dashboard');
const DEMO = join(import.meta.dirname, '../../orchestrator/deployment/demo.sla.json');
const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
const skip = unavailable(needRoot() ?? (existsSync(CHROMIUM) ? null : binaryMissing(CHROMIUM) ?? `${CHROMIUM} not installed`));
const tmp = mkdtempSync(join(tmpdir(), 'canopy-dashboard-test-'));
const dir = join(tmp, 'state');

let state: DeploymentState | undefined;
let context: BrowserContext | undefined;
let page: Page;

async function shot(name: string): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  await page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });
}

/** axe-core injected into the page; serious and critical violations fail, with what and where. */
async function accessible(label: string): Promise<void> {
  // Evaluated through the DevTools protocol: the page's Content-Security-Policy forbids injected <script> tags.
  await page.evaluate(readFileSync(AXE, 'utf8'));
  const violations = await page.evaluate(`axe.run().then((r) => r.violations.map((v) => ({
    id: v.id, impact: v.impact, targets: v.nodes.slice(0, 3).map((n) => n.target.join(' ')),
  })))`) as { id: string; impact: string; targets: string[] }[];
  const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], `${label}: ${JSON.stringify(bad)}`);
}

/**
 * `canopy up` serves root over https with a certificate from the deployment's own CA: the browser is
 * told to accept exactly root's key (its SPKI hash), as a user who imported the CA would be.
 */
function trustRootCert(s: DeploymentState): string[] {
  if (!s.ca) return [];
  const der = new X509Certificate(readFileSync(join(s.dir, 'tls', 'root.pem'))).publicKey.export({ type: 'spki', format: 'der' });
  return [`--ignore-certificate-errors-spki-list=${createHash('sha256').update(der).digest('base64')}`];
}

describe('dashboard in Chromium', { skip }, () => {
  before(async () => {
    if (skip) return;
    await ensureDashboard();
    const base = 27000 + (process.pid % 3000) * 2;
    state = await up({
      dir, workers: 1, name: `d${(process.pid % 46656).toString(36)}`, subnet: `198.19.${200 + (process.pid % 40)}.0`,
      rootPort: base, clusterPort: base + 1, mqttPort: base + 2, workerApiPort: base + 3,
    });
    context = await chromium.launchPersistentContext(join(tmp, 'profile'), {
      executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_FLAGS, ...trustRootCert(state)], viewport: { width: 1366, height: 900 },
    });
    page = context.pages()[0] ?? await context.newPage();
    // Nothing may be loaded from outside root.
    const root = new URL(state.rootUrl);
    await page.route('**/*', (r) => (new URL(r.request().url()).host === root.host ? r.continue() : r.abort()));
    page.on('requestfailed', (r) => {
      if (new URL(r.url()).host !== root.host) assert.fail(`the page asked for ${r.url()}`);
    });
  });

  after(async () => {
    await context?.close().catch(() => undefined);
    const s = state ?? readState(dir);
    if (s) down(s);
    rmSync(tmp, { recursive: true, force: true });
  });

  test('log in with the deployment\'s user', { timeout: 30_000 }, async () => {
    await page.goto(state!.rootUrl);
    await accessible('login');
    await page.fill('#password', 'wrong-password');
    await page.click('button[type=submit]');
    await page.getByRole('alert').filter({ hasText: 'wrong username or password' }).waitFor();
    await page.fill('#username', state!.username);
    await page.fill('#password', state!.password);
    await page.click('button[type=submit]');
    await page.getByRole('link', { name: 'Fleet' }).waitFor();
    await page.locator('.feed.on').waitFor();
    await shot('01-logged-in');
    await accessible('applications');
  });

  test('a descriptor with an error shows it at the offending field', { timeout: 30_000 }, async () => {
    await page.click('a[href="#/deploy"]');
    const bad = { sla_version: 'v2.0', customerID: 'Admin', applications: [{ applicationID: '', application_name: 'Bad_Name!', application_namespace: 'test', application_desc: '',
      microservices: [{ microserviceID: '', microservice_name: 'web', microservice_namespace: 'test', memory: 16, vcpus: 0.1, cmd: ['true'] }] }] };
    await page.fill('#sla-text', JSON.stringify(bad, null, 2));
    await page.click('button[type=submit]');
    // A required field that is missing appears where it belongs, marked missing, with its error.
    const virt = page.locator('li.invalid[data-path="/applications/0/microservices/0/virtualization"]');
    await virt.waitFor();
    assert.match(await virt.innerText(), /missing[\s\S]*is required/);
    // With that fixed, root finds the bad name: the error moves to that field.
    (bad.applications[0]!.microservices[0] as Record<string, unknown>).virtualization = 'process';
    await page.fill('#sla-text', JSON.stringify(bad, null, 2));
    await page.click('button[type=submit]');
    const nameField = page.locator('li.invalid[data-path="/applications/0/application_name"]');
    await nameField.waitFor();
    assert.match(await nameField.locator(':scope > .field-error').innerText(), /letters a-z and digits/);
    assert.equal(await virt.count(), 0);
    await shot('02-descriptor-error');
    await accessible('deploy with errors');
  });

  test('deploy the demo by upload; its instances reach RUNNING without a reload', { timeout: 120_000 }, async () => {
    await page.fill('#sla-text', '');
    await page.setInputFiles('#sla-file', DEMO);
    await page.evaluate('window.notReloaded = true');
    await page.click('button[type=submit]');
    await page.waitForURL(/#\/apps\/[0-9a-f]+$/);
    for (const svc of ['web', 'client']) {
      await page.click(`a[data-service="${svc}"]`);
      await page.locator('tr[data-instance="0"][data-state="RUNNING"]').waitFor({ timeout: 90_000 });
      assert.match(await page.locator('#svc-title').innerText(), new RegExp(`^webapp\\.demo\\.${svc}\\.demo$`));
    }
    assert.equal(await page.evaluate('window.notReloaded'), true, 'the page was reloaded');
    // The service's addresses and DNS names are shown.
    await page.click('a[data-service="web"]');
    await page.getByText('10.30.30.31').waitFor();
    await page.getByText('closest.web.demo.webapp.demo.canopy').waitFor();
    await shot('03-demo-running');
    await accessible('service');
  });

  test('live without polling: nothing changes, so the page asks root for nothing but its event feed', { timeout: 30_000 }, async () => {
    // Every instance is RUNNING and nothing is deployed or scaled meanwhile: no instance or catalog event
    // comes, so a page fed by root's events refetches no application, service or instance. (Cluster
    // reports still come every few seconds, and with them the clusters list: that is an event too.)
    await page.click('a[data-service="web"]');
    await page.locator('tr[data-instance="0"][data-state="RUNNING"]').waitFor();
    const asked: string[] = [];
    const onRequest = (r: { url(): string }): void => {
      const path = new URL(r.url()).pathname;
      if (/^\/api\/v1\/(applications|services?|instances?)\b/.test(path)) asked.push(path);
    };
    page.on('request', onRequest);
    await new Promise((r) => setTimeout(r, 6000));
    page.off('request', onRequest);
    assert.deepEqual(asked, [], 'requests while nothing changed');
    assert.equal(await page.locator('.feed.on').count(), 1, 'the event feed is connected');
  });

  test('scale web to 2 and back to 1', { timeout: 120_000 }, async () => {
    await page.click('a[data-service="web"]');
    await page.getByRole('button', { name: 'Scale web up' }).click();
    await page.locator('tr[data-instance="1"][data-state="RUNNING"]').waitFor({ timeout: 90_000 });
    assert.equal(await page.getByTestId('scale-count').innerText(), '2');
    await shot('04-web-scaled-2');
    await page.getByRole('button', { name: 'Scale web down' }).click();
    await page.locator('tr[data-instance="1"][data-state="UNDEPLOYED"]').waitFor({ timeout: 60_000 });
    assert.equal(await page.getByTestId('scale-count').innerText(), '1');
    assert.equal(await page.locator('tr[data-instance="0"]').getAttribute('data-state'), 'RUNNING');
  });

  test("the client's logs follow new lines", { timeout: 60_000 }, async () => {
    await page.click('a[data-service="client"]');
    await page.getByRole('link', { name: 'Instance 0: details and logs' }).click();
    const logs = page.getByTestId('logs');
    // The client prints one HTTP status per second.
    await logs.filter({ hasText: /\d{3}\n/ }).waitFor({ timeout: 30_000 });
    const count = async () => (await logs.innerText()).split('\n').filter(Boolean).length;
    const before = await count();
    for (let waited = 0; (await count()) <= before; waited += 250) {
      assert.ok(waited < 30_000, `no new log line within 30 s (${before} lines)`);
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.match(await logs.innerText(), /^200$/m);
    // The timeline shows the transitions with their reasons.
    assert.match(await page.locator('ol.timeline').innerText(), /RUNNING[\s\S]*REQUESTED\s+deployed with the descriptor by admin/);
    await shot('05-client-logs');
    await accessible('instance with logs');
  });

  test('the fleet: the cluster on the map opens to its worker and its instances', { timeout: 30_000 }, async () => {
    await page.click('a[href="#/fleet"]');
    await page.locator('svg.map path.land').waitFor();
    await page.getByRole('link', { name: state!.clusterName, exact: true }).click();
    const worker = state!.workers[0]!.name;
    await page.getByRole('heading', { name: new RegExp(worker) }).waitFor();
    await page.locator('.cluster-detail').getByText('webapp.demo.client.demo#0').waitFor();
    await shot('06-fleet');
    await accessible('fleet');
  });

  test('tablet width: no sideways scrolling; the views are reachable by keyboard', { timeout: 30_000 }, async () => {
    await page.setViewportSize({ width: 768, height: 1024 });
    await page.click('a[href="#/apps"]');
    await page.click('a[data-service="web"]');
    await shot('07-tablet');
    await accessible('tablet width');
    const overflow = await page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth') as number;
    assert.ok(overflow <= 0, `the page is ${overflow} px wider than a tablet`);
    // Keyboard: the skip link comes first, then the views; Enter follows a link.
    // From a fresh load (the session survives it), so Tab starts at the top of the page.
    await page.reload();
    await page.locator('a[data-service="web"]').waitFor();
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate('document.activeElement?.textContent'), 'Skip to content');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate('document.activeElement?.textContent'), 'Fleet');
    await page.keyboard.press('Enter');
    await page.waitForURL(/#\/fleet$/);
    await page.setViewportSize({ width: 1366, height: 900 });
  });

  test('undeploy the application, after confirming', { timeout: 60_000 }, async () => {
    await page.click('a[href="#/apps"]');
    await page.click('a[data-service="web"]');
    await page.getByRole('button', { name: 'Undeploy application' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    await shot('08-confirm-undeploy');
    await accessible('confirm undeploy dialog');
    // Cancel keeps it; confirming removes it.
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    assert.equal(await page.locator('a[data-service="web"]').count(), 1);
    await page.getByRole('button', { name: 'Undeploy application' }).click();
    await dialog.getByRole('button', { name: 'Undeploy application' }).click();
    await page.getByText('No applications yet').waitFor({ timeout: 30_000 });
    await shot('09-undeployed');
    await accessible('no applications');
  });
});

