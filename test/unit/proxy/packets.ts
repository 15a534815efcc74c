// Minimal packets for table tests: the table reads only addresses and ports through PacketMeta.
import { ipBytes } from '../../../proxy/address-map.ts';
import { Proto, type PacketMeta } from '../../../netstack/table.ts';

export interface TestPacket { buf: Uint8Array; meta: PacketMeta }

export function packet(src: string, dst: string, sport: number, dport: number, proto: number = Proto.TCP): TestPacket {
  const s = ipBytes(src), d = ipBytes(dst);
  const family = s.length === 4 ? 4 : 6;
  const buf = new Uint8Array(family === 4 ? 40 : 60);
  const srcOff = family === 4 ? 12 : 8, dstOff = family === 4 ? 16 : 24;
  buf.set(s, srcOff);
  buf.set(d, dstOff);
  return { buf, meta: { family, proto, l3: 0, l4: family === 4 ? 20 : 40, srcOff, dstOff, sport, dport } };
}
