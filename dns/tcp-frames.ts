// DNS over TCP (RFC 1035 §4.2.2): every message behind a two-byte length. One connection's framing,
// shared by the service DNS server and the relay.
import type * as net from 'node:net';

/** Idle TCP clients are dropped after this long. */
const TCP_IDLE_MS = 10_000;

/**
 * Serves one accepted connection: each whole message goes to `onMessage` with a `send` that frames
 * the answer; `conns` holds the connection while it is open, so its owner can close them all.
 */
export function serveTcpFrames(c: net.Socket, conns: Set<net.Socket>, onMessage: (msg: Buffer, send: (a: Uint8Array) => void) => void): void {
  conns.add(c);
  c.setTimeout(TCP_IDLE_MS, () => c.destroy());
  c.on('error', () => { /* the client went away */ });
  c.on('close', () => conns.delete(c));
  const send = (a: Uint8Array): void => {
    if (c.destroyed) return;
    const len = Buffer.allocUnsafe(2);
    len.writeUInt16BE(a.length, 0);
    c.write(Buffer.concat([len, a]));
  };
  let buf: Buffer = Buffer.alloc(0);
  c.on('data', (d: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    while (buf.length >= 2) {
      const n = buf.readUInt16BE(0);
      if (buf.length < 2 + n) break;
      // A copy: the message outlives this chunk (forwarded, queued), and buf moves on.
      const msg = Buffer.from(buf.subarray(2, 2 + n));
      buf = buf.subarray(2 + n);
      onMessage(msg, send);
    }
  });
}
