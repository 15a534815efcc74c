import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FlowTable } from '../../../proxy/flow-table.ts';
import { ipBytes } from '../../../proxy/address-map.ts';

const a4 = ipBytes('10.18.1.2'), b4 = ipBytes('10.30.0.2');
const a6 = ipBytes('fdc0:18:1::2'), b6 = ipBytes('fdc0:30::2');

test('flows are found by their exact 5-tuple, IPv4 and IPv6 apart', () => {
  const t = new FlowTable();
  const s = t.insert(4, 6, a4, 0, b4, 0, 1000, 80);
  t.values[s * 8] = 42;
  assert.equal(t.find(4, 6, a4, 0, b4, 0, 1000, 80), s);
  assert.equal(t.find(4, 17, a4, 0, b4, 0, 1000, 80), -1, 'protocol is part of the key');
  assert.equal(t.find(4, 6, b4, 0, a4, 0, 80, 1000), -1, 'direction is part of the key');
  assert.equal(t.find(4, 6, a4, 0, b4, 0, 1001, 80), -1);
  const s6 = t.insert(6, 6, a6, 0, b6, 0, 1000, 80);
  assert.notEqual(s6, s);
  assert.equal(t.find(6, 6, a6, 0, b6, 0, 1000, 80), s6);
  assert.equal(t.insert(4, 6, a4, 0, b4, 0, 1000, 80), s, 'insert of a known tuple returns its slot');
  assert.equal(t.values[s * 8], 42);
});

test('the table grows past its initial size and keeps every flow', () => {
  const t = new FlowTable({ initialCapacity: 1024 });
  const src = new Uint8Array(4);
  for (let i = 0; i < 20000; i++) {
    src.set([10, 18, (i >> 8) & 0xff, i & 0xff]);
    const s = t.insert(4, 17, src, 0, b4, 0, i & 0xffff, 53);
    t.values[s * 8] = i;
  }
  assert.equal(t.size, 20000);
  assert.ok(t.capacity >= 32768);
  for (let i = 0; i < 20000; i += 997) {
    src.set([10, 18, (i >> 8) & 0xff, i & 0xff]);
    const s = t.find(4, 17, src, 0, b4, 0, i & 0xffff, 53);
    assert.equal(t.values[s * 8], i);
  }
});

test('idle flows expire on the coarse clock; used ones stay', () => {
  const t = new FlowTable({ idleSeconds: 10 });
  t.now = 100;
  t.insert(4, 6, a4, 0, b4, 0, 1, 80);
  t.insert(4, 6, a4, 0, b4, 0, 2, 80);
  t.now = 108;
  assert.ok(t.find(4, 6, a4, 0, b4, 0, 2, 80) >= 0);
  t.now = 115;
  assert.equal(t.find(4, 6, a4, 0, b4, 0, 1, 80), -1);
  assert.ok(t.find(4, 6, a4, 0, b4, 0, 2, 80) >= 0);
  t.now = 130;
  assert.equal(t.sweep(), 1);
  assert.equal(t.size, 0);
});

test('a full table refuses new flows instead of evicting live ones', () => {
  const t = new FlowTable({ initialCapacity: 1024, maxFlows: 100 });
  const src = new Uint8Array(4);
  let ok = 0;
  for (let i = 0; i < 150; i++) { src[3] = i; if (t.insert(4, 6, src, 0, b4, 0, 1, 80) >= 0) ok++; }
  assert.equal(ok, 100);
  assert.equal(t.refused, 50);
});
