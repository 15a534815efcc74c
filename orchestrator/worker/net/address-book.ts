// Which address of the worker subnet each instance holds, kept on disk so a restarted daemon gives
// re-adopted instances the addresses they already have and never hands those out twice. Index 1 is
// the bridge; instances get 2, 3, … (the same index in the v4 and the v6 subnet).
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { ipToString, parseCidr, type Cidr } from '../../descriptor/ip.ts';

export interface HostAddresses {
  index: number;
  v4: string;
  v6: string | null;
}

export class AddressesExhausted extends Error {}

export class AddressBook {
  readonly v4: Cidr;
  readonly v6: Cidr | null;
  private readonly byKey = new Map<string, number>();
  private readonly used = new Set<number>();

  constructor(private readonly file: string, subnetV4: string, subnetV6: string | null) {
    this.v4 = parseCidr(subnetV4);
    this.v6 = subnetV6 ? parseCidr(subnetV6) : null;
    if (this.v4.family !== 4 || this.v4.size < 4n) throw new Error(`worker subnet too small or not IPv4: ${subnetV4}`);
    if (this.v6 && this.v6.family !== 6) throw new Error(`not an IPv6 subnet: ${subnetV6}`);
    if (existsSync(file)) {
      const saved = JSON.parse(readFileSync(file, 'utf8')) as { subnet_v4?: string; keys?: Record<string, number> };
      // A different subnet (root reassigned it) makes the old indexes meaningless.
      if (saved.subnet_v4 === this.v4.text) {
        for (const [k, n] of Object.entries(saved.keys ?? {})) {
          if (Number.isInteger(n) && n >= 2 && BigInt(n) < this.v4.size - 1n) {
            this.byKey.set(k, n);
            this.used.add(n);
          }
        }
      }
    }
  }

  private at(index: number): HostAddresses {
    return {
      index,
      v4: ipToString(4, this.v4.base + BigInt(index)),
      v6: this.v6 ? ipToString(6, this.v6.base + BigInt(index)) : null,
    };
  }

  /** The bridge's addresses (the gateway and DNS server of every instance). */
  gateway(): HostAddresses {
    return this.at(1);
  }

  /** The addresses of `key`: the ones it has, else the lowest free ones. */
  take(key: string): HostAddresses {
    let n = this.byKey.get(key);
    if (n === undefined) {
      const last = Number(this.v4.size - 2n);
      for (let i = 2; i <= last; i++) {
        if (!this.used.has(i)) {
          n = i;
          break;
        }
      }
      if (n === undefined) throw new AddressesExhausted(`no free address left in ${this.v4.text} (${this.used.size} instances)`);
      this.byKey.set(key, n);
      this.used.add(n);
      this.save();
    }
    return this.at(n);
  }

  has(key: string): boolean {
    return this.byKey.has(key);
  }

  release(key: string): void {
    const n = this.byKey.get(key);
    if (n === undefined) return;
    this.byKey.delete(key);
    this.used.delete(n);
    this.save();
  }

  keys(): string[] {
    return [...this.byKey.keys()];
  }

  private save(): void {
    mkdirSync(dirname(this.file), { recursive: true });
    writeFileSync(`${this.file}.tmp`, JSON.stringify({ subnet_v4: this.v4.text, keys: Object.fromEntries(this.byKey) }));
    renameSync(`${this.file}.tmp`, this.file);
  }
}
