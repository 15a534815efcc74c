// What both directions of the datapath do the same way: write into the device, clamp the MSS.
import type { PacketDevice } from '../native/io.ts';
import { Counter, type Counters } from './counters.ts';
import { clampMss } from './mss.ts';
import type { PacketInfo } from './packet.ts';

/** Settings both directions read; neither writes them. */
export interface PathSettings {
  /** Packets (or receive calls) per pump before yielding to the event loop. */
  budget: number;
  /** MSS a SYN is clamped to, per family (0 = no clamping). */
  mss4: number;
  mss6: number;
}

export function writeDevice(dev: PacketDevice, c: Counters, b: Uint8Array, off: number, len: number): void {
  if (dev.write(b, off, len)) c.count(Counter.DevTx);
  else c.count(Counter.DevTxFull);
}

export function clampSyn(s: PathSettings, c: Counters, m: PacketInfo, b: Uint8Array, partial: boolean): void {
  const max = m.family === 4 ? s.mss4 : s.mss6;
  if (max > 0 && m.tcpHdrLen > 20 && clampMss(b, m, max, partial)) c.count(Counter.MssClamped);
}
