// A UDP socket for the DNS server that receives with recvmmsg and answers with sendmmsg: under load
// one readiness callback takes up to BATCH queries in one syscall and sends their answers in one
// more, where node:dgram costs two syscalls and a libuv round per query (perf/RESULTS.md, "Service
// DNS"). Answers produced later (forwarding, a route query) leave one at a time.
//
// Memory: every structure the kernel reads by address lives in one arena (> 64 bytes, so V8 never
// moves it) that this object keeps referenced (notes/datapath.md, Traps).
import koffi from 'koffi';
import { isIP } from 'node:net';
import { addressOf } from '../native/memory.ts';
import { ipBytes } from '../proxy/address-map.ts';
import { Readiness } from '../native/poll.ts';
import {
  socket, bind, close, getsockname, setsockopt, sendmmsgPtr, errno, SysError, EINTR, EAGAIN,
} from '../native/libc.ts';

const libc = koffi.load('libc.so.6');
const recvmmsgPtr = libc.func('int recvmmsg(int fd, uintptr_t msgvec, unsigned int vlen, int flags, uintptr_t timeout)') as (
  fd: number, msgvec: number, vlen: number, flags: number, timeout: number) => number;

const AF_INET = 2, AF_INET6 = 10, SOCK_DGRAM = 2, SOCK_NONBLOCK = 0o4000, SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1, SO_RCVBUFFORCE = 33, SO_RCVBUF = 8, SO_SNDBUFFORCE = 32, SO_SNDBUF = 7;
const IPPROTO_IPV6 = 41, IPV6_V6ONLY = 26;
const MSG_DONTWAIT = 0x40, MSG_TRUNC = 0x20;

const BATCH = 64;
const MMSGHDR = 64; // struct mmsghdr on x86-64/arm64: msghdr (56) + msg_len (4) + padding
const IOVEC = 16;
const NAME = 32; // room for sockaddr_in6 (28)
/** Largest query we read; longer datagrams arrive truncated and are dropped. */
const RX_SLOT = 4096;
/** Largest answer sent from a batch slot; larger ones (forwarded) go through the single path. */
const TX_SLOT = 4096;
const SINGLE = 65536;
/** Batches per readiness callback before yielding to the event loop (timers, forwarding). */
const ROUNDS = 8;

/** Where an answer goes: the client's socket address, copied out of the receive arena. */
export type ClientName = Uint8Array;

export class BatchUdpSocket {
  readonly fd: number;
  readonly family: 4 | 6;
  readonly port: number;
  /** Answers dropped because the send buffer was full, and other send failures. */
  sendDrops = 0;
  truncated = 0;
  private readonly nameLen: number;
  private readonly arena: Uint8Array;
  private readonly dv: DataView;
  private readonly base: number;
  private readonly rxMsgs = 0;
  private readonly rxIov = BATCH * MMSGHDR;
  private readonly rxNames = this.rxIov + BATCH * IOVEC;
  private readonly rxBufs = this.rxNames + BATCH * NAME;
  private readonly txMsgs = this.rxBufs + BATCH * RX_SLOT;
  private readonly txIov = this.txMsgs + (BATCH + 1) * MMSGHDR;
  private readonly txNames = this.txIov + (BATCH + 1) * IOVEC;
  private readonly txBufs = this.txNames + (BATCH + 1) * NAME;
  private readonly single = new Uint8Array(SINGLE);
  private readonly singleAddr: number;
  private txCount = 0;
  private inBatch = false;
  private readiness: Readiness | null = null;
  private closed = false;

  constructor(host: string, port: number, private readonly onMessage: (msg: Buffer, from: ClientName, reply: (a: Uint8Array) => void) => void) {
    const fam = isIP(host);
    if (fam === 0) throw new Error(`not an IP address: ${host}`);
    this.family = fam === 4 ? 4 : 6;
    this.nameLen = fam === 4 ? 16 : 28;
    const fd = socket(fam === 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw new SysError('socket(UDP)');
    this.fd = fd;
    try {
      if (fam === 6) setInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
      if (!setInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)) setInt(fd, SOL_SOCKET, SO_RCVBUF, 4 << 20);
      if (!setInt(fd, SOL_SOCKET, SO_SNDBUFFORCE, 4 << 20)) setInt(fd, SOL_SOCKET, SO_SNDBUF, 4 << 20);
      const sa = sockaddrOf(host, port);
      if (bind(fd, sa, this.nameLen) !== 0) throw new SysError(`bind ${host}:${port}`);
      const got = new Uint8Array(128);
      const gl = new Uint32Array([128]);
      getsockname(fd, got, gl);
      this.port = (got[2]! << 8) | got[3]!;
    } catch (e) {
      close(fd);
      throw e;
    }
    this.arena = new Uint8Array(this.txBufs + (BATCH + 1) * TX_SLOT);
    this.dv = new DataView(this.arena.buffer);
    this.base = addressOf(this.arena);
    this.singleAddr = addressOf(this.single);
    for (let i = 0; i < BATCH; i++) {
      const m = this.rxMsgs + i * MMSGHDR, iov = this.rxIov + i * IOVEC;
      this.setPtr(iov, this.base + this.rxBufs + i * RX_SLOT);
      this.setPtr(iov + 8, RX_SLOT);
      this.setPtr(m, this.base + this.rxNames + i * NAME);
      this.setPtr(m + 16, this.base + iov);
      this.setPtr(m + 24, 1);
    }
    for (let i = 0; i <= BATCH; i++) {
      const m = this.txMsgs + i * MMSGHDR, iov = this.txIov + i * IOVEC;
      this.setPtr(iov, this.base + this.txBufs + i * TX_SLOT);
      this.setPtr(m, this.base + this.txNames + i * NAME);
      this.dv.setUint32(m + 8, this.nameLen, true);
      this.setPtr(m + 16, this.base + iov);
      this.setPtr(m + 24, 1);
    }
  }

  start(): void {
    this.readiness = new Readiness(this.fd, () => this.pump());
  }

  private setPtr(off: number, v: number): void {
    this.dv.setUint32(off, v % 0x100000000, true);
    this.dv.setUint32(off + 4, Math.floor(v / 0x100000000), true);
  }

  private pump(): void {
    if (this.closed) return;
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < BATCH; i++) {
        const m = this.rxMsgs + i * MMSGHDR;
        this.dv.setUint32(m + 8, NAME, true);
        this.dv.setInt32(m + 48, 0, true);
      }
      const n = recvmmsgPtr(this.fd, this.base + this.rxMsgs, BATCH, MSG_DONTWAIT, 0);
      if (n < 0) {
        const e = errno();
        if (e === EINTR) continue;
        return; // EAGAIN, or an error queued by ICMP: both cleared by this call
      }
      if (n === 0) return;
      this.inBatch = true;
      try {
        for (let i = 0; i < n; i++) {
          const m = this.rxMsgs + i * MMSGHDR;
          if (this.dv.getInt32(m + 48, true) & MSG_TRUNC) { this.truncated++; continue; }
          const len = this.dv.getUint32(m + 56, true);
          const off = this.rxBufs + i * RX_SLOT;
          const nameOff = this.rxNames + i * NAME;
          const from = this.arena.slice(nameOff, nameOff + this.nameLen);
          // A copy: answers that wait (a route query, forwarding) still need the question.
          const msg = Buffer.from(this.arena.subarray(off, off + len));
          this.onMessage(msg, from, (a) => this.send(a, from));
        }
      } finally {
        this.inBatch = false;
        this.flush();
      }
      if (n < BATCH) return;
    }
  }

  /** Queues an answer in the current batch, or sends it at once outside of one. */
  send(a: Uint8Array, to: ClientName): void {
    if (this.closed) return;
    if (this.inBatch && a.length <= TX_SLOT) {
      if (this.txCount === BATCH) this.flush();
      const k = this.txCount++;
      this.arena.set(a, this.txBufs + k * TX_SLOT);
      this.arena.set(to, this.txNames + k * NAME);
      this.setPtr(this.txIov + k * IOVEC + 8, a.length);
      this.dv.setInt32(this.txMsgs + k * MMSGHDR + 48, 0, true);
      return;
    }
    if (a.length > SINGLE) { this.sendDrops++; return; }
    // The spare last slot points at `single` for one-off answers of any size.
    const k = BATCH;
    this.single.set(a, 0);
    this.setPtr(this.txIov + k * IOVEC, this.singleAddr);
    this.setPtr(this.txIov + k * IOVEC + 8, a.length);
    this.arena.set(to, this.txNames + k * NAME);
    this.dv.setInt32(this.txMsgs + k * MMSGHDR + 48, 0, true);
    this.sendRange(k, 1);
  }

  private flush(): void {
    const n = this.txCount;
    this.txCount = 0;
    if (n > 0) this.sendRange(0, n);
  }

  private sendRange(first: number, n: number): void {
    let done = 0;
    while (done < n) {
      const r = sendmmsgPtr(this.fd, this.base + this.txMsgs + (first + done) * MMSGHDR, n - done, MSG_DONTWAIT);
      if (r > 0) { done += r; continue; }
      const e = errno();
      if (e === EINTR) continue;
      if (e === EAGAIN) { this.sendDrops += n - done; return; }
      // One bad destination (e.g. an unreachable client): skip it, keep the others.
      this.sendDrops++;
      done++;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.readiness?.close();
    this.readiness = null;
    close(this.fd);
  }
}

function setInt(fd: number, level: number, name: number, v: number): boolean {
  const b = new Uint8Array(128);
  new DataView(b.buffer).setInt32(0, v, true);
  return setsockopt(fd, level, name, b, 4) === 0;
}

function sockaddrOf(host: string, port: number): Uint8Array {
  const b = new Uint8Array(128);
  const v6 = isIP(host) === 6;
  b[0] = v6 ? AF_INET6 : AF_INET; // sa_family, little-endian u16
  b[2] = port >> 8; b[3] = port & 0xff;
  if (!v6) host.split('.').forEach((x, i) => { b[4 + i] = Number(x); });
  else b.set(ipBytes(host), 8);
  return b;
}
