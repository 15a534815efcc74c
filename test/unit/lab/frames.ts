// Hand-built Ethernet frames for the relay's unit tests.

function eth(type: number, payload: number[]): Uint8Array {
  const f = new Uint8Array(14 + payload.length);
  f.fill(0xaa, 0, 6);
  f.fill(0xbb, 6, 12);
  f[12] = type >> 8;
  f[13] = type & 0xff;
  f.set(payload, 14);
  return f;
}

export function ipv4Frame(src: number[], dst: number[], proto = 17): Uint8Array {
  const h = new Array<number>(28).fill(0);
  h[0] = 0x45;
  h[9] = proto;
  h.splice(12, 4, ...src);
  h.splice(16, 4, ...dst);
  return eth(0x0800, h);
}

export function ipv6Frame(src: number[], dst: number[], next = 17, icmpType = 0): Uint8Array {
  const h = new Array<number>(48).fill(0);
  h[0] = 0x60;
  h[6] = next;
  h.splice(8, 16, ...src);
  h.splice(24, 16, ...dst);
  h[40] = icmpType;
  return eth(0x86dd, h);
}

export function arpFrame(): Uint8Array {
  return eth(0x0806, new Array<number>(28).fill(0));
}

export function v6(last: number): number[] {
  return [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last];
}
