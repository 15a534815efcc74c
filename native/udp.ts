// A non-blocking UDP socket driven by raw recvmsg/sendmsg/sendmmsg, with UDP_SEGMENT (GSO) on send
// and UDP_GRO on receive. Thin: it moves the datagrams a TxPlan describes, nothing more.
import { isIP } from 'node:net';
import { maxGsoPayloadFor, type DatagramSocket, type Endpoint, type RxInfo, type TxPlan } from './io.ts';
import { addressOf } from './memory.ts';
import {
  socket, bind, close, getsockname, setsockopt, getsockopt, sendmmsgPtr, recvmsgPtr, errno,
  SysError, EAGAIN, EINTR, EINVAL, EIO,
} from './libc.ts';

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEPORT = 15;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;
const SOL_UDP = 17;
const UDP_SEGMENT = 103;
const UDP_GRO = 104;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
const MSG_DONTWAIT = 0x40;
const MSG_TRUNC = 0x20;

const MMSGHDR = 64;
const IOVEC = 16;
const CMSG_SEG = 24; // CMSG_SPACE(sizeof(uint16_t)) rounded to 8: header 16 + 2 → 24
/** At most this many datagrams in one GSO send (UDP_MAX_SEGMENTS is 64 on older kernels). */
const GSO_MAX_SEGS = 64;
/** At most this many payload bytes in one GSO send (an IP datagram is ≤ 64 kB). */
const GSO_MAX_BYTES = 65400;
const MAX_MSGS = 256;
const MAX_IOV = 1024;

export interface UdpSocketOptions {
  /** Local address to bind (IPv4 or IPv6 literal). */
  host: string;
  /** Local port; 0 picks one. */
  port: number;
  /** Try UDP_SEGMENT on send and UDP_GRO on receive (default true). */
  offload?: boolean;
  /** Socket buffer size in bytes, forced past rmem_max/wmem_max when we are allowed (default 8 MB). */
  bufferBytes?: number;
  reusePort?: boolean;
}

export function sockaddr(host: string, port: number): Uint8Array {
  const fam = isIP(host);
  if (fam === 0) throw new Error(`not an IP address: ${host}`);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad port: ${port}`);
  const b = new Uint8Array(128);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, fam === 4 ? AF_INET : AF_INET6, true);
  dv.setUint16(2, port, false);
  if (fam === 4) host.split('.').forEach((x, i) => { b[4 + i] = Number(x); });
  else b.set(parseV6(host), 8);
  return b;
}

function parseV6(s: string): Uint8Array {
  const out = new Uint8Array(16);
  const [head, tail] = s.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const words = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  words.forEach((w, i) => { const v = parseInt(w, 16); out[2 * i] = v >> 8; out[2 * i + 1] = v & 0xff; });
  return out;
}

function setInt(fd: number, level: number, name: number, v: number): boolean {
  const b = new Uint8Array(128);
  new DataView(b.buffer).setInt32(0, v, true);
  return setsockopt(fd, level, name, b, 4) === 0;
}

function getInt(fd: number, level: number, name: number): number {
  const b = new Uint8Array(128);
  const l = new Uint32Array([4]);
  if (getsockopt(fd, level, name, b, l) !== 0) return -1;
  return new DataView(b.buffer).getInt32(0, true);
}

export class UdpSocket implements DatagramSocket {
  readonly fd: number;
  readonly family: 4 | 6;
  readonly port: number;
  gso: boolean;
  readonly gro: boolean;
  readonly sndbuf: number;
  readonly rcvbuf: number;
  /** Sends the kernel refused other than by a full buffer (counted, not thrown: a bad peer must not stop the loop). */
  sendErrors = 0;
  lastSendErrno = 0;
  truncated = 0;
  private closed = false;
  // One arena for every struct the kernel reads by address; kept as a field so it stays alive.
  private readonly arena = new Uint8Array(MAX_MSGS * MMSGHDR + MAX_IOV * IOVEC + MAX_MSGS * CMSG_SEG + 4096);
  private readonly dv = new DataView(this.arena.buffer);
  /** The same arena as 32-bit words: pointer writes in the send loop are two plain stores. */
  private readonly u32 = new Uint32Array(this.arena.buffer);
  // The last two arrays seen in a plan and their addresses: a plan's entries come from a couple of
  // arrays (tunnel header scratch, the packet buffer), so this skips most lookups. Compared by
  // identity: reading `.buffer` per entry cost as much as the rest of send() in a CPU profile.
  private arrA: Uint8Array | null = null;
  private addrA = 0;
  private arrB: Uint8Array | null = null;
  private addrB = 0;
  private readonly msgsOff = 0;
  private readonly iovOff = MAX_MSGS * MMSGHDR;
  private readonly cmsgOff = MAX_MSGS * MMSGHDR + MAX_IOV * IOVEC;
  private readonly nameOff = MAX_MSGS * MMSGHDR + MAX_IOV * IOVEC + MAX_MSGS * CMSG_SEG;
  private readonly rxMsgOff = this.nameOff + 128;
  private readonly rxIovOff = this.rxMsgOff + 64;
  private readonly rxCtlOff = this.rxIovOff + 16;
  private readonly base: number;
  private readonly names = new WeakMap<Endpoint, Uint8Array>();

  constructor(o: UdpSocketOptions) {
    const fam = isIP(o.host);
    if (fam === 0) throw new Error(`UdpSocket: not an IP address: ${o.host}`);
    this.family = fam === 4 ? 4 : 6;
    const fd = socket(fam === 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw new SysError('socket(UDP)');
    this.fd = fd;
    try {
      if (fam === 6) setInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
      if (o.reusePort) setInt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
      const want = o.bufferBytes ?? 8 << 20;
      // FORCE needs CAP_NET_ADMIN; without it the plain option still gets up to rmem_max.
      if (!setInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, want)) setInt(fd, SOL_SOCKET, SO_RCVBUF, want);
      if (!setInt(fd, SOL_SOCKET, SO_SNDBUFFORCE, want)) setInt(fd, SOL_SOCKET, SO_SNDBUF, want);
      this.rcvbuf = getInt(fd, SOL_SOCKET, SO_RCVBUF);
      this.sndbuf = getInt(fd, SOL_SOCKET, SO_SNDBUF);
      const sa = sockaddr(o.host, o.port);
      if (bind(fd, sa, fam === 4 ? 16 : 28) !== 0) throw new SysError(`bind ${o.host}:${o.port}`);
      const got = new Uint8Array(128);
      const gl = new Uint32Array([128]);
      getsockname(fd, got, gl);
      this.port = new DataView(got.buffer).getUint16(2, false);
      const offload = o.offload ?? true;
      // UDP_SEGMENT is a per-send cmsg; probing the socket option tells whether the kernel knows it.
      this.gso = offload && getInt(fd, SOL_UDP, UDP_SEGMENT) >= 0;
      this.gro = offload && setInt(fd, SOL_UDP, UDP_GRO, 1);
    } catch (e) {
      close(fd);
      throw e;
    }
    this.base = addressOf(this.arena);
    // The receive msghdr is built once: one iovec, a control buffer for the GRO segment size.
    const d = this.dv;
    this.setPtr(this.rxMsgOff + 16, this.base + this.rxIovOff);
    d.setUint32(this.rxMsgOff + 24, 1, true);
    this.setPtr(this.rxMsgOff + 32, this.base + this.rxCtlOff);
  }

  private setPtr(off: number, v: number): void {
    // Two 32-bit writes: a BigInt per pointer costs more than the syscall's share.
    this.dv.setUint32(off, v % 0x100000000, true);
    this.dv.setUint32(off + 4, Math.floor(v / 0x100000000), true);
  }

  private bufAddress(b: Uint8Array): number {
    if (b === this.arrA) return this.addrA;
    if (b === this.arrB) return this.addrB;
    const a = addressOf(b);
    this.arrB = this.arrA;
    this.addrB = this.addrA;
    this.arrA = b;
    this.addrA = a;
    return a;
  }

  private nameFor(to: Endpoint): Uint8Array {
    let n = this.names.get(to);
    if (!n) {
      if (isIP(to.host) !== this.family) throw new Error(`endpoint ${to.host} is not IPv${this.family}`);
      n = sockaddr(to.host, to.port);
      this.names.set(to, n);
    }
    return n;
  }

  send(to: Endpoint, plan: TxPlan): boolean {
    if (plan.segments === 0) return true;
    const name = this.nameFor(to);
    const nameLen = this.family === 4 ? 16 : 28;
    // 16 or 28 bytes: a byte loop rather than a view per send.
    for (let i = 0, o = this.nameOff; i < nameLen; i++) this.arena[o + i] = name[i];
    const d = this.dv;
    const A = this.base;
    let msgs = 0;
    let iov = 0;
    let s = 0;
    while (s < plan.segments) {
      if (msgs >= MAX_MSGS) break;
      // Datagrams in this message: all of them (GSO, bounded) or one.
      let take = 1;
      if (this.gso) {
        if (s === 0 && plan.segments <= GSO_MAX_SEGS && plan.total <= maxGsoPayloadFor(this.family)) {
          // The whole batch in one GSO send (one skb through the underlay, one GRO receive at the peer).
          take = plan.segments;
        } else {
          take = Math.min(plan.segments - s, GSO_MAX_SEGS, Math.max(1, Math.floor(GSO_MAX_BYTES / plan.segSize)));
        }
      }
      const e0 = plan.segStart[s];
      const e1 = s + take < plan.segments ? plan.segStart[s + take] : plan.entries;
      if (iov + (e1 - e0) > MAX_IOV) break;
      const m = this.msgsOff + msgs * MMSGHDR;
      const iovAt = this.iovOff + iov * IOVEC;
      const u32 = this.u32;
      const iov0 = iov;
      for (let e = e0; e < e1; e++) {
        const w = (this.iovOff + iov * IOVEC) >>> 2;
        const p = this.bufAddress(plan.bufs[e]) + plan.offs[e];
        u32[w] = p % 0x100000000;
        u32[w + 1] = Math.floor(p / 0x100000000);
        u32[w + 2] = plan.lens[e];
        u32[w + 3] = 0;
        iov++;
      }
      this.setPtr(m, A + this.nameOff);
      d.setUint32(m + 8, nameLen, true);
      this.setPtr(m + 16, A + iovAt);
      this.setPtr(m + 24, iov - iov0);
      if (take > 1) {
        const c = this.cmsgOff + msgs * CMSG_SEG;
        this.setPtr(c, 18); // CMSG_LEN(sizeof(uint16_t))
        d.setInt32(c + 8, SOL_UDP, true);
        d.setInt32(c + 12, UDP_SEGMENT, true);
        d.setUint16(c + 16, plan.segSize, true);
        this.setPtr(m + 32, A + c);
        this.setPtr(m + 40, CMSG_SEG);
      } else {
        this.setPtr(m + 32, 0);
        this.setPtr(m + 40, 0);
      }
      d.setInt32(m + 48, 0, true);
      msgs++;
      s += take;
    }
    let done = 0;
    while (done < msgs) {
      const r = sendmmsgPtr(this.fd, A + this.msgsOff + done * MMSGHDR, msgs - done, MSG_DONTWAIT);
      if (r > 0) {
        done += r;
        continue;
      }
      const e = errno();
      if (e === EINTR) continue;
      if (e === EAGAIN) return false;
      if ((e === EIO || e === EINVAL) && this.gso) {
        // A device on the route cannot segment: fall back to one datagram per message for good.
        this.gso = false;
        return this.send(to, plan);
      }
      this.sendErrors++;
      this.lastSendErrno = e;
      // Skip the failing message (e.g. ICMP-induced ECONNREFUSED on a peer that went away).
      done++;
    }
    return s >= plan.segments;
  }

  recv(buf: Uint8Array, off: number, max: number, rx: RxInfo): number {
    const d = this.dv;
    const m = this.rxMsgOff;
    this.setPtr(this.rxIovOff, addressOf(buf, off));
    this.setPtr(this.rxIovOff + 8, max);
    this.setPtr(m + 40, 64);
    d.setInt32(m + 48, 0, true);
    for (let tries = 0; tries < 8; tries++) {
      const n = recvmsgPtr(this.fd, this.base + m, MSG_DONTWAIT);
      if (n < 0) {
        const e = errno();
        if (e === EINTR) continue;
        if (e === EAGAIN) return -1;
        // Errors queued by ICMP (unreachable peers) are reported once and cleared by this call.
        this.lastSendErrno = e;
        this.sendErrors++;
        continue;
      }
      if (d.getInt32(m + 48, true) & MSG_TRUNC) {
        this.truncated++;
        continue;
      }
      rx.segSize = n;
      const ctlLen = d.getUint32(m + 40, true);
      if (ctlLen >= 20) {
        const c = this.rxCtlOff;
        if (d.getInt32(c + 8, true) === SOL_UDP && d.getInt32(c + 12, true) === UDP_GRO) {
          const seg = d.getInt32(c + 16, true);
          if (seg > 0) rx.segSize = seg;
        }
      }
      return n;
    }
    return -1;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    close(this.fd);
  }
}
