// Root's global address allocation (SPEC §3), persisted in the store: policy service IPs and
// instance IPs from the service range, and worker subnets. Every claim is one atomic statement in the
// store (insert unless taken), so an allocation inside a transaction that is rolled back leaves
// nothing behind, and two root replicas never hand out one address.
import { inCidr, ipToString, parseCidr, parseIp, subBlock, type Cidr, type Family } from '../descriptor/ip.ts';
import type { AddressKind, RootStore } from './store.ts';

export interface AddressPlan {
  serviceV4: string;
  serviceV6: string;
  /** Worker subnets are `workerPrefixV4` blocks of `overlayV4`, from `workerStartV4` on, skipping the service range. */
  overlayV4: string;
  workerStartV4: string;
  workerPrefixV4: number;
  /** The v6 subnet of a worker is the block with the same index in `workerV6`. */
  workerV6: string;
  workerPrefixV6: number;
}

export const DEFAULT_PLAN: AddressPlan = {
  serviceV4: '10.30.0.0/16',
  serviceV6: 'fdc0:30::/32',
  overlayV4: '10.16.0.0/12',
  workerStartV4: '10.18.0.0',
  workerPrefixV4: 24,
  workerV6: 'fdc0:18::/32',
  workerPrefixV6: 64,
};

/** How far (at most) a contended cursor jumps ahead; see next(). */
const CONTENDED_STRIDE = 256n;

export class AddressSpaceExhausted extends Error {}

/** A pinned address another service took between the descriptor check and the write. */
export class AddressTaken extends Error {
  constructor(readonly address: string) {
    super(`address ${address} is already taken`);
  }
}

export class AddressAllocator {
  readonly serviceV4: Cidr;
  readonly serviceV6: Cidr;
  private readonly overlayV4: Cidr;
  private readonly workerV6: Cidr;
  private readonly firstBlock: bigint;
  /** Next-fit cursors (offsets into the service ranges): recently released addresses are reused last. */
  private readonly cursor: Record<Family, bigint> = { 4: 1n, 6: 1n };

  constructor(private readonly store: RootStore, readonly plan: AddressPlan = DEFAULT_PLAN) {
    this.serviceV4 = parseCidr(plan.serviceV4);
    this.serviceV6 = parseCidr(plan.serviceV6);
    this.overlayV4 = parseCidr(plan.overlayV4);
    this.workerV6 = parseCidr(plan.workerV6);
    const start = parseIp(plan.workerStartV4);
    if (this.serviceV4.family !== 4 || this.serviceV6.family !== 6 || this.overlayV4.family !== 4 || this.workerV6.family !== 6) {
      throw new Error('address plan: v4 and v6 ranges are swapped');
    }
    if (!start || !inCidr(start, this.overlayV4)) throw new Error(`address plan: worker start ${plan.workerStartV4} is outside ${plan.overlayV4}`);
    const blockSize = 1n << BigInt(32 - plan.workerPrefixV4);
    if ((start.value - this.overlayV4.base) % blockSize !== 0n) throw new Error(`address plan: ${plan.workerStartV4} is not on a /${plan.workerPrefixV4} boundary`);
    this.firstBlock = (start.value - this.overlayV4.base) / blockSize;
  }

  /**
   * Checks the plan against the database and resumes next-fit after the highest address in use, so a
   * restart does not hand out the addresses released just before it first. Call once, before use.
   */
  async load(): Promise<this> {
    const plan = this.plan;
    const store = this.store;
    // Block indices and ranges mean something only under the plan they were made with.
    const stored = await store.getSetting('address_plan');
    if (stored && stored !== JSON.stringify(plan) && ((await store.listSubnets()).length > 0 || (await store.listAddresses()).length > 0)) {
      throw new Error(`the address plan differs from the one this database was built with (${stored}); start with the same settings or a new --data directory`);
    }
    await store.setSetting('address_plan', JSON.stringify(plan));
    const highest: Record<Family, bigint> = { 4: 0n, 6: 0n };
    for (const a of await store.listAddresses()) {
      const ip = parseIp(a.address);
      const range = a.family === 4 ? this.serviceV4 : this.serviceV6;
      if (ip && inCidr(ip, range) && ip.value - range.base > highest[a.family]) highest[a.family] = ip.value - range.base;
    }
    for (const family of [4, 6] as const) {
      const range = family === 4 ? this.serviceV4 : this.serviceV6;
      this.cursor[family] = highest[family] + 1n < range.size - 1n ? highest[family] + 1n : 1n;
    }
    return this;
  }

  async isTaken(address: string): Promise<boolean> {
    const ip = parseIp(address);
    return ip !== null && (await this.store.addressOwner(ip.text)) !== undefined;
  }

  /** Records a pinned address; the descriptor check already made sure it is in range and free. */
  async claim(address: string, kind: AddressKind, serviceId: string, instanceN: number | null = null): Promise<string> {
    const ip = parseIp(address);
    if (!ip) throw new Error(`not an address: ${address}`);
    // Another request (on this replica or another) may have taken it since the check.
    if (!(await this.store.claimAddress({ address: ip.text, family: ip.family, kind, service_id: serviceId, instance_n: instanceN }))) {
      throw new AddressTaken(ip.text);
    }
    return ip.text;
  }

  /** How many addresses of the family's range one allocation tries before it calls the range exhausted. */
  tryLimit(family: Family): number {
    const usable = (family === 4 ? this.serviceV4 : this.serviceV6).size - 2n;
    return Number(usable < 1_000_000n ? usable : 1_000_000n);
  }

  /**
   * The next candidate address of the service range (next-fit), not claimed: the caller claims it
   * (claimAddress, claimAndCreateInstance) and asks again if it was taken. `contended`: allocations
   * keep finding their candidates taken, which with several replicas means another replica's cursor
   * runs just ahead of this one; then this cursor jumps a random stride forward, so the two stop
   * colliding on every allocation (a failed claim costs a round trip) until one catches up again.
   */
  next(family: Family, contended = false): string {
    const range = family === 4 ? this.serviceV4 : this.serviceV6;
    // Offsets 0 and size-1 (network and broadcast of the range) are never handed out.
    const usable = range.size - 2n;
    if (contended && usable > 4n * CONTENDED_STRIDE) {
      const jump = 1n + BigInt(Math.floor(Math.random() * Number(CONTENDED_STRIDE)));
      this.cursor[family] = ((this.cursor[family] - 1n + jump) % usable) + 1n;
    }
    const offset = this.cursor[family];
    this.cursor[family] = offset + 1n > usable ? 1n : offset + 1n;
    return ipToString(family, range.base + offset);
  }

  async allocate(family: Family, kind: AddressKind, serviceId: string, instanceN: number | null = null): Promise<string> {
    const range = family === 4 ? this.serviceV4 : this.serviceV6;
    const limit = this.tryLimit(family);
    for (let tries = 0; tries < limit; tries++) {
      const text = this.next(family);
      // Check and claim in one statement: another replica's cursor may be on the same address.
      if (await this.store.claimAddress({ address: text, family, kind, service_id: serviceId, instance_n: instanceN })) return text;
    }
    throw new AddressSpaceExhausted(`no free address left in ${range.text}`);
  }

  async releaseService(serviceId: string): Promise<void> {
    await this.store.deleteAddressesOf(serviceId);
  }

  async releaseInstance(serviceId: string, n: number): Promise<void> {
    await this.store.deleteAddressesOf(serviceId, n);
  }

  async releasePolicy(serviceId: string): Promise<void> {
    await this.store.deletePolicyAddresses(serviceId);
  }

  private workerBlock(index: bigint): { v4: Cidr; v6: Cidr } | null {
    const v4 = subBlock(this.overlayV4, this.plan.workerPrefixV4, index);
    const v6 = subBlock(this.workerV6, this.plan.workerPrefixV6, index);
    if (!v4 || !v6) return null;
    return { v4, v6 };
  }

  private overlapsServices(block: Cidr): boolean {
    const s = this.serviceV4;
    return block.base < s.base + s.size && s.base < block.base + block.size;
  }

  /** The worker's subnets: the same answer again for a known worker, else the lowest free block. */
  async workerSubnet(clusterId: string, workerId: string): Promise<{ subnet_v4: string; subnet_v6: string }> {
    const known = await this.store.subnet(clusterId, workerId);
    if (known) return { subnet_v4: known.subnet_v4, subnet_v6: known.subnet_v6 };
    const used = new Set((await this.store.listSubnets()).map((s) => BigInt(s.block)));
    for (let index = this.firstBlock; ; index++) {
      const block = this.workerBlock(index);
      if (!block) break;
      if (used.has(index) || this.overlapsServices(block.v4)) continue;
      const inserted = await this.store.insertSubnet({
        cluster_id: clusterId, worker_id: workerId, block: Number(index),
        subnet_v4: block.v4.text, subnet_v6: block.v6.text, created_at: Date.now(),
      });
      if (inserted) return { subnet_v4: block.v4.text, subnet_v6: block.v6.text };
      // A concurrent request took the block, or gave this worker its subnets: look again.
      const now = await this.store.subnet(clusterId, workerId);
      if (now) return { subnet_v4: now.subnet_v4, subnet_v6: now.subnet_v6 };
    }
    throw new AddressSpaceExhausted(`no free /${this.plan.workerPrefixV4} worker subnet left in ${this.overlayV4.text}`);
  }

  releaseWorkerSubnet(clusterId: string, workerId: string): Promise<boolean> {
    return this.store.deleteSubnet(clusterId, workerId);
  }
}
