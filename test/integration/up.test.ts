// `canopy up --workers 2` then `canopy down`, as an operator runs them: two workers in their own
// namespaces join through a real bridge, the demo runs, `up` again says it is already up, and `down`
// leaves nothing behind — namespaces, links, cgroups, processes — even after a worker daemon was
// SIGKILLed with its instances still running.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needRoot, unavailable } from '../support/facility.ts';
import { down } from '../../orchestrator/deployment/local.ts';
import { registryGuardArgs } from '../../harness/registry-guard.ts';
import { readState } from '../../orchestrator/client/deployment-state.ts';

const CANOPY = join(import.meta.dirname, '../../bin/canopy.js');
const skip = unavailable(needRoot());
const name = `u${(process.pid % 46656).toString(36)}`;
const subnet = `198.19.${200 + (process.pid % 40)}.0`;
const base = 20000 + (process.pid % 5000) * 2;
const tmp = mkdtempSync(join(tmpdir(), 'canopy-up-test-'));
// Two levels that do not exist yet, like /var/lib/canopy/up on a fresh machine: down removes both.
const dir = join(tmp, 'lib', 'canopy', 'up');
const env = { ...process.env, CANOPY_UP_DIR: dir, XDG_CACHE_HOME: join(tmp, 'cache') };
// The deployment's upstream resolver: dnsmasq on the host's loopback (like systemd-resolved's
// 127.0.0.53, which no worker namespace can reach by a route), knowing one made-up outside name.
const dnsPort = 30000 + (process.pid % 5000);
let dnsmasq: ChildProcess | null = null;

after(() => {
  // Pass or fail: whatever the test made goes.
  const s = existsSync(dir) ? readState(dir) : null;
  if (s) down(s);
  dnsmasq?.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
});

function canopy(args: string[], timeoutMs = 150_000): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [CANOPY, ...args], { env, encoding: 'utf8', timeout: timeoutMs });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

function netns(): string[] {
  return spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean);
}

function links(): string[] {
  return readdirSync('/sys/class/net');
}

function cgroups(): string[] {
  const out: string[] = [];
  const walk = (d: string, depth: number): void => {
    if (depth > 4) return;
    let entries: string[];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e);
      try {
        if (statSync(p).isDirectory()) {
          out.push(p);
          walk(p, depth + 1);
        }
      } catch { /* raced with a removal */ }
    }
  };
  for (const root of readdirSync('/sys/fs/cgroup')) walk(join('/sys/fs/cgroup', root, 'canopy'), 0);
  return out;
}

/** The shared `canopy` parent group in each hierarchy that has one. */
function cgroupParents(): string[] {
  return readdirSync('/sys/fs/cgroup').map((r) => join('/sys/fs/cgroup', r, 'canopy')).filter((p) => existsSync(p));
}

/** Processes whose command line mentions this test's state directory or deployment. */
function ours(): string[] {
  const found: string[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(dir) || cmd.includes(`${name}-w`)) found.push(`${p}: ${cmd.slice(0, 200)}`);
    } catch { /* gone */ }
  }
  return found;
}

const mine = (x: string) => x.includes(`cup-${name}`) || x.includes(`${name}-w`);

test('canopy up --workers 2 runs the demo; instances resolve outside names; up again says so; down after a killed worker leaves nothing', { skip, timeout: 240_000 }, async () => {
  const before = { netns: netns(), links: links(), cgroups: cgroups(), parents: cgroupParents() };
  dnsmasq = spawn('dnsmasq', ['-k', '--no-resolv', '--no-hosts', '--bind-interfaces', '--listen-address=127.0.0.1', `--port=${dnsPort}`,
    '--user=root', '--pid-file=', '--address=/outside.test/192.0.2.77'], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    if (spawnSync('ss', ['-Hlun', `sport = :${dnsPort}`], { encoding: 'utf8' }).stdout.trim()) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const upArgs = ['up', '--workers', '2', '--name', name, '--subnet', subnet, '--root-port', String(base), '--cluster-port', String(base + 1),
    '--mqtt-port', String(base + 2), '--worker-api-port', String(base + 3), '--dns-relay-port', String(base + 4),
    '--dns-upstream', `127.0.0.1:${dnsPort}`, ...registryGuardArgs().map((a) => `--worker-arg=${a}`)];
  const first = canopy(upArgs);
  assert.match(first.out, /up: root https:\/\/198\.19\.\d+\.1:\d+/, first.out);
  assert.equal(first.code, 0, first.out);
  assert.match(first.out, /demo OK: the client on \S+ got HTTP 200 from http:\/\/closest\.web\//, first.out);
  assert.match(first.out, /what to try next/);

  const s = readState(dir)!;
  assert.equal(s.workers.length, 2);
  // TLS is the default: every URL is https/mqtts, the CA is the deployment's, and a client that does
  // not pin it, or speaks plain HTTP, gets nothing.
  assert.ok(s.ca && existsSync(s.ca), `the deployment's CA: ${s.ca}`);
  for (const u of [s.rootUrl, s.clusterUrl, ...s.workers.map((w) => w.apiUrl)]) assert.match(u, /^https:\/\//);
  assert.match(s.mqttUrl, /^mqtts:\/\//);
  const pinned = spawnSync('curl', ['-sS', '-m', '5', '--cacert', s.ca!, `${s.rootUrl}/metrics`], { encoding: 'utf8' });
  assert.equal(pinned.status, 0, `curl with the CA: ${pinned.stderr}`);
  const unpinned = spawnSync('curl', ['-sS', '-m', '5', `${s.rootUrl}/metrics`], { encoding: 'utf8' });
  assert.equal(unpinned.status, 60, `curl without the CA must fail verification (rc 60): rc ${unpinned.status} ${unpinned.stderr}`);
  const plain = spawnSync('curl', ['-sS', '-m', '5', `${s.rootUrl.replace('https:', 'http:')}/metrics`], { encoding: 'utf8' });
  assert.notEqual(plain.status, 0, `plain HTTP to root's TLS port must get no answer: ${plain.stdout}`);
  for (const w of s.workers) assert.ok(netns().includes(w.netns), `namespace ${w.netns}`);
  assert.ok(links().includes(s.bridge), `bridge ${s.bridge}`);
  // The workers' instances are real: namespaces and cgroups exist while they run.
  const instances = netns().filter((n) => n.startsWith(`canopy-${name}-w`));
  assert.ok(instances.length > 0, `instance namespaces: ${netns().join(' ')}`);

  // An outside name from inside an instance: instance → its worker's service DNS → the relay on the
  // bridge → the host's (loopback) resolver.
  const got = spawnSync('ip', ['netns', 'exec', instances[0]!, 'getent', 'hosts', 'www.outside.test'], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(got.status, 0, `getent hosts www.outside.test in ${instances[0]}: ${got.stdout}${got.stderr}`);
  assert.match(got.stdout, /^192\.0\.2\.77\s+www\.outside\.test/m);

  const again = canopy(upArgs);
  assert.equal(again.code, 0, again.out);
  assert.match(again.out, /already up: deployment "/);

  const status = canopy(['status']);
  assert.equal(status.code, 0, status.out);
  assert.ok(existsSync(join(tmp, 'cache', 'canopy', 'tokens.json')), 'status cached its token');
  assert.match(status.out, /webapp\.demo\.web\.demo\s+0\s+RUNNING/);
  assert.match(status.out, /2 active workers/);

  // A worker dies without undeploying: its instances keep running until down removes them.
  process.kill(s.workers[0]!.process!.pid, 'SIGKILL');

  const stopped = canopy(['down']);
  assert.equal(stopped.code, 0, stopped.out);
  assert.match(stopped.out, /down: deployment \S+ stopped/);
  assert.equal(existsSync(dir), false, 'state directory removed');
  assert.equal(existsSync(join(tmp, 'lib')), false, 'and the empty parents up made for it');
  assert.ok(existsSync(tmp), 'but nothing above them');
  assert.equal(existsSync(join(tmp, 'cache', 'canopy')), false, "the CLI's token cache for the gone root");

  const afterDown = { netns: netns(), links: links(), cgroups: cgroups() };
  assert.deepEqual(afterDown.netns.filter(mine), [], 'no namespace of the deployment or its instances');
  assert.deepEqual(afterDown.links.filter(mine), [], 'no link of the deployment');
  assert.deepEqual(afterDown.cgroups.filter(mine), [], 'no cgroup of its workers');
  assert.deepEqual(cgroupParents().filter((p) => !before.parents.includes(p)), [], 'no canopy cgroup parent that was not there before');
  // Other tests on this machine make lab namespaces (cl<hex>-…) and instance namespaces of their own
  // workers (canopy-<their worker>-…) meanwhile; anything else new would be ours, whatever its name.
  const others = (n: string) => /^cl[0-9a-f]{4}/.test(n) || (n.startsWith('canopy-') && !n.startsWith(`canopy-${name}-`));
  assert.deepEqual(afterDown.netns.filter((n) => !before.netns.includes(n) && !others(n)), [], 'no other new namespace');
  assert.deepEqual(afterDown.links.filter((l) => !before.links.includes(l)), [], 'no new link in the host namespace');
  assert.deepEqual(ours(), [], 'no process left');

  const twice = canopy(['down']);
  assert.equal(twice.code, 0);
  assert.match(twice.out, /nothing is up/);
});
