// Turning `canopy lab up` options into a lab spec: `--delay w1:w2:20` (a pair, both ways),
// `--delay w1>w2:20` (a pair, w1→w2 only) or `--delay w3:10` (a host's link); the same shapes for
// --jitter (ms), --loss (%) and --rate (Mbit/s).
import type { LinkSpec } from './impair/rules.ts';

export interface ImpairmentArgs {
  delay?: string[];
  jitter?: string[];
  loss?: string[];
  rate?: string[];
}

const FIELDS = { delay: 'delayMs', jitter: 'jitterMs', loss: 'lossPct', rate: 'rateMbit' } as const;

/** One LinkSpec per host or pair named, with every option given for it merged in. */
export function linksFromArgs(args: ImpairmentArgs): LinkSpec[] {
  const byKey = new Map<string, LinkSpec>();
  for (const opt of Object.keys(FIELDS) as (keyof typeof FIELDS)[]) {
    for (const raw of args[opt] ?? []) {
      // `a>b:v` is the one-way form of `a:b:v`.
      const oneWay = /^([^:>]+)>([^:>]+):([^:>]+)$/.exec(raw);
      const parts = oneWay ? [oneWay[1]!, oneWay[2]!, oneWay[3]!] : raw.split(':');
      const value = Number(parts[parts.length - 1]);
      if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '' || p.includes('>')) || !Number.isFinite(value)) {
        throw new Error(`--${opt} ${raw}: want host:value, a:b:value (both ways) or a>b:value (a→b only)`);
      }
      const key = oneWay ? `${parts[0]}>${parts[1]}` : parts.length === 3 ? [parts[0], parts[1]].sort().join('~') : parts[0]!;
      let link = byKey.get(key);
      if (!link) {
        link = parts.length === 3 ? { a: parts[0]!, b: parts[1]!, ...(oneWay ? { direction: 'out' as const } : {}) } : { host: parts[0]! };
        byKey.set(key, link);
      }
      const field = FIELDS[opt];
      if (link[field] !== undefined) throw new Error(`--${opt} given twice for ${key.replace('~', '–')}`);
      link[field] = value;
    }
  }
  return [...byKey.values()];
}

/** Host names for `--hosts N` (w1…wN) or an explicit comma-separated `--names` list. */
export function hostNames(count: number, names?: string): string[] {
  if (names) return names.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (!Number.isInteger(count) || count < 1 || count > 253) throw new Error(`--hosts ${count}: want 1–253`);
  return Array.from({ length: count }, (_, i) => `w${i + 1}`);
}
