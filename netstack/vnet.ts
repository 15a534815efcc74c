// struct virtio_net_hdr, the 10-byte prefix of every packet on a TUN opened with IFF_VNET_HDR.
// Fields are little-endian (host order on the machines we run on).

export const VNET_HDR_LEN = 10;
export const VNET_F_NEEDS_CSUM = 1;
export const VNET_F_DATA_VALID = 2;
export const GSO_NONE = 0;
export const GSO_TCPV4 = 1;
export const GSO_UDP = 3;
export const GSO_TCPV6 = 4;
export const GSO_UDP_L4 = 5;
export const GSO_ECN = 0x80;

export function vnetFlags(b: Uint8Array, off: number): number { return b[off]; }
export function vnetGsoType(b: Uint8Array, off: number): number { return b[off + 1]; }
export function vnetHdrLen(b: Uint8Array, off: number): number { return b[off + 2] | (b[off + 3] << 8); }
export function vnetGsoSize(b: Uint8Array, off: number): number { return b[off + 4] | (b[off + 5] << 8); }
export function vnetCsumStart(b: Uint8Array, off: number): number { return b[off + 6] | (b[off + 7] << 8); }
export function vnetCsumOffset(b: Uint8Array, off: number): number { return b[off + 8] | (b[off + 9] << 8); }

export function writeVnet(b: Uint8Array, off: number, flags: number, gsoType: number, hdrLen: number,
  gsoSize: number, csumStart: number, csumOffset: number): void {
  b[off] = flags;
  b[off + 1] = gsoType;
  b[off + 2] = hdrLen & 0xff; b[off + 3] = hdrLen >>> 8;
  b[off + 4] = gsoSize & 0xff; b[off + 5] = gsoSize >>> 8;
  b[off + 6] = csumStart & 0xff; b[off + 7] = csumStart >>> 8;
  b[off + 8] = csumOffset & 0xff; b[off + 9] = csumOffset >>> 8;
}

/** A header saying "nothing to do": complete packet, full checksums. */
export function writeVnetNone(b: Uint8Array, off: number): void {
  b.fill(0, off, off + VNET_HDR_LEN);
}
