// The AEAD a tunnel batch is sealed with, behind a small interface so the datapath can use OpenSSL
// through koffi (native/evp.ts: one reusable context, raw pointers, ~0.4 µs per small packet) and
// tests or odd platforms can use node:crypto (a new object per call, ~3.3 µs fixed cost).
import { createCipheriv, createDecipheriv, type CipherGCMTypes } from 'node:crypto';

export type AeadName = 'aes-256-gcm' | 'chacha20-poly1305';

export interface BatchAead {
  /**
   * Tags aad ‖ payload. With `encrypt`, payload buf[off..off+len) is encrypted into out[outOff..]
   * and only aad is authenticated as associated data; without, the payload is associated data too.
   * The 16-byte tag goes to tag[tagOff..].
   */
  seal(iv: Uint8Array, aad: Uint8Array, buf: Uint8Array, off: number, len: number, encrypt: boolean,
    out: Uint8Array, outOff: number, tag: Uint8Array, tagOff: number): void;
  /** Checks the tag; with `encrypted`, decrypts the payload in place. False when it does not verify. */
  open(iv: Uint8Array, aad: Uint8Array, buf: Uint8Array, off: number, len: number, encrypted: boolean,
    tag: Uint8Array, tagOff: number): boolean;
  close(): void;
}

export type AeadFactory = (name: AeadName, key: Uint8Array) => BatchAead;

export const TAG_BYTES = 16;

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
