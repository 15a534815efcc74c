// The e2e scenario again with the cluster on an external Mosquitto (Debian's) instead of its embedded
// broker: the operator's broker reads the password and ACL files the cluster keeps.
import { test } from 'node:test';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { labSkipReason } from '../../lab/lab.ts';
import { binaryMissing, unavailable } from '../support/facility.ts';
import { CredentialStore } from '../../orchestrator/mqtt/credentials.ts';
import { keepMosquittoFiles, mosquittoConf } from '../../orchestrator/mqtt/mosquitto.ts';
import { e2eScenario } from './e2e-scenario.ts';

test('e2e with Mosquitto as the external broker', { skip: unavailable(labSkipReason() ?? binaryMissing('mosquitto', ['-h'])), timeout: 180_000 }, async (t) => {
  await e2eScenario(t, {
    beforeCluster: async (ctl, dir) => {
      chmodSync(dir, 0o755); // mosquitto drops to its own user before reading the files
      const files = keepMosquittoFiles(new CredentialStore(), join(dir, 'cluster', 'mosquitto'));
      chmodSync(join(dir, 'cluster'), 0o755);
      const conf = join(dir, 'mosquitto.conf');
      writeFileSync(conf, mosquittoConf(files, '0.0.0.0', 10003));
      const p = ctl.spawn(['mosquitto', '-c', conf]);
      const pidFile = join(dir, 'mosquitto.pid');
      writeFileSync(pidFile, String(p.pid));
      await ctl.waitListening(10003, { timeoutMs: 10_000 });
      return ['--mqtt-url', 'mqtt://127.0.0.1:10003', '--mqtt-public-url', `mqtt://${ctl.ip}:10003`, '--mosquitto-pid-file', pidFile];
    },
  });
});
