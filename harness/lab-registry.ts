// A registry inside the lab: images are pushed to a `docker-registry` on loopback (the test's own
// process can reach it), then the same storage is served from lab host `ctl` at <ctl ip>:5000, where
// the workers' --registry-mirror points. Removed (process and storage) by stop().
import type { Host } from '../lab/lab.ts';
import { registryConfig, startRegistry } from './oci-registry.ts';
import { poll } from './e2e-harness.ts';

export interface LabRegistry {
  /** host:port inside the lab */
  host: string;
  stop(): Promise<void>;
}

export async function labRegistry(ctl: Host, push: (url: string) => Promise<void>): Promise<LabRegistry> {
  const reg = await startRegistry();
  try {
    await push(reg.url);
    await reg.kill();
    const host = `${ctl.ip}:5000`;
    const p = ctl.spawn(['docker-registry', 'serve', registryConfig(reg.dir, host)]);
    await poll('registry inside ctl', async () => (await ctl.exec(['curl', '-sf', '-m', '2', `http://${host}/v2/`])).code === 0, 20_000);
    return {
      host,
      async stop() {
        if (p.exitCode === null && p.signalCode === null) {
          p.kill('SIGKILL');
          await new Promise((r) => p.once('exit', r));
        }
        await reg.stop();
      },
    };
  } catch (e) {
    await reg.stop();
    throw e;
  }
}
