// The worker API's token for what changes the worker (an image import): made at first start, kept
// in the data dir (0600), so whoever can read the worker's files (the operator, `canopy up`'s CLI on
// the same machine) can call it. The cluster's worker join key is accepted too: whoever may add a
// worker to the cluster may put an image on one.
import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

export const API_TOKEN_FILE = 'api-token';

export function loadOrCreateApiToken(dataDir: string): string {
  const f = join(dataDir, API_TOKEN_FILE);
  if (existsSync(f)) {
    const t = readFileSync(f, 'utf8').trim();
    if (t.length >= 16) return t;
  }
  mkdirSync(dataDir, { recursive: true });
  const t = randomBytes(24).toString('base64url');
  writeFileSync(f, `${t}\n`, { mode: 0o600 });
  return t;
}

/** Whether `header` is `Bearer <one of tokens>` (constant time per token). */
export function bearerMatches(header: string | undefined, tokens: readonly string[]): boolean {
  const m = /^Bearer (.+)$/.exec(header ?? '');
  if (!m) return false;
  const given = createHash('sha256').update(m[1]!).digest();
  let ok = false;
  for (const t of tokens) if (t && timingSafeEqual(given, createHash('sha256').update(t).digest())) ok = true;
  return ok;
}
