// The AEAD a tunnel batch is sealed with, behind a small interface so the datapath can use OpenSSL
// through koffi (native/evp.ts: one reusable context, raw pointers, ~0.4 µs per small packet) and
// tests or odd platforms can use node:crypto (a new object per call, ~3.3 µs fixed cost).
import { createCipheriv, createDecipheriv, type CipherGCMTypes } from 'node:crypto';
import { EvpAead, evpAvailable, TAG_BYTES, type AeadName, type BatchAead } from '../native/evp.ts';

export { TAG_BYTES, type AeadName, type BatchAead };

export type AeadFactory = (name: AeadName, key: Uint8Array) => BatchAead;

export class NodeAead implements BatchAead {
  private readonly name: CipherGCMTypes;
  private readonly key: Uint8Array;

  constructor(name: AeadName, key: Uint8Array) {
    this.name = name as CipherGCMTypes;
    this.key = key;
  }

  seal(iv: Uint8Array, aad: Uint8Array, buf: Uint8Array, off: number, len: number, encrypt: boolean,
    out: Uint8Array, outOff: number, tag: Uint8Array, tagOff: number): void {
    const c = createCipheriv(this.name, this.key, iv, { authTagLength: TAG_BYTES });
    c.setAAD(aad);
    const payload = buf.subarray(off, off + len);
    if (encrypt) out.set(c.update(payload), outOff);
    else c.setAAD(payload);
    c.final();
    tag.set(c.getAuthTag(), tagOff);
  }

  open(iv: Uint8Array, aad: Uint8Array, buf: Uint8Array, off: number, len: number, encrypted: boolean,
    tag: Uint8Array, tagOff: number): boolean {
    const d = createDecipheriv(this.name, this.key, iv, { authTagLength: TAG_BYTES });
    d.setAAD(aad);
    const payload = buf.subarray(off, off + len);
    d.setAuthTag(tag.subarray(tagOff, tagOff + TAG_BYTES));
    let plain: Uint8Array | undefined;
    try {
      if (encrypted) plain = d.update(payload);
      else d.setAAD(payload);
      d.final();
    } catch {
      return false;
    }
    if (plain) payload.set(plain, 0);
    return true;
  }

  close(): void {}
}

export const nodeAead: AeadFactory = (name, key) => new NodeAead(name, key);

/** OpenSSL EVP with node:crypto for buffers that cannot be pinned; throws when EVP is unreachable. */
export const evpAead: AeadFactory = (name, key) => new EvpAead(name, key, new NodeAead(name, key));

/** An AeadFactory for the codec: EVP when reachable, node:crypto otherwise. */
export const bestAead: AeadFactory = (name, key) => (evpAvailable() ? evpAead(name, key) : new NodeAead(name, key));
