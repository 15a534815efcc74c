// A throwaway PostgreSQL for the store and HA tests: its own folder under the temp dir, its own
// loopback port, run as the unprivileged `postgres` user; stop() removes all of it, pass or fail.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../harness/loopback.ts';
import { pgBinDir, startLocalPostgres, stopLocalPostgres } from '../../orchestrator/root/pg-server.ts';

export interface TestPostgres {
  url: string;
  port: number;
  dir: string;
  /** Stops the server (fast, or immediate: as if it crashed) and keeps its files, for a restart. */
  pause(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Starts it again on the same port with the same data. */
  resume(): Promise<void>;
  stop(): Promise<void>;
}

/** Why no PostgreSQL server can be started here, or null. */
export function postgresMissing(): string | null {
  return pgBinDir() ? null : 'PostgreSQL server not installed (apt-get install -y postgresql)';
}

export async function startPostgres(): Promise<TestPostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'canopy-pg-'));
  // The server runs as `postgres`: it must be able to walk into its folder.
  chmodSync(dir, 0o755);
  const port = await freePort();
  try {
    const pg = await startLocalPostgres(join(dir, 'pg'), port);
    return {
      url: pg.url, port, dir,
      pause: (mode = 'fast') => stopLocalPostgres(pg.dir, mode),
      resume: async () => {
        await startLocalPostgres(pg.dir, port);
      },
      stop: async () => {
        await stopLocalPostgres(pg.dir, 'immediate').catch(() => undefined);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stopLocalPostgres(join(dir, 'pg'), 'immediate').catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
