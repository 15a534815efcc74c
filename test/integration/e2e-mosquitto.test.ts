// The e2e scenario again with the cluster on an external Mosquitto (Debian's) instead of its embedded
// broker: the operator's broker reads the password and ACL files the cluster keeps, and serves mqtts
// with a certificate from the deployment's CA (the cluster and the workers pin it).
import { test } from 'node:test';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { labSkipReason } from '../../lab/lab.ts';
import { binaryMissing, unavailable } from '../support/facility.ts';
import { CredentialStore } from '../../orchestrator/mqtt/credentials.ts';
import { keepMosquittoFiles, mosquittoConf } from '../../orchestrator/mqtt/mosquitto.ts';
import { e2eScenario } from './e2e-scenario.ts';
import { issueCert } from '../../orchestrator/tls/certs.ts';

test('e2e with Mosquitto as the external broker', { skip: unavailable(labSkipReason() ?? binaryMissing('mosquitto', ['-h'])), timeout: 180_000 }, async (t) => {
  await e2eScenario(t, {
    beforeCluster: async (ctl, dir) => {
      // The broker's certificate, readable by the mosquitto user it drops to (a test's files only).
      const tls = join(dir, 'tls');
      const ca = { cert: readFileSync(join(tls, 'ca.pem'), 'utf8'), key: readFileSync(join(tls, 'ca-key.pem'), 'utf8') };
      const leaf = issueCert(ca, { name: 'mosquitto', sans: ['127.0.0.1', ctl.ip] });
      const certFile = join(dir, 'mosquitto.pem');
      const keyFile = join(dir, 'mosquitto-key.pem');
      writeFileSync(certFile, leaf.cert, { mode: 0o644 });
      writeFileSync(keyFile, leaf.key, { mode: 0o644 });
      chmodSync(tls, 0o755);
      chmodSync(dir, 0o755); // mosquitto drops to its own user before reading the files
      const files = keepMosquittoFiles(new CredentialStore(), join(dir, 'cluster', 'mosquitto'));
      chmodSync(join(dir, 'cluster'), 0o755);
      const conf = join(dir, 'mosquitto.conf');
      writeFileSync(conf, mosquittoConf(files, '0.0.0.0', 10003, { certFile, keyFile }));
      const p = ctl.spawn(['mosquitto', '-c', conf]);
      const pidFile = join(dir, 'mosquitto.pid');
      writeFileSync(pidFile, String(p.pid));
      await ctl.waitListening(10003, { timeoutMs: 10_000 });
      return ['--mqtt-url', 'mqtts://127.0.0.1:10003', '--mqtt-public-url', `mqtts://${ctl.ip}:10003`, '--mosquitto-pid-file', pidFile];
    },
  });
});
