// The worker's local API (orchestrator/worker/api.ts): instance logs and status. Root and cluster do
// not relay logs, so the CLI asks the worker directly; in a `canopy up` deployment the state file says
// where each worker's API listens.
import type { DeploymentState } from './deployment-state.ts';

export interface WorkerInstanceStatus {
  service_id: string;
  instance_n: number;
  state: string;
  reason: string;
  pid: number | null;
  ns_ip: string | null;
}

export function workerApiUrl(workerId: string, deployment: DeploymentState | null, given?: string): string {
  if (given) return given.replace(/\/+$/, '');
  const w = deployment?.workers.find((x) => x.name === workerId);
  if (!w) {
    throw new Error(`worker ${workerId} is not part of the local deployment; pass its local API with --worker-api http://<host>:10200 (root and cluster do not relay logs)`);
  }
  return w.apiUrl;
}

async function get(url: string, retried = false): Promise<Response> {
  try {
    return await fetch(url, { signal: AbortSignal.timeout(5000) });
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause;
    // A kept-alive connection the worker closed just as it was reused: a GET is safe to send again.
    if (!retried && cause?.code === 'UND_ERR_SOCKET') return get(url, true);
    throw new Error(`worker API ${url} is unreachable (${cause?.code ?? (e as Error).message})`);
  }
}

export async function instanceLogs(api: string, serviceId: string, n: number, stream: 'stdout' | 'stderr', bytes = 65536): Promise<string> {
  const res = await get(`${api}/api/instances/${encodeURIComponent(serviceId)}/${n}/logs?stream=${stream}&bytes=${bytes}`);
  const text = await res.text();
  if (!res.ok) {
    let msg = text;
    try {
      msg = (JSON.parse(text) as { error?: string }).error ?? text;
    } catch { /* plain text */ }
    throw new Error(`worker API: HTTP ${res.status}: ${msg}`);
  }
  return text;
}

export async function workerInstances(api: string): Promise<WorkerInstanceStatus[]> {
  const res = await get(`${api}/api/status`);
  if (!res.ok) throw new Error(`worker API ${api}/api/status: HTTP ${res.status}`);
  return ((await res.json()) as { instances: WorkerInstanceStatus[] }).instances;
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
      const inst = await workerInstances(w.apiUrl).catch(() => []);
      left.push(...inst.filter(mine).map((i) => `${w.name}: ${i.service_id}#${i.instance_n} ${i.state}`));
    }
    if (left.length === 0) return;
    if (Date.now() > until) throw new Error(`still on workers after ${timeoutS} s: ${left.join('; ')}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Uploads an image archive to a worker's API for import (streamed from the file); the names of the
 * images it now has. `sent` is told the bytes uploaded so far.
 */
export async function importImage(api: string, token: string, file: string, sent: (bytes: number) => void = () => {}): Promise<string[]> {
  const { createReadStream } = await import('node:fs');
  const { Readable } = await import('node:stream');
  let bytes = 0;
  const stream = createReadStream(file);
  stream.on('data', (chunk) => {
    bytes += chunk.length;
    sent(bytes);
  });
  let res: Response;
  try {
    res = await fetch(`${api}/api/images/import`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-tar' },
      body: Readable.toWeb(stream) as ReadableStream<Uint8Array>,
      duplex: 'half',
    } as RequestInit);
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause;
    throw new Error(`worker API ${api} is unreachable (${cause?.code ?? (e as Error).message})`);
  }
  const text = await res.text();
  let body: { images?: string[]; error?: string } = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch { /* not JSON: the text is the message */ }
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${body.error ?? text}`);
  return body.images ?? [];
}
