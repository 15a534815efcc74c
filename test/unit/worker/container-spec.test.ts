// Docker's rules for references, entrypoint/cmd/env, mirrors and pull failures, as the container
// runtime applies them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { normalizeRef, parseMirror, pullFailure, writeHostsDir } from '../../../orchestrator/worker/container/images.ts';
import { processArgs, mergeEnv, chainId, parseUser } from '../../../orchestrator/worker/container/spec.ts';

test('references are normalised as Docker does', () => {
  assert.equal(normalizeRef('nginx'), 'docker.io/library/nginx:latest');
  assert.equal(normalizeRef('curlimages/curl:7.82.0'), 'docker.io/curlimages/curl:7.82.0');
  assert.equal(normalizeRef('docker.io/library/nginx:latest'), 'docker.io/library/nginx:latest');
  assert.equal(normalizeRef('127.0.0.1:5000/a/b'), '127.0.0.1:5000/a/b:latest');
  assert.equal(normalizeRef('localhost/x@sha256:abc'), 'localhost/x@sha256:abc');
  assert.throws(() => normalizeRef('Bad Ref'), /not an image reference/);
});

test('descriptor cmd replaces the entrypoint and drops the image cmd; args replace the cmd', () => {
  const image = { Entrypoint: ['httpd', '-f'], Cmd: ['-h', '/www'] };
  assert.deepEqual(processArgs(image, [], []), ['httpd', '-f', '-h', '/www']);
  assert.deepEqual(processArgs(image, [], ['-p', '81']), ['httpd', '-f', '-p', '81']);
  assert.deepEqual(processArgs(image, ['sh'], []), ['sh']);
  assert.deepEqual(processArgs(image, ['sh', '-c'], ['echo hi']), ['sh', '-c', 'echo hi']);
  assert.throws(() => processArgs({}, [], []), /no entrypoint or cmd/);
});

test('environment adds to and overrides the image env; PATH is always set', () => {
  assert.deepEqual(mergeEnv(['A=1', 'PATH=/bin'], ['A=2', 'B=3']), ['A=2', 'PATH=/bin', 'B=3']);
  assert.ok(mergeEnv([], []).some((e) => e.startsWith('PATH=')));
});

test('numeric users are honoured, names are refused with a reason', () => {
  assert.deepEqual(parseUser(''), { uid: 0, gid: 0 });
  assert.deepEqual(parseUser('1000:50'), { uid: 1000, gid: 50 });
  assert.deepEqual(parseUser('65534'), { uid: 65534, gid: 65534 });
  assert.throws(() => parseUser('nginx'), /name/);
});

test('chain IDs follow the OCI image spec', () => {
  const a = 'sha256:aaaa';
  assert.equal(chainId([a]), a);
  assert.match(chainId([a, 'sha256:bbbb']), /^sha256:[0-9a-f]{64}$/);
  assert.throws(() => chainId([]), /no layers/);
});

test('mirrors: host=url only, written as containerd hosts.toml with the mirror before the registry', () => {
  assert.deepEqual(parseMirror('docker.io=http://10.0.0.5:5000'), ['docker.io', 'http://10.0.0.5:5000']);
  assert.throws(() => parseMirror('docker.io'), /host>=<url/);
  assert.throws(() => parseMirror('docker.io=ftp://x'), /http/);
  const dir = mkdtempSync(join(tmpdir(), 'canopy-hosts-'));
  try {
    writeHostsDir(dir, [['docker.io', 'http://10.0.0.5:5000']], ['127.0.0.1:5000']);
    assert.match(readFileSync(join(dir, 'docker.io/hosts.toml'), 'utf8'), /server = "https:\/\/registry-1.docker.io"[\s\S]*\[host."http:\/\/10.0.0.5:5000"\]/);
    assert.match(readFileSync(join(dir, '127.0.0.1:5000/hosts.toml'), 'utf8'), /server = "http:\/\/127.0.0.1:5000"/);
    // Mirrors only: the first mirror is containerd's last resort, so nothing falls back to Docker Hub.
    writeHostsDir(dir, [['docker.io', 'http://10.0.0.5:5000'], ['docker.io', 'http://10.0.0.6:5000']], [], true);
    const only = readFileSync(join(dir, 'docker.io/hosts.toml'), 'utf8');
    assert.match(only, /^server = "http:\/\/10.0.0.5:5000"$/m);
    assert.match(only, /\[host."http:\/\/10.0.0.5:5000"\][\s\S]*\[host."http:\/\/10.0.0.6:5000"\]/);
    assert.doesNotMatch(only, /docker\.io"|registry-1/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pull failures keep the registry\'s words; not-found and refused credentials are permanent', () => {
  const nf = pullFailure('r/x:1', 'time="…" level=info msg="trying next host - response was http.StatusNotFound" host="10.0.0.5:5000"\nctr: failed to resolve reference "r/x:1": connection refused\n');
  assert.equal(nf.permanent, true);
  assert.match(nf.message, /not found at 10.0.0.5:5000/);
  const denied = pullFailure('r/x:1', 'ctr: failed to resolve reference "r/x:1": pulling from host r failed with status code [manifests 1]: 401 Unauthorized\n');
  assert.equal(denied.permanent, true);
  const down = pullFailure('r/x:1', 'ctr: failed to resolve reference "r/x:1": dial tcp 10.0.0.5:5000: connect: connection refused\n');
  assert.equal(down.permanent, false);
  assert.match(down.message, /connection refused/);
});
