import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checksum, fold, sumBytes, replaceDelta, updateFull, updatePartial } from '../../../netstack/checksum.ts';

test('RFC 1071 example sums to 0xddf2', () => {
  const b = Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
  assert.equal(fold(sumBytes(b, 0, b.length)), 0xddf2);
  assert.equal(checksum(b, 0, b.length), ~0xddf2 & 0xffff);
});

test('odd lengths pad with a zero byte', () => {
  const b = Uint8Array.from([0x12, 0x34, 0x56]);
  assert.equal(fold(sumBytes(b, 0, 3)), 0x1234 + 0x5600);
});

test('large buffers fold without overflow', () => {
  const b = new Uint8Array(200_000).fill(0xff);
  assert.equal(fold(sumBytes(b, 0, b.length)), 0xffff);
});

test('incremental full and partial updates match recomputation for random data', () => {
  for (let t = 0; t < 2000; t++) {
    const n = 2 + 2 * Math.floor(Math.random() * 40);
    const b = Uint8Array.from({ length: n + 2 }, () => Math.floor(Math.random() * 256));
    const at = 2 * Math.floor(Math.random() * (n / 2 - 1)) + 2;
    const nw = Uint8Array.from({ length: 2 }, () => Math.floor(Math.random() * 256));
    // field at 0 covers bytes [2, n+2)
    const c = checksum(b, 2, n);
    b[0] = c >> 8; b[1] = c & 0xff;
    const p = fold(sumBytes(b, 2, n));
    const partial = Uint8Array.from([p >> 8, p & 0xff]);
    const d = replaceDelta(b, at, nw, 0, 2);
    b.set(nw, at);
    updateFull(b, 0, d);
    updatePartial(partial, 0, d);
    assert.equal(fold(sumBytes(b, 0, n + 2)), 0xffff, 'full checksum verifies');
    assert.equal(((partial[0] << 8) | partial[1]) % 0xffff, fold(sumBytes(b, 2, n)) % 0xffff, 'partial equals fresh sum');
  }
});
