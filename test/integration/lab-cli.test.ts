// `canopy lab up|status|down`: a person's lab outlives the command, shows its state, survives the
// sweeper, and goes away with `down`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { REPO_ROOT, destroyByPrefix, labSkipReason } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import { listNetnsSync } from '../../lab/iproute.ts';
import { registryPath } from '../../lab/registry.ts';
import type { LabRecord } from '../../lab/registry.ts';
import type { LabStatus } from '../../lab/status.ts';

const run = promisify(execFile);
const canopy = (...args: string[]): Promise<{ stdout: string; stderr: string }> =>
  run(process.execPath, ['bin/canopy.js', 'lab', ...args], { cwd: REPO_ROOT });

test('canopy lab up, status, sweep and down', { skip: unavailable(labSkipReason()), timeout: 60_000 }, async () => {
  const up = await canopy('up', '--hosts', '2', '--delay', 'w1:w2:10', '--loss', 'w2:1', '--json');
  const rec = JSON.parse(up.stdout) as LabRecord;
  try {
    assert.equal(rec.persistent, true);
    assert.deepEqual(rec.hosts.map((h) => h.name), ['w1', 'w2']);
    // The lab works after `up` has exited: 10 ms each way plus w2's own link.
    const { stdout } = await run('ip', ['netns', 'exec', rec.hosts[0]!.netns, 'ping', '-c', '3', '-i', '0.1', rec.hosts[1]!.ip]);
    assert.match(stdout, /3 received|2 received/);

    const status = JSON.parse((await canopy('status', '--json')).stdout) as LabStatus[];
    const mine = status.find((s) => s.prefix === rec.prefix);
    assert.ok(mine, 'status lists the lab');
    assert.equal(mine.state, 'up');
    assert.deepEqual(mine.links.map((l) => l.what).sort(), ['w1~w2', 'w2']);
    const w2 = mine.hosts.find((h) => h.name === 'w2')!;
    assert.equal(w2.relayAlive, true);
    assert.ok(w2.relay && w2.relay.ingress.forwarded > 0, 'relay counters are shown');
    const human = (await canopy('status')).stdout;
    assert.match(human, new RegExp(`${rec.prefix}-w1 +198\\.18\\.0\\.1`));
    assert.match(human, /w1–w2 +delay 10ms/);

    await run(process.execPath, ['--import', 'tsx', 'lab/sweep-cli.ts'], { cwd: REPO_ROOT });
    assert.ok(existsSync(registryPath(rec.prefix)), 'the sweeper leaves a persistent lab alone');

    await canopy('down', rec.prefix);
    assert.deepEqual(listNetnsSync().filter((n) => n.startsWith(rec.prefix)), []);
    assert.equal(existsSync(registryPath(rec.prefix)), false);
    await assert.rejects(() => canopy('down', rec.prefix), /no lab/);
  } finally {
    destroyByPrefix(rec.prefix);
  }
});

test('canopy lab up refuses bad options with a clear message', { skip: unavailable(labSkipReason()) }, async () => {
  await assert.rejects(() => canopy('up', '--delay', 'w1'), /--delay w1: want/);
  await assert.rejects(() => canopy('up', '--hosts', '2', '--loss', 'w9:5'), /no host named "w9"/);
});
