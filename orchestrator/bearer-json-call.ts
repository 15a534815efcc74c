// One JSON call over HTTP with a bearer token and a timeout: how root and a cluster call each other
// (docs/protocols.md, root ↔ cluster). The other side is another process, so every failure (no
// answer, an HTTP error, a body that is not JSON) becomes one sentence for a status or a log, thrown
// as the caller's own error class. https:// peers are verified against the pinned CA (protocol/tls.ts).
//
// node:http(s) with keep-alive agents rather than fetch(): this is root's hot path (one call per
// placement), and fetch's WHATWG streams, Headers and Response objects cost several times the CPU of
// a plain request whose whole answer is read as one string (perf/RESULTS.md, root-ha).
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { pinnedAgent } from './protocol/tls.ts';

export interface BearerJsonCall {
  /** The peer's API URL; `path` is resolved against it. */
  base: string;
  method: string;
  path: string;
  bearer: string;
  /** Sent as JSON when given. */
  body?: unknown;
  timeoutMs: number;
}

// Connections stay open between calls: a cluster is called again and again (placements, pushes).
const httpAgent = new HttpAgent({ keepAlive: true, keepAliveMsecs: 1000 });
const httpsAgent = new HttpsAgent({ keepAlive: true, keepAliveMsecs: 1000 });

/** The answer's status and whole body as text; rejects with the socket's error (or a timeout). */
function send(url: URL, method: string, headers: Record<string, string>, body: string | undefined, timeoutMs: number): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const https = url.protocol === 'https:';
    const options = { method, headers, agent: https ? (pinnedAgent() ?? httpsAgent) : httpAgent };
    const req = (https ? httpsRequest : httpRequest)(url, options, (res: IncomingMessage) => {
      res.setEncoding('utf8');
      let text = '';
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 502, text });
      });
      res.on('error', reject);
      // Cut off mid-answer (the peer closed, or the timeout destroyed the request): no 'end' comes.
      res.on('close', () => {
        clearTimeout(timer);
        if (!res.complete) reject(Object.assign(new Error('the answer was cut off'), { code: 'ECONNRESET' }));
      });
    });
    // The whole call, not just a quiet socket, is bounded (as fetch with AbortSignal.timeout was).
    const timer = setTimeout(() => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })), timeoutMs);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end(body);
  });
}

/** The parsed answer ({} for an empty body); `fail(sentence, httpStatus?)` makes what is thrown. */
export async function bearerJsonCall(c: BearerJsonCall, fail: (message: string, status?: number) => Error): Promise<unknown> {
  const url = new URL(c.path, c.base.endsWith('/') ? c.base : `${c.base}/`);
  const payload = c.body === undefined ? undefined : JSON.stringify(c.body);
  const headers: Record<string, string> = { authorization: `Bearer ${c.bearer}` };
  if (payload !== undefined) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = String(Buffer.byteLength(payload));
  }
  let res: { status: number; text: string };
  try {
    res = await send(url, c.method, headers, payload, c.timeoutMs);
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    throw fail(`unreachable at ${c.base}: ${typeof code === 'string' ? code : (e as Error).message}`);
  }
  const text = res.text;
  if (res.status < 200 || res.status > 299) throw fail(`answered HTTP ${res.status} to ${c.method} ${url.pathname}: ${text.slice(0, 200)}`, res.status);
  try {
    return text === '' ? {} : JSON.parse(text);
  } catch {
    throw fail(`answered ${c.method} ${url.pathname} with something that is not JSON`);
  }
}
