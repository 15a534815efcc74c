// TUN/TAP devices through /dev/net/tun (ioctl TUNSETIFF, TUNSETOFFLOAD). Thin: no policy here.
import { Buffer } from 'node:buffer';
import {
  open, close, ioctlPtr, ioctlInt, read, write, readPtr, writePtr, errno, setNonBlocking,
  O_RDWR, O_CLOEXEC, EAGAIN, EINTR, SysError,
} from './libc.ts';
import { addressOf } from './memory.ts';
import type { PacketDevice } from './io.ts';

export const IFF_TUN = 0x0001;
export const IFF_TAP = 0x0002;
export const IFF_MULTI_QUEUE = 0x0100;
export const IFF_NO_PI = 0x1000;
export const IFF_VNET_HDR = 0x4000;

const TUNSETIFF = 0x400454ca;
const TUNSETOFFLOAD = 0x400454d0;
const TUNSETVNETHDRSZ = 0x400454d8;

export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_TSO_ECN = 0x08;
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;

/** Size of struct virtio_net_hdr (without num_buffers), prepended to every packet in VNET_HDR mode. */
export const VNET_HDR_LEN = 10;

export interface TunOptions {
  /** Interface name (≤ 15 bytes); the kernel picks one when empty. */
  name: string;
  /** 'tun' carries IP packets, 'tap' Ethernet frames. */
  mode: 'tun' | 'tap';
  vnetHdr?: boolean;
  multiQueue?: boolean;
  nonBlocking?: boolean;
}

/** One open queue (file descriptor) of a TUN/TAP device. */
export class TunQueue {
  readonly fd: number;
  readonly name: string;
  private closed = false;

  constructor(opts: TunOptions) {
    if (Buffer.byteLength(opts.name) > 15) throw new Error(`interface name too long: ${opts.name}`);
    const fd = open('/dev/net/tun', O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) throw new SysError('open /dev/net/tun');
    // struct ifreq is 40 bytes; allocate more than 64 so V8 keeps it off the moving heap.
    const ifr = new Uint8Array(128);
    Buffer.from(ifr.buffer).write(opts.name, 0, 15, 'utf8');
    let flags = (opts.mode === 'tun' ? IFF_TUN : IFF_TAP) | IFF_NO_PI;
    if (opts.vnetHdr) flags |= IFF_VNET_HDR;
    if (opts.multiQueue) flags |= IFF_MULTI_QUEUE;
    new DataView(ifr.buffer).setUint16(16, flags, true);
    if (ioctlPtr(fd, TUNSETIFF, ifr) < 0) {
      const e = errno();
      close(fd);
      throw new SysError(`TUNSETIFF ${opts.name}`, e);
    }
    if (opts.vnetHdr) {
      const sz = new Uint8Array(128);
      new DataView(sz.buffer).setInt32(0, VNET_HDR_LEN, true);
      if (ioctlPtr(fd, TUNSETVNETHDRSZ, sz) < 0) {
        const e = errno();
        close(fd);
        throw new SysError('TUNSETVNETHDRSZ', e);
      }
    }
    if (opts.nonBlocking) setNonBlocking(fd);
    const end = ifr.indexOf(0);
    this.name = Buffer.from(ifr.buffer, 0, end < 0 || end > 16 ? 16 : end).toString('utf8');
    this.fd = fd;
  }

  /** Enables offloads (TUN_F_* bits). Returns false when the kernel refuses this combination. */
  setOffload(flags: number): boolean {
    return ioctlInt(this.fd, TUNSETOFFLOAD, flags) === 0;
  }

  /** Reads one packet into buf; returns its length, or -1 when nothing is ready (non-blocking). */
  read(buf: Uint8Array): number {
    for (;;) {
      const n = read(this.fd, buf, buf.length);
      if (n >= 0) return n;
      const e = errno();
      if (e === EINTR) continue;
      if (e === EAGAIN) return -1;
      throw new SysError(`read ${this.name}`, e);
    }
  }

  /** Writes one packet (buf[0..len)); returns false when the queue is full (non-blocking). */
  write(buf: Uint8Array, len: number = buf.length): boolean {
    for (;;) {
      const n = write(this.fd, buf, len);
      if (n >= 0) return true;
      const e = errno();
      if (e === EINTR) continue;
      if (e === EAGAIN) return false;
      throw new SysError(`write ${this.name}`, e);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    close(this.fd);
  }
}

/**
 * A TUN queue as the datapath's PacketDevice: non-blocking, raw-pointer reads and writes of arena
 * memory. Opened with IFF_VNET_HDR and TUNSETOFFLOAD(CSUM|TSO4|TSO6[|USO4|USO6]) when offload is
 * asked for and the kernel agrees; otherwise one plain packet per read.
 */
export class TunDevice implements PacketDevice {
  readonly queue: TunQueue;
  readonly vnetHdr: boolean;
  /** The TUN_F_* bits the kernel accepted (0 in per-packet mode). */
  readonly offloads: number;
  readErrors = 0;
  /** errno of the last failed read other than EAGAIN (0 = none): a read error ends a pump silently. */
  lastReadErrno = 0;

  constructor(name: string, opts: { offload: boolean; multiQueue?: boolean }) {
    let q = new TunQueue({ name, mode: 'tun', vnetHdr: opts.offload, multiQueue: opts.multiQueue, nonBlocking: true });
    let offloads = 0;
    if (opts.offload) {
      const base = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
      if (q.setOffload(base | TUN_F_USO4 | TUN_F_USO6)) offloads = base | TUN_F_USO4 | TUN_F_USO6;
      else if (q.setOffload(base)) offloads = base;
      if (offloads === 0) {
        // The kernel takes no offloads: reopen without the vnet header, the per-packet fallback.
        q.close();
        q = new TunQueue({ name, mode: 'tun', multiQueue: opts.multiQueue, nonBlocking: true });
      }
    }
    this.queue = q;
    this.offloads = offloads;
    this.vnetHdr = offloads !== 0;
  }

  get fd(): number {
    return this.queue.fd;
  }

  get name(): string {
    return this.queue.name;
  }

  read(buf: Uint8Array, off: number, max: number): number {
    const fd = this.queue.fd;
    const p = addressOf(buf, off);
    for (;;) {
      const n = readPtr(fd, p, max);
      if (n >= 0) return n;
      const e = errno();
      if (e === EINTR) continue;
      if (e !== EAGAIN) {
        this.readErrors++;
        this.lastReadErrno = e;
      }
      return -1;
    }
  }

  write(buf: Uint8Array, off: number, len: number): boolean {
    const fd = this.queue.fd;
    const p = addressOf(buf, off);
    for (;;) {
      const n = writePtr(fd, p, len);
      if (n >= 0) return true;
      if (errno() === EINTR) continue;
      // EAGAIN (queue full) and EINVAL (a malformed offload header) both mean "dropped".
      return false;
    }
  }

  close(): void {
    this.queue.close();
  }
}
