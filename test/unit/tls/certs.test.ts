// The certificates Canopy makes: SANs as asked, signed by the CA, a handshake that a client pinning
// the CA completes and one pinning another CA refuses; the fleet folder is idempotent and never
// replaces a CA without force.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { certFacts, createCa, issueCert, signedBy } from '../../../orchestrator/tls/certs.ts';
import { ensureFleetCerts, parseCertSpec } from '../../../orchestrator/tls/fleet.ts';

const ca = createCa();

test('a leaf names its DNS names and addresses and is signed by the CA', () => {
  const leaf = issueCert(ca, { name: 'root', sans: ['root.example.org', '198.19.250.1', '::1'] });
  const f = certFacts(leaf.cert);
  assert.deepEqual(f.sans, ['root.example.org', '198.19.250.1', '0:0:0:0:0:0:0:1']);
  assert.equal(f.isCa, false);
  assert.equal(certFacts(ca.cert).isCa, true);
  assert.ok(signedBy(leaf.cert, ca.cert));
  assert.ok(!signedBy(leaf.cert, createCa().cert));
  assert.throws(() => issueCert(ca, { name: 'x', sans: ['not a name'] }), /not a DNS name or an IP address/);
  assert.throws(() => issueCert(ca, { name: 'x', sans: [] }), /at least one/);
});

async function handshake(serverPem: { cert: string; key: string }, clientCa: string, host: string): Promise<string> {
  const server = createServer({ cert: serverPem.cert, key: serverPem.key }, (s) => s.end('hi'));
  server.on('tlsClientError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  try {
    return await new Promise<string>((resolve, reject) => {
      const s: TLSSocket = connect({ host: '127.0.0.1', port, ca: clientCa, servername: host === '127.0.0.1' ? undefined : host }, () => {});
      let got = '';
      s.on('data', (d) => (got += String(d)));
      s.on('end', () => resolve(got));
      s.on('error', reject);
    });
  } finally {
    server.close();
  }
}

test('a client pinning the CA completes the handshake; one pinning another CA, or asking for another name, fails', async () => {
  const leaf = issueCert(ca, { name: 'cluster', sans: ['127.0.0.1', 'cluster.local'] });
  assert.equal(await handshake(leaf, ca.cert, '127.0.0.1'), 'hi');
  assert.equal(await handshake(leaf, ca.cert, 'cluster.local'), 'hi');
  await assert.rejects(handshake(leaf, createCa().cert, '127.0.0.1'), /self.signed|unable to verify|certificate/i);
  await assert.rejects(handshake(leaf, ca.cert, 'other.local'), /altnames|does not match/i);
});

test('fleet folder: made once, kept on a re-run, a leaf re-issued when a SAN is added, a CA replaced only with force', () => {
  const dir = mkdtempSync(join(tmpdir(), 'canopy-certs-'));
  try {
    const r1 = ensureFleetCerts(dir, [parseCertSpec('root=198.19.250.1'), parseCertSpec('cluster-a=198.19.250.1,cluster.local')]);
    assert.deepEqual(r1.made, ['ca', 'root', 'cluster-a']);
    assert.equal(statSync(join(dir, 'ca-key.pem')).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, 'root-key.pem')).mode & 0o777, 0o600);
    const caBefore = readFileSync(join(dir, 'ca.pem'), 'utf8');
    const r2 = ensureFleetCerts(dir, [parseCertSpec('root=198.19.250.1'), parseCertSpec('cluster-a=198.19.250.1,cluster.local')]);
    assert.deepEqual(r2.made, []);
    assert.deepEqual(r2.kept, ['ca', 'root', 'cluster-a']);
    const r3 = ensureFleetCerts(dir, [parseCertSpec('root=198.19.250.1,root.example.org')]);
    assert.deepEqual(r3.made, ['root']);
    assert.equal(readFileSync(join(dir, 'ca.pem'), 'utf8'), caBefore);
    assert.throws(() => ensureFleetCerts(dir, [], { newCa: true }), /only with --force/);
    assert.equal(readFileSync(join(dir, 'ca.pem'), 'utf8'), caBefore);
    writeFileSync(join(dir, 'ca.pem'), 'garbage');
    assert.throws(() => ensureFleetCerts(dir, [parseCertSpec('root=198.19.250.1')]), /not a PEM certificate.*--force/);
    const r4 = ensureFleetCerts(dir, [parseCertSpec('root=198.19.250.1')], { force: true });
    assert.deepEqual(r4.made, ['ca', 'root']);
    assert.ok(signedBy(readFileSync(join(dir, 'root.pem'), 'utf8'), readFileSync(join(dir, 'ca.pem'), 'utf8')));
    // Bad input: nothing written.
    assert.throws(() => ensureFleetCerts(dir, [parseCertSpec('w1=bad name')]), /not a DNS name/);
    assert.throws(() => parseCertSpec('nosans'), /expected <name>=/);
    assert.throws(() => ensureFleetCerts(dir, [{ name: '../x', sans: ['a'] }]), /certificate name/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
