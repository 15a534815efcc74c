// The worker's local API (orchestrator/worker/api.ts), for the operator of a local deployment: which
// instances each worker still runs (undeploy and scale --wait). It answers only with the worker's API
// token, read from the worker's state directory (users read logs through root instead).
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import type { DeploymentState, WorkerRecord } from './deployment-state.ts';
import { controlFetch, pinnedCa } from '../protocol/tls.ts';

export interface WorkerInstanceStatus {
  service_id: string;
  instance_n: number;
  state: string;
  reason: string;
  pid: number | null;
  ns_ip: string | null;
}

async function get(url: string, token: string, retried = false): Promise<Response> {
  try {
    return await controlFetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5000) });
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause;
    // A kept-alive connection the worker closed just as it was reused: a GET is safe to send again.
    if (!retried && (cause?.code === 'UND_ERR_SOCKET' || cause?.code === 'ECONNRESET')) return get(url, token, true);
    throw new Error(`worker API ${url} is unreachable (${cause?.code ?? (e as Error).message})`);
  }
}

/** The API token a local worker keeps in its state directory (worker/api.ts, file api-token). */
function tokenOf(w: WorkerRecord): string {
  return readFileSync(join(w.dataDir, 'api-token'), 'utf8').trim();
}

/** A local worker's GET /api/status, whole (its instances with their histories, counters). */
export async function workerStatus<T = { instances: WorkerInstanceStatus[] }>(w: WorkerRecord): Promise<T> {
  const res = await get(`${w.apiUrl}/api/status`, tokenOf(w));
  if (!res.ok) throw new Error(`worker API ${w.apiUrl}/api/status: HTTP ${res.status}`);
  return (await res.json()) as T;
}

export async function workerInstances(w: WorkerRecord): Promise<WorkerInstanceStatus[]> {
  return (await workerStatus(w)).instances;
}

/**
 * Waits until no worker of the local deployment has an instance that `mine` picks (undeploy and scale
 * --wait); throws naming those left after `timeoutS`. A worker whose API does not answer counts as empty.
 */
export async function waitOffWorkers(deployment: DeploymentState, mine: (i: WorkerInstanceStatus) => boolean, timeoutS: number): Promise<void> {
  const until = Date.now() + timeoutS * 1000;
  for (;;) {
    const left: string[] = [];
    for (const w of deployment.workers) {
      const inst = await workerInstances(w).catch(() => []);
      left.push(...inst.filter(mine).map((i) => `${w.name}: ${i.service_id}#${i.instance_n} ${i.state}`));
    }
    if (left.length === 0) return;
    if (Date.now() > until) throw new Error(`still on workers after ${timeoutS} s: ${left.join('; ')}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Uploads an image archive to a worker's API for import, streamed from the file (over TLS with the
 * pinned CA when the API is https); the names of the images it now has. `sent` is told the bytes
 * uploaded so far.
 */
export async function importImage(api: string, token: string, file: string, sent: (bytes: number) => void = () => {}): Promise<string[]> {
  const url = new URL(`${api}/api/images/import`);
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/x-tar', 'content-length': String(statSync(file).size) };
  const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const onAnswer = (res: IncomingMessage): void => {
      let t = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (t += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: t }));
      res.on('error', reject);
    };
    const ca = pinnedCa();
    const req = url.protocol === 'https:'
      ? httpsRequest(url, { method: 'POST', headers, ...(ca ? { ca } : {}) }, onAnswer)
      : httpRequest(url, { method: 'POST', headers }, onAnswer);
    req.on('error', (e: NodeJS.ErrnoException) => reject(new Error(`worker API ${api} is unreachable (${e.code ?? e.message})`)));
    let bytes = 0;
    const stream = createReadStream(file);
    stream.on('data', (chunk) => {
      bytes += chunk.length;
      sent(bytes);
    });
    stream.on('error', (e) => req.destroy(e));
    stream.pipe(req);
  });
  let body: { images?: string[]; error?: string } = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch { /* not JSON: the text is the message */ }
  if (status < 200 || status >= 300) throw new Error(`HTTP ${status}: ${body.error ?? text}`);
  return body.images ?? [];
}
