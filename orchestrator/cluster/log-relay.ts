// The cluster's half of reading logs through the tiers (protocol/instance-logs.ts): root asks for an
// instance's logs, the relay asks the instance's worker on nodes/<w>/control/logs and waits for the
// answer on nodes/<w>/logs. An answer is taken only from the worker that was asked.
import { randomBytes } from 'node:crypto';
import { topics } from '../mqtt/topics.ts';
import { parseLogAnswer, type LogStream } from '../protocol/instance-logs.ts';
import { instanceId } from './placements.ts';
import type { InstanceIndex } from './instance-index.ts';

/** How long a worker has to answer: it reads a file it has open, so this is only a dead worker's bound. */
export const LOG_ANSWER_TIMEOUT_MS = 5000;

export class LogRelayError extends Error {
  constructor(message: string, readonly statusCode: number) {
    super(message);
  }
}

interface Pending {
  worker: string;
  resolve(text: string): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

export class LogRelay {
  private readonly pending = new Map<string, Pending>();

  constructor(
    private readonly index: InstanceIndex,
    private readonly publish: (topic: string, payload: string) => void,
    private readonly alive: (worker: string) => boolean,
  ) {}

  /** The newest `bytes` of one stream of an instance this cluster runs. */
  read(serviceId: string, n: number, stream: LogStream, bytes: number): Promise<string> {
    const ci = this.index.get(instanceId(serviceId, n));
    if (!ci) return Promise.reject(new LogRelayError(`no instance ${serviceId}#${n} in this cluster`, 404));
    const worker = ci.worker;
    if (!worker) return Promise.reject(new LogRelayError(`instance ${serviceId}#${n} is on no worker (${ci.lifecycle.state})`, 409));
    if (!this.alive(worker)) return Promise.reject(new LogRelayError(`worker ${worker} of ${serviceId}#${n} is not connected`, 503));
    const id = randomBytes(12).toString('base64url');
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new LogRelayError(`worker ${worker} did not answer for ${serviceId}#${n}'s logs within ${LOG_ANSWER_TIMEOUT_MS} ms`, 504));
      }, LOG_ANSWER_TIMEOUT_MS);
      this.pending.set(id, { worker, resolve, reject, timer });
      this.publish(topics.logsRequest(worker), JSON.stringify({ id, service_id: serviceId, instance_n: n, stream, bytes }));
    });
  }

  /** A worker's answer on nodes/<worker>/logs; returns an error sentence for one that is dropped. */
  onAnswer(worker: string, payload: Buffer): string | undefined {
    let a;
    try {
      a = parseLogAnswer(JSON.parse(payload.toString('utf8')));
    } catch (e) {
      return (e as Error).message;
    }
    const p = this.pending.get(a.id);
    if (!p || p.worker !== worker) return `an answer nobody asked ${worker} for`;
    this.pending.delete(a.id);
    clearTimeout(p.timer);
    if (a.ok) p.resolve(a.text);
    else p.reject(new LogRelayError(a.error, a.status === 404 ? 404 : 502));
    return undefined;
  }

  close(): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new LogRelayError('the cluster is stopping', 503));
      this.pending.delete(id);
    }
  }
}
