// A worker's identity with its cluster: the first contact (the join key buys per-worker MQTT
// credentials and the keys), kept on disk so a restarted daemon is the same worker. Split out of
// node-engine.ts (#22), which runs instances and carries messages.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { controlRequest, type ControlAnswer } from '../protocol/tls.ts';
import { parseWorkerRegistration, type WorkerIdentity } from '../protocol/worker-registration.ts';

export class RegistrationError extends Error {}

/** Where a worker keeps its identity (credentials, subnet, keys) under its state directory. */
export function identityFile(stateDir: string): string {
  return join(stateDir, 'worker.json');
}

/** First contact: the join key buys per-worker credentials. */
export async function registerWithCluster(clusterUrl: string, joinKey: string, name: string): Promise<WorkerIdentity> {
  const url = new URL('api/workers/register', clusterUrl.endsWith('/') ? clusterUrl : `${clusterUrl}/`);
  let res: ControlAnswer;
  try {
    // Not fetch(): Node's built-in HTTP client and its WebAssembly parser cost a daemon 12-17 MB.
    res = await controlRequest(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${joinKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name }),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (e) {
    throw new RegistrationError(`cluster unreachable at ${clusterUrl}: ${(e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message}`);
  }
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(res.text) as Record<string, unknown>;
  } catch { /* not JSON: the status says what happened */ }
  if (!res.ok) throw new RegistrationError(`cluster refused registration (HTTP ${res.status}): ${String(body.error ?? '')}`);
  try {
    return parseWorkerRegistration(body);
  } catch (e) {
    throw new RegistrationError((e as Error).message);
  }
}

/**
 * The identity on disk, or a new one from the cluster (then saved). The cluster may still be starting
 * (e.g. `canopy up`): registration is retried while it is unreachable, up to `timeoutMs`.
 */
export async function loadOrRegister(o: { stateDir: string; clusterUrl: string; joinKey: string; name: string; timeoutMs: number }): Promise<WorkerIdentity> {
  const file = identityFile(o.stateDir);
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as WorkerIdentity;
  const until = Date.now() + o.timeoutMs;
  for (;;) {
    try {
      const identity = await registerWithCluster(o.clusterUrl, o.joinKey, o.name);
      saveIdentity(file, identity);
      return identity;
    } catch (e) {
      if (!(e instanceof RegistrationError) || !/unreachable/.test(e.message) || Date.now() > until) throw e;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/** Written whole or not at all (the file holds the worker's MQTT password). */
export function saveIdentity(file: string, id: WorkerIdentity): void {
  writeFileSync(`${file}.tmp`, JSON.stringify(id), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}
