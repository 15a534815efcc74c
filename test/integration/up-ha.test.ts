// `canopy up --roots 2 --store postgres`, as the README shows HA on one machine: Debian's PostgreSQL
// started in the state directory, two root replicas over it, a cluster and a worker that know both.
// Root replica 1 is SIGKILLed: `canopy status` still answers (the CLI fails over to replica 2) and the
// cluster stays active there. `canopy down` removes everything, PostgreSQL included.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needRoot, unavailable } from '../support/facility.ts';
import { postgresMissing } from '../support/postgres.ts';
import { down } from '../../orchestrator/deployment/local.ts';
import { readState } from '../../orchestrator/client/deployment-state.ts';

const CANOPY = join(import.meta.dirname, '../../bin/canopy.js');
const skip = unavailable(needRoot() ?? postgresMissing());
const name = `h${(process.pid % 46656).toString(36)}`;
const subnet = `198.19.${160 + (process.pid % 30)}.0`;
const base = 26000 + (process.pid % 3000) * 2;
const tmp = mkdtempSync(join(tmpdir(), 'canopy-up-ha-'));
// /var/lib is 0755 on a real machine; PostgreSQL (user postgres) walks through to its folder.
chmodSync(tmp, 0o755);
const dir = join(tmp, 'lib', 'canopy', 'up');
const env = { ...process.env, CANOPY_UP_DIR: dir, XDG_CACHE_HOME: join(tmp, 'cache') };

after(() => {
  const s = existsSync(dir) ? readState(dir) : null;
  if (s) down(s);
  rmSync(tmp, { recursive: true, force: true });
});

function canopy(args: string[], timeoutMs = 150_000): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [CANOPY, ...args], { env, encoding: 'utf8', timeout: timeoutMs });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

/** Processes whose command line names this test's state directory (PostgreSQL's -D included). */
function ours(): string[] {
  const found: string[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(dir)) found.push(`${p}: ${cmd.slice(0, 200)}`);
    } catch { /* gone */ }
  }
  return found;
}

test('canopy up --roots 2 --store postgres: two replicas over its own PostgreSQL; one dies, the CLI and the cluster go on; down removes all', { skip, timeout: 240_000 }, () => {
  const up = canopy(['up', '--workers', '1', '--no-demo', '--roots', '2', '--store', 'postgres', '--name', name, '--subnet', subnet,
    '--root-port', String(base), '--cluster-port', String(base + 2), '--mqtt-port', String(base + 3), '--worker-api-port', String(base + 4),
    '--dns-relay-port', String(base + 5), '--postgres-port', String(base + 6), '--dns-upstream', '127.0.0.1:9']);
  assert.equal(up.code, 0, up.out);
  assert.match(up.out, /postgres: Debian's PostgreSQL in \S+\/postgres, 127\.0\.0\.1:\d+/);
  assert.match(up.out, /root replica 2 of 2: https:\/\//);
  const s = readState(dir)!;
  assert.equal(s.rootUrl.split(',').length, 2);
  assert.ok(s.postgres && existsSync(join(s.postgres.dir, 'data', 'PG_VERSION')), 'PostgreSQL lives in the state directory');

  process.kill(s.root!.pid, 'SIGKILL');
  const killed = Date.now();
  const status = canopy(['status']);
  assert.equal(status.code, 0, status.out);
  assert.match(status.out, /1 active worker/);
  // The cluster moved on to replica 2: its reports arrive there after the kill.
  const second = s.rootUrl.split(',')[1]!;
  const tls = s.ca ? ['--cacert', s.ca] : [];
  const login = spawnSync('curl', ['-s', ...tls, '-H', 'content-type: application/json', '-d', JSON.stringify({ username: s.username, password: s.password }), `${second}/api/v1/auth/login`], { encoding: 'utf8' });
  assert.equal(login.status, 0, `login at ${second}: ${login.stderr}`);
  const token = (JSON.parse(login.stdout) as { token: string }).token;
  let seen = 0;
  for (let i = 0; i < 60 && seen <= killed; i++) {
    const r = spawnSync('curl', ['-s', ...tls, '-H', `authorization: Bearer ${token}`, `${second}/api/v1/clusters`], { encoding: 'utf8' });
    seen = Date.parse((JSON.parse(r.stdout) as { last_seen: string }[])[0]?.last_seen ?? '') || 0;
    if (seen <= killed) spawnSync('sleep', ['0.5']);
  }
  assert.ok(seen > killed, 'the cluster reports to the second replica after the first died');

  const stopped = canopy(['down']);
  assert.equal(stopped.code, 0, stopped.out);
  assert.equal(existsSync(dir), false, 'state directory removed, PostgreSQL with it');
  assert.deepEqual(ours(), [], 'no process left: roots, cluster, worker, PostgreSQL');
});
