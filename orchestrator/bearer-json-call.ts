// One JSON call over HTTP with a bearer token and a timeout: how root and a cluster call each other
// (docs/protocols.md, root ↔ cluster). The other side is another process, so every failure (no
// answer, an HTTP error, a body that is not JSON) becomes one sentence for a status or a log, thrown
// as the caller's own error class. https:// peers are verified against the pinned CA (protocol/tls.ts).
import { controlRequest, type ControlAnswer } from './protocol/tls.ts';

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

/** The parsed answer ({} for an empty body); `fail(sentence, httpStatus?)` makes what is thrown. */
export async function bearerJsonCall(c: BearerJsonCall, fail: (message: string, status?: number) => Error): Promise<unknown> {
  const url = new URL(c.path, c.base.endsWith('/') ? c.base : `${c.base}/`);
  let res: ControlAnswer;
  try {
    res = await controlRequest(url, {
      method: c.method,
      headers: { authorization: `Bearer ${c.bearer}`, ...(c.body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: c.body === undefined ? undefined : JSON.stringify(c.body),
      signal: AbortSignal.timeout(c.timeoutMs),
    });
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause?.code;
    throw fail(`unreachable at ${c.base}: ${cause ?? (e as Error).message}`);
  }
  const text = res.text;
  if (!res.ok) throw fail(`answered HTTP ${res.status} to ${c.method} ${url.pathname}: ${text.slice(0, 200)}`, res.status);
  try {
    return text === '' ? {} : JSON.parse(text);
  } catch {
    throw fail(`answered ${c.method} ${url.pathname} with something that is not JSON`);
  }
}
