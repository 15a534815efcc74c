// A UDP echo for measuring round trips inside lab hosts (a second clock besides ping):
//   udp-echo.ts server <port>
//   udp-echo.ts client <host> <port> <count> [intervalMs]
//     → one JSON line {sent, received, rttMs: […], fwdMs: […], backMs: […]}
// Lab hosts share the machine's monotonic clock, so the server's receive time splits each round
// trip into its two one-way delays.
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';

const [mode, a, b, c, d] = process.argv.slice(2);

if (mode === 'server') {
  const port = Number(a);
  const sock = createSocket({ type: 'udp6', ipv6Only: false });
  sock.on('message', (msg, rinfo) => {
    if (msg.length >= 16) msg.writeBigUInt64BE(process.hrtime.bigint(), 8);
    sock.send(msg, rinfo.port, rinfo.address);
  });
  sock.on('error', (e) => {
    console.error(JSON.stringify({ msg: 'udp-echo server error', error: e.message }));
    process.exit(1);
  });
  sock.bind(port, '::', () => console.log(JSON.stringify({ listening: port })));
} else if (mode === 'client') {
  const host = a!;
  const port = Number(b);
  const count = Number(c);
  const interval = Number(d ?? 100);
  const sock = createSocket(isIPv6(host) ? 'udp6' : 'udp4');
  const sentAt = new Map<number, bigint>();
  const rtts: number[] = [];
  const fwd: number[] = [];
  const back: number[] = [];
  sock.on('message', (msg) => {
    const now = process.hrtime.bigint();
    const seq = msg.readUInt32BE(0);
    const t = sentAt.get(seq);
    if (t === undefined) return;
    sentAt.delete(seq);
    const there = msg.readBigUInt64BE(8);
    rtts.push(Number(now - t) / 1e6);
    fwd.push(Number(there - t) / 1e6);
    back.push(Number(now - there) / 1e6);
  });
  let seq = 0;
  const timer = setInterval(() => {
    if (seq >= count) {
      clearInterval(timer);
      // Wait for stragglers, then report.
      setTimeout(() => {
        console.log(JSON.stringify({ sent: count, received: rtts.length, rttMs: rtts, fwdMs: fwd, backMs: back }));
        sock.close();
      }, 1000);
      return;
    }
    const buf = Buffer.alloc(64);
    buf.writeUInt32BE(seq, 0);
    sentAt.set(seq, process.hrtime.bigint());
    seq++;
    sock.send(buf, port, host);
  }, interval);
} else {
  console.error('usage: udp-echo.ts server <port> | client <host> <port> <count> [intervalMs]');
  process.exit(2);
}
