// Instance stdout/stderr files, bounded by copy-truncate rotation. Every runtime's writer (the process
// wrapper, containerd's shim) holds the file with O_APPEND, so truncating under it is safe.
import { openSync, closeSync, readFileSync, readSync, statSync, writeFileSync, truncateSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { tailWholeLines } from '../log-tail.ts';

export type LogStream = 'stdout' | 'stderr';

/** The tail of one stream in `dir` (rotated part first), at most `maxBytes`. */
export function readLog(dir: string, stream: LogStream, maxBytes = 64 * 1024): string {
  const base = join(dir, `${stream}.log`);
  const parts: Buffer[] = [];
  for (const f of [`${base}.1`, base]) {
    try {
      parts.push(readFileSync(f));
    } catch {
      // not written yet
    }
  }
  return tailWholeLines(Buffer.concat(parts), maxBytes);
}

/**
 * Rotates every instance directory under `instancesDir`. Only the newest half of the budget is kept
 * in the rotated copy, so a stream never holds much more than `logBytes`.
 */
export function rotateLogs(instancesDir: string, logBytes: number): void {
  let keys: string[];
  try {
    keys = readdirSync(instancesDir);
  } catch {
    return;
  }
  const keep = Math.floor(logBytes / 2);
  for (const key of keys) {
    for (const stream of ['stdout', 'stderr']) {
      const f = join(instancesDir, key, `${stream}.log`);
      try {
        const size = statSync(f).size;
        if (size <= keep) continue;
        const fd = openSync(f, 'r');
        const tail = Buffer.alloc(keep);
        try {
          readSync(fd, tail, 0, keep, size - keep);
        } finally {
          closeSync(fd);
        }
        writeFileSync(`${f}.1`, tail);
        truncateSync(f, 0);
      } catch {
        // gone meanwhile
      }
    }
  }
}
