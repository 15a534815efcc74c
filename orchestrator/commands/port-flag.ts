// A port given on the command line, checked before any daemon starts so a typo is one clear line.

/** `text` as a port number; `min` is 1 where 0 ("any free port") makes no sense. */
export function portFlag(text: string, flag: string, min: 0 | 1 = 0): number {
  const p = Number(text);
  if (!Number.isInteger(p) || p < min || p > 65535) throw new Error(`${flag}: not a port: ${text}`);
  return p;
}
