// A TCP transfer whose every byte the test can check:
//   tcp-blob.ts recv <port>                 → after one connection closes: {"bytes": n, "sha256": "…"}
//   tcp-blob.ts send <host> <port> <bytes>  → after sending: {"bytes": n, "sha256": "…"}
// The payload is a deterministic pseudo-random stream, so a reordered or corrupted byte changes the hash.
import { createHash } from 'node:crypto';
import { createConnection, createServer } from 'node:net';

const [mode, a, b, c] = process.argv.slice(2);

function chunk(i: number, size: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  let x = (i * 2654435761) >>> 0 || 1;
  for (let k = 0; k < size; k++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    buf[k] = x & 0xff;
  }
  return buf;
}

if (mode === 'recv') {
  const server = createServer((sock) => {
    const h = createHash('sha256');
    let bytes = 0;
    sock.on('data', (d) => { bytes += d.length; h.update(d); });
    sock.on('end', () => {
      console.log(JSON.stringify({ bytes, sha256: h.digest('hex') }));
      sock.end();
      server.close();
    });
  });
  server.listen(Number(a), '::');
} else if (mode === 'send') {
  const total = Number(c);
  const h = createHash('sha256');
  const sock = createConnection({ host: a!, port: Number(b) }, () => {
    let sent = 0;
    let i = 0;
    const pump = (): void => {
      while (sent < total) {
        const buf = chunk(i++, Math.min(65_536, total - sent));
        sent += buf.length;
        h.update(buf);
        if (!sock.write(buf)) {
          sock.once('drain', pump);
          return;
        }
      }
      sock.end();
    };
    pump();
  });
  sock.on('close', (hadError) => {
    if (hadError) process.exit(1);
    console.log(JSON.stringify({ bytes: total, sha256: h.digest('hex') }));
  });
  sock.on('error', (e) => {
    console.error(JSON.stringify({ msg: 'tcp-blob send failed', error: e.message }));
    process.exit(1);
  });
} else {
  console.error('usage: tcp-blob.ts recv <port> | send <host> <port> <bytes>');
  process.exit(2);
}
