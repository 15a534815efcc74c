// `canopy image import <file.tar> [--worker <name>…]`: puts the images of a docker-save or OCI archive
// on workers, for sites that cannot reach a registry. Like `canopy logs`, the CLI talks to each
// worker's local API (root and cluster do not carry image data): in a `canopy up` deployment it finds
// the workers and their API tokens in the state file; otherwise --worker-api and --token (the
// worker's `<data>/api-token`) name one worker.
import type { Command } from 'commander';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { openSession } from '../client/session.ts';
import { fail, StatusLine } from '../client/terminal.ts';
import { importImage } from '../client/worker-api.ts';

interface Target {
  name: string;
  api: string;
  token: string;
}

function targets(o: { worker: string[]; workerApi?: string; token?: string; root?: string }): Target[] {
  if (o.workerApi) {
    const token = o.token ?? process.env.CANOPY_WORKER_TOKEN;
    if (!token) throw new Error('--worker-api needs --token (the worker\'s <data>/api-token; env CANOPY_WORKER_TOKEN)');
    return [{ name: o.worker[0] ?? o.workerApi, api: o.workerApi.replace(/\/+$/, ''), token }];
  }
  const d = openSession({ root: o.root }).deployment;
  if (!d) throw new Error('no local deployment (`canopy up`): name the worker\'s API with --worker-api http://<host>:10200 and --token');
  const unknown = o.worker.filter((w) => !d.workers.some((x) => x.name === w));
  if (unknown.length) throw new Error(`not a worker of the local deployment: ${unknown.join(', ')} (workers: ${d.workers.map((w) => w.name).join(', ')})`);
  return d.workers.filter((w) => o.worker.length === 0 || o.worker.includes(w.name)).map((w) => {
    const f = join(w.dataDir, 'api-token');
    if (!existsSync(f)) throw new Error(`${w.name} has no API token at ${f} (is it running?)`);
    return { name: w.name, api: w.apiUrl, token: readFileSync(f, 'utf8').trim() };
  });
}

export function register(program: Command): void {
  const image = program.command('image').description('container images on workers');
  image
    .command('import')
    .description('import the images of a docker-save or OCI archive (.tar) into workers\' containerd (every worker of the local deployment, or those named)')
    .argument('<file>', 'image archive: `docker save` output or an OCI layout tar')
    .option('--worker <name>', 'only this worker (repeatable)', (v: string, all: string[]) => [...all, v], [])
    .option('--worker-api <url>', "a worker's local API, when it is not part of the local deployment")
    .option('--token <token>', "with --worker-api: the worker's API token (its <data>/api-token)")
    .option('--root <url>', 'root of the local deployment, if not the default one')
    .action(async (file: string, o: { worker: string[]; workerApi?: string; token?: string; root?: string }) => {
      let size: number;
      try {
        size = statSync(file).size;
      } catch (e) {
        fail('image import', new Error(`${file}: ${(e as Error).message}`));
      }
      let ts: Target[];
      try {
        ts = targets(o);
      } catch (e) {
        fail('image import', e);
      }
      const line = new StatusLine();
      const failures: string[] = [];
      for (const t of ts) {
        const started = Date.now();
        line.set(`${t.name}: uploading ${file}`);
        try {
          const images = await importImage(t.api, t.token, file, (n) => {
            line.set(`${t.name}: uploading ${file}: ${Math.round((n / Math.max(1, size)) * 100)} % of ${(size / 1048576).toFixed(1)} MB`);
            line.tick();
          });
          line.print(`${t.name}: imported ${images.join(', ')} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
        } catch (e) {
          line.print(`${t.name}: not imported: ${(e as Error).message}`);
          failures.push(`${t.name}: ${(e as Error).message}`);
        }
      }
      line.clear();
      if (failures.length) fail('image import', new Error(failures.length === 1 ? failures[0] : `${failures.length} of ${ts.length} workers did not import it:\n  ${failures.join('\n  ')}`));
    });
}
