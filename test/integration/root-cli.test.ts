// `canopy root` as an operator runs it: one ready line, a generated admin password shown once (or
// the one from CANOPY_ADMIN_PASSWORD), a clean stop on SIGTERM, and the same data after a restart.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CANOPY = join(import.meta.dirname, '../../bin/canopy.js');
const dir = mkdtempSync(join(tmpdir(), 'canopy-root-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  url: string;
  stderr: () => string;
  stop: () => Promise<number | null>;
}

async function start(env: Record<string, string> = {}): Promise<Run> {
  const child = spawn(process.execPath, [CANOPY, 'root', '--port', '0', '--host', '127.0.0.1', '--data', dir], {
    env: { ...process.env, CANOPY_ADMIN_PASSWORD: '', CANOPY_CLUSTER_KEY: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line: ${err}`)), 20_000);
    const check = () => {
      const line = err.split('\n').find((l) => l.includes('"root ready"'));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line).url);
      }
    };
    child.stderr.on('data', check);
    void exited.then(() => reject(new Error(`exited early: ${err}`)));
  });
  return {
    url,
    stderr: () => err,
    stop: async () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

async function login(url: string, password: string): Promise<number> {
  const r = await fetch(`${url}/api/v1/auth/login`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password }),
  });
  return r.status;
}

test('first start generates and shows the admin password once; SIGTERM stops cleanly; the restart keeps it', async () => {
  const first = await start();
  const shown = /created user admin with password (\S+)/.exec(first.stderr());
  assert.ok(shown, first.stderr());
  assert.match(first.stderr(), /cluster join key \S+/);
  assert.equal(first.stderr().split('\n').filter((l) => l.includes('"root ready"')).length, 1);
  assert.equal(await login(first.url, shown[1] as string), 200);
  assert.equal(await first.stop(), 0);
  assert.match(first.stderr(), /"root stopped"/);

  const second = await start({ CANOPY_ADMIN_PASSWORD: 'not-the-one' });
  assert.doesNotMatch(second.stderr(), /created user admin/);
  assert.doesNotMatch(second.stderr(), /cluster join key/);
  assert.equal(await login(second.url, shown[1] as string), 200);
  assert.equal(await login(second.url, 'not-the-one'), 401);
  assert.equal(await second.stop(), 0);
});

test('CANOPY_ADMIN_PASSWORD sets the password on a fresh data directory', async () => {
  rmSync(dir, { recursive: true, force: true });
  const run = await start({ CANOPY_ADMIN_PASSWORD: 'operator-chosen' });
  assert.doesNotMatch(run.stderr(), /created user admin with password/);
  assert.equal(await login(run.url, 'operator-chosen'), 200);
  assert.equal(await run.stop(), 0);
});
