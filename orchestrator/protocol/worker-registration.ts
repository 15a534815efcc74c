// The cluster's answer to a worker's registration (POST /api/workers/register, docs/protocols.md):
// declared once for the cluster that sends it and the worker that reads (and keeps) it.
import { validTunnelKey, type TunnelKey } from './tunnel-identity.ts';

export interface WorkerRegistrationAnswer {
  worker_id: string;
  mqtt: { url: string; username: string; password: string };
  subnet_v4: string | null;
  subnet_v6: string | null;
  heartbeat_ms: number;
  /** The cluster's tunnel key: only workers holding it can send on the overlay (SPEC §5.4). */
  tunnel: TunnelKey;
  /** Root's overlay key, shared by all clusters' workers (absent until root has answered once). */
  overlay_tunnel?: TunnelKey;
}

/**
 * What a worker keeps of the answer (its worker.json): the tunnel key may be absent (a cluster that
 * had none), and the heartbeat period is not kept.
 */
export type WorkerIdentity = Omit<WorkerRegistrationAnswer, 'heartbeat_ms' | 'tunnel'> & { tunnel?: TunnelKey };

export class RegistrationAnswerError extends Error {}

/**
 * A registration answer as the worker reads it: worker_id and the MQTT credentials are required,
 * the rest is taken when well-formed and left out otherwise.
 */
export function parseWorkerRegistration(body: unknown): WorkerIdentity {
  const b = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const m = b.mqtt as Record<string, unknown> | undefined;
  if (typeof b.worker_id !== 'string' || !m || typeof m.url !== 'string' || typeof m.username !== 'string' || typeof m.password !== 'string') {
    throw new RegistrationAnswerError('cluster answered registration without worker_id or mqtt credentials');
  }
  return {
    worker_id: b.worker_id,
    mqtt: { url: m.url, username: m.username, password: m.password },
    subnet_v4: typeof b.subnet_v4 === 'string' ? b.subnet_v4 : null,
    subnet_v6: typeof b.subnet_v6 === 'string' ? b.subnet_v6 : null,
    ...(validTunnelKey(b.tunnel) ? { tunnel: b.tunnel } : {}),
    ...(validTunnelKey(b.overlay_tunnel) ? { overlay_tunnel: b.overlay_tunnel } : {}),
  };
}
