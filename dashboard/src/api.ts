// The dashboard's only door to root: every call goes through API_BASE with the user's token.
/** Canopy's own API (orchestrator/root/api/paths.ts); the one place the dashboard names it. */
export const API_BASE = '/api/v1';

const TOKEN_KEY = 'canopy.token';

export interface Session {
  token: string;
  username: string;
  role: string;
  /** Renews `token` (access tokens live 15 min) without asking for the password again. */
  refresh_token?: string;
}

export function savedSession(): Session | null {
  try {
    const s = JSON.parse(sessionStorage.getItem(TOKEN_KEY) ?? 'null') as Session | null;
    return s && typeof s.token === 'string' ? s : null;
  } catch {
    return null;
  }
}

export function saveSession(s: Session | null): void {
  if (s) sessionStorage.setItem(TOKEN_KEY, JSON.stringify(s));
  else sessionStorage.removeItem(TOKEN_KEY);
}

export interface FieldError {
  path: string;
  message: string;
}

/** An answer other than 2xx, with root's message and its per-field errors (JSON paths). */
export class ApiFailure extends Error {
  constructor(readonly status: number, message: string, readonly errors: FieldError[]) {
    super(message);
  }
}

let onUnauthorized: () => void = () => undefined;
export function whenUnauthorized(fn: () => void): void {
  onUnauthorized = fn;
}

/** The newest access token: a refresh replaces the one the components were given. */
function current(token: string): string {
  return savedSession()?.token ?? token;
}

let renewing: Promise<boolean> | null = null;

/** A new access token from the saved refresh token (once for all callers at a time); false if refused. */
function renew(): Promise<boolean> {
  renewing ??= (async () => {
    const s = savedSession();
    if (!s?.refresh_token) return false;
    try {
      const res = await fetch(`${API_BASE}/auth/refresh`, { method: 'POST', headers: { authorization: `Bearer ${s.refresh_token}` } });
      if (!res.ok) return false;
      const a = (await res.json()) as { token?: string };
      if (typeof a.token !== 'string') return false;
      saveSession({ ...s, token: a.token });
      return true;
    } catch {
      return false;
    } finally {
      renewing = null;
    }
  })();
  return renewing;
}

export async function call<T>(token: string | null, method: string, path: string, body?: unknown, retried = false): Promise<T> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${current(token)}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(`${API_BASE}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiFailure(0, `root is unreachable: ${(e as Error).message}`, []);
  }
  const text = await res.text();
  let parsed: unknown = undefined;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!res.ok) {
    const p = (parsed ?? {}) as { error?: string; errors?: FieldError[] };
    if (res.status === 401 && token) {
      if (!retried && (await renew())) return call<T>(token, method, path, body, true);
      onUnauthorized();
    }
    throw new ApiFailure(res.status, p.error ?? `HTTP ${res.status}`, Array.isArray(p.errors) ? p.errors : []);
  }
  return parsed as T;
}

export interface StreamHandle {
  close(): void;
}

/**
 * Reads a server-sent event stream with fetch (EventSource cannot send the Authorization header, and a
 * token in a URL ends up in logs). Reconnects after a drop, telling `onOpen` each time so the caller
 * can catch up on what it missed.
 */
export function stream(token: string, path: string, on: (event: string, data: unknown) => void, onOpen: (open: boolean) => void = () => undefined): StreamHandle {
  const abort = new AbortController();
  let stopped = false;
  const run = async (): Promise<void> => {
    while (!stopped) {
      try {
        const res = await fetch(`${API_BASE}${path}`, { headers: { authorization: `Bearer ${current(token)}`, accept: 'text/event-stream' }, signal: abort.signal });
        if (res.status === 401) {
          if (await renew()) continue;
          onUnauthorized();
          return;
        }
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        onOpen(true);
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut: number;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let event = 'message';
            const data: string[] = [];
            for (const line of block.split('\n')) {
              if (line.startsWith('event:')) event = line.slice(6).trim();
              else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
            }
            if (data.length) on(event, JSON.parse(data.join('\n')));
          }
        }
      } catch {
        if (stopped) return;
      }
      onOpen(false);
      await new Promise((r) => setTimeout(r, 2000));
    }
  };
  void run();
  return {
    close() {
      stopped = true;
      abort.abort();
    },
  };
}
