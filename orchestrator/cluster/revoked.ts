// Workers the operator revoked (`canopy worker revoke`): kept in <state>/revoked-workers.json so a
// revoked name cannot register again, across cluster restarts, until the operator removes it there.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export class RevokedWorkers {
  private readonly names: Set<string>;
  private readonly file: string;

  constructor(stateDir: string) {
    this.file = join(stateDir, 'revoked-workers.json');
    let list: unknown = [];
    try {
      if (existsSync(this.file)) list = JSON.parse(readFileSync(this.file, 'utf8'));
    } catch {
      list = [];
    }
    this.names = new Set(Array.isArray(list) ? list.filter((x): x is string => typeof x === 'string') : []);
  }

  has(name: string): boolean {
    return this.names.has(name);
  }

  add(name: string): void {
    if (this.names.has(name)) return;
    this.names.add(name);
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, `${JSON.stringify([...this.names].sort())}\n`, { mode: 0o600 });
    renameSync(tmp, this.file);
  }
}
