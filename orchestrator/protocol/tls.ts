// TLS on the control links (SPEC §10), what every tier shares: the server's certificate and key read
// from --tls-cert/--tls-key, and the CA clients pin (--ca, CANOPY_CA). A process belongs to one
// deployment and trusts one CA, so the pin is set once at start (pinCa) and every control client of
// the process (root ↔ cluster calls, worker registration, MQTT, the CLI) uses it through controlFetch
// and mqttTls, instead of the CA being threaded through each constructor.
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';

/** PEM text of a server's certificate (chain) and private key. */
export interface ServerTls {
  cert: string;
  key: string;
}

function readPem(path: string, flag: string, what: RegExp): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`${flag} ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  if (!what.test(text)) throw new Error(`${flag} ${path}: not a PEM file of the right kind (expected ${what.source.replace(/\\/g, '')})`);
  return text;
}

/** --tls-cert and --tls-key together (or neither: undefined); a missing or wrong file is one clear error. */
export function readServerTls(certFile: string | undefined, keyFile: string | undefined): ServerTls | undefined {
  if (!certFile && !keyFile) return undefined;
  if (!certFile || !keyFile) throw new Error('--tls-cert and --tls-key go together');
  return { cert: readPem(certFile, '--tls-cert', /-----BEGIN CERTIFICATE-----/), key: readPem(keyFile, '--tls-key', /-----BEGIN (RSA |EC )?PRIVATE KEY-----/) };
}

/** The CA file of --ca (else the CANOPY_CA variable), or undefined when neither is given. */
export function readCa(file: string | undefined, env: string | undefined = process.env.CANOPY_CA): string | undefined {
  const f = file || env || undefined;
  return f ? readPem(f, file ? '--ca' : 'CANOPY_CA', /-----BEGIN CERTIFICATE-----/) : undefined;
}

let pinned: { ca: string; agent: Agent } | undefined;

/** Trust only `ca` on this process's https and mqtts connections from now on (undefined: system CAs). */
export function pinCa(ca: string | undefined): void {
  pinned?.agent.destroy();
  pinned = ca ? { ca, agent: new Agent({ ca, keepAlive: true, keepAliveMsecs: 1000 }) } : undefined;
}

export function pinnedCa(): string | undefined {
  return pinned?.ca;
}

/** What a control call got back: the status and the whole body as text. */
export interface ControlAnswer {
  status: number;
  ok: boolean;
  text: string;
}

export interface ControlRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
}

// Connections stay open between calls: root calls a cluster again and again (one offer per
// placement, route and peer pushes), and a new connection per call cost root most of its CPU per
// placement (perf/RESULTS.md, root-ha).
const plainAgent = new HttpAgent({ keepAlive: true, keepAliveMsecs: 1000 });
const systemCaAgent = new Agent({ keepAlive: true, keepAliveMsecs: 1000 });

/**
 * One request between the tiers (a worker registering, root and a cluster calling each other), on
 * node:http(s) with the pinned CA for https. The daemons use this rather than fetch(): Node's fetch
 * loads undici and compiles its WebAssembly HTTP parser, 12–17 MB of a daemon's memory (issue 16).
 * Errors look like fetch's (TypeError with the socket error as `cause`), as controlFetch's do.
 */
export function controlRequest(input: string | URL, init: ControlRequest = {}): Promise<ControlAnswer> {
  const url = new URL(String(input));
  const https = url.protocol === 'https:';
  if (!https && url.protocol !== 'http:') return Promise.reject(new TypeError(`controlRequest: not an http(s) URL: ${url.href}`));
  return new Promise<ControlAnswer>((resolve, reject) => {
    const failed = (err: Error): void => reject(new TypeError('fetch failed', { cause: err }));
    const onAnswer = (res: IncomingMessage): void => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        const status = res.statusCode ?? 502;
        resolve({ status, ok: status >= 200 && status < 300, text });
      });
      res.on('error', failed);
      res.on('aborted', () => failed(new Error('the answer was cut off')));
    };
    const headers = { ...init.headers };
    // A known length spares the peer a chunked body.
    if (init.body !== undefined) headers['content-length'] = String(Buffer.byteLength(init.body));
    const opts = { method: init.method ?? 'GET', headers, signal: init.signal };
    const req = https
      ? request(url, { ...opts, agent: pinned?.agent ?? systemCaAgent }, onAnswer)
      : httpRequest(url, { ...opts, agent: plainAgent }, onAnswer);
    req.on('error', failed);
    req.end(init.body);
  });
}

/** Options for mqtt.js: the pinned CA for mqtts:// URLs (mqtt.js ignores them for mqtt://). */
export function mqttTls(): { ca?: string; rejectUnauthorized: true } {
  return pinned ? { ca: pinned.ca, rejectUnauthorized: true } : { rejectUnauthorized: true };
}

function headerList(h: RequestInit['headers']): Record<string, string> {
  return Object.fromEntries(new Headers(h).entries());
}

/**
 * fetch(), with https:// URLs verified against the pinned CA only. Node 20's fetch takes no CA (its
 * undici is not importable without the package), so a pinned https call goes through node:https and
 * its answer is wrapped in a standard Response: callers keep using res.ok, res.json(), res.body.
 * Errors look like fetch's (TypeError with the socket error as `cause`), so callers' messages hold.
 */
export async function controlFetch(input: string | URL, init: RequestInit = {}): Promise<Response> {
  const url = new URL(String(input));
  if (!pinned || url.protocol !== 'https:') return fetch(url, init);
  const body = init.body;
  if (body !== undefined && body !== null && typeof body !== 'string') throw new TypeError('controlFetch: only string bodies');
  const agent = pinned.agent;
  return new Promise<Response>((resolve, reject) => {
    const req = request(url, { method: init.method ?? 'GET', headers: headerList(init.headers), agent, signal: init.signal ?? undefined }, (res) => {
      const headers = new Headers();
      for (const [k, v] of Object.entries(res.headers)) {
        if (Array.isArray(v)) for (const x of v) headers.append(k, x);
        else if (v !== undefined) headers.set(k, v);
      }
      const status = res.statusCode ?? 502;
      const noBody = status === 204 || status === 304 || init.method === 'HEAD';
      if (noBody) res.resume();
      resolve(new Response(noBody ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), { status, statusText: res.statusMessage, headers }));
    });
    req.on('error', (err) => reject(new TypeError('fetch failed', { cause: err })));
    if (typeof body === 'string') req.end(body);
    else req.end();
  });
}
