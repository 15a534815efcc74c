// CLI output: errors with the server's field messages, a spinner line on a TTY (plain lines
// otherwise, so logs and pipes get one line per event), and fixed-width tables.
import { ApiCallError } from './root-client.ts';

/** Prints the error as the user should read it and exits 1. */
export function fail(command: string, e: unknown): never {
  const msg = e instanceof ApiCallError ? e.describe() : e instanceof Error ? e.message : String(e);
  process.stderr.write(`canopy ${command}: ${msg}\n`);
  process.exit(1);
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/** A status line that permanent lines scroll above; a no-op off a TTY. */
export class StatusLine {
  private frame = 0;
  private text = '';
  private readonly tty: boolean;

  constructor(private readonly out: NodeJS.WriteStream = process.stdout) {
    this.tty = Boolean(out.isTTY);
  }

  /** A permanent line. */
  print(line: string): void {
    if (this.tty && this.text) this.out.write('\r\x1b[2K');
    this.out.write(`${line}\n`);
    if (this.tty && this.text) this.draw();
  }

  set(text: string): void {
    this.text = text;
    if (this.tty) this.draw();
  }

  tick(): void {
    if (!this.tty || !this.text) return;
    this.frame = (this.frame + 1) % FRAMES.length;
    this.draw();
  }

  clear(): void {
    if (this.tty && this.text) this.out.write('\r\x1b[2K');
    this.text = '';
  }

  private draw(): void {
    const width = this.out.columns || 100;
    this.out.write(`\r\x1b[2K${FRAMES[this.frame]} ${this.text}`.slice(0, width + 6));
  }
}

/** Left-aligned columns, two spaces apart. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
