// AES-256-GCM and ChaCha20-Poly1305 through OpenSSL's EVP interface, called with koffi on raw
// pointers: one cipher context per direction, re-initialised with a new IV per batch. node:crypto
// builds a new object per call (~3.3 µs); this costs ~0.4 µs for a small packet and half the time
// of node:crypto's GHASH over 64 kB on this machine (perf/RESULTS.md). The OpenSSL used is the one
// inside the node binary (its symbols are exported for addons), so no second libcrypto is loaded.
//
// The AEAD interface is declared here, where its fast implementation is, so that native/ imports
// nothing above it; netstack/aead.ts re-exports it with the node:crypto implementation and picks one.
import koffi from 'koffi';
import { addressOf, isPinned as pinned } from './memory.ts';

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

export const TAG_BYTES = 16;

type Fn = (...args: number[]) => number;
interface Evp {
  ctxNew: () => number;
  ctxFree: (ctx: number) => void;
  gcm: () => number;
  chacha: () => number;
  encInit: Fn;
  encUpdate: Fn;
  encFinal: Fn;
  decInit: Fn;
  decUpdate: Fn;
  decFinal: Fn;
  ctrl: Fn;
}

let evp: Evp | null | undefined;

function load(): Evp | null {
  if (evp !== undefined) return evp;
  try {
    const lib = koffi.load(null as unknown as string);
    evp = {
      ctxNew: lib.func('uintptr_t EVP_CIPHER_CTX_new()') as () => number,
      ctxFree: lib.func('void EVP_CIPHER_CTX_free(uintptr_t ctx)') as (ctx: number) => void,
      gcm: lib.func('uintptr_t EVP_aes_256_gcm()') as () => number,
      chacha: lib.func('uintptr_t EVP_chacha20_poly1305()') as () => number,
      encInit: lib.func('int EVP_EncryptInit_ex(uintptr_t ctx, uintptr_t cipher, uintptr_t impl, uintptr_t key, uintptr_t iv)') as Fn,
      encUpdate: lib.func('int EVP_EncryptUpdate(uintptr_t ctx, uintptr_t out, uintptr_t outl, uintptr_t in, int inl)') as Fn,
      encFinal: lib.func('int EVP_EncryptFinal_ex(uintptr_t ctx, uintptr_t out, uintptr_t outl)') as Fn,
      decInit: lib.func('int EVP_DecryptInit_ex(uintptr_t ctx, uintptr_t cipher, uintptr_t impl, uintptr_t key, uintptr_t iv)') as Fn,
      decUpdate: lib.func('int EVP_DecryptUpdate(uintptr_t ctx, uintptr_t out, uintptr_t outl, uintptr_t in, int inl)') as Fn,
      decFinal: lib.func('int EVP_DecryptFinal_ex(uintptr_t ctx, uintptr_t out, uintptr_t outl)') as Fn,
      ctrl: lib.func('int EVP_CIPHER_CTX_ctrl(uintptr_t ctx, int type, int arg, uintptr_t ptr)') as Fn,
    };
  } catch {
    evp = null;
  }
  return evp;
}

/** True when OpenSSL's EVP functions can be called from this process. */
export function evpAvailable(): boolean {
  return load() !== null;
}

const EVP_CTRL_AEAD_GET_TAG = 0x10;
const EVP_CTRL_AEAD_SET_TAG = 0x11;

export class EvpAead implements BatchAead {
  private readonly e: Evp;
  private enc: number;
  private dec: number;
  // Key, output-length slot and scratch for the final call; kept referenced for the raw pointers.
  private readonly mem = new Uint8Array(256);
  private readonly memAddr: number;
  private readonly fallback: BatchAead;

  /** `fallback` serves calls on buffers that may move (not pinned: no raw pointer can be taken). */
  constructor(name: AeadName, key: Uint8Array, fallback: BatchAead) {
    const e = load();
    if (!e) throw new Error('OpenSSL EVP functions are not reachable from this process');
    if (key.length !== 32) throw new Error(`AEAD key must be 32 bytes, got ${key.length}`);
    this.e = e;
    this.fallback = fallback;
    this.mem.set(key, 0);
    this.memAddr = addressOf(this.mem);
    const cipher = name === 'aes-256-gcm' ? e.gcm() : e.chacha();
    this.enc = e.ctxNew();
    this.dec = e.ctxNew();
    if (!this.enc || !this.dec) throw new Error('EVP_CIPHER_CTX_new failed');
    if (e.encInit(this.enc, cipher, 0, this.memAddr, 0) !== 1 || e.decInit(this.dec, cipher, 0, this.memAddr, 0) !== 1) {
      this.close();
      throw new Error(`EVP init of ${name} failed`);
    }
    this.mem.fill(0, 0, 32); // the contexts hold their own key schedule
  }

  seal(iv: Uint8Array, aad: Uint8Array, buf: Uint8Array, off: number, len: number, encrypt: boolean,
    out: Uint8Array, outOff: number, tag: Uint8Array, tagOff: number): void {
    if (!pinned(iv) || !pinned(aad) || !pinned(buf) || !pinned(out) || !pinned(tag)) {
      this.fallback.seal(iv, aad, buf, off, len, encrypt, out, outOff, tag, tagOff);
      return;
    }
    const e = this.e;
    const c = this.enc;
    const outl = this.memAddr + 64;
    let ok = e.encInit(c, 0, 0, 0, addressOf(iv)) === 1
      && e.encUpdate(c, 0, outl, addressOf(aad), aad.length) === 1;
    if (len > 0) ok = ok && e.encUpdate(c, encrypt ? addressOf(out, outOff) : 0, outl, addressOf(buf, off), len) === 1;
    ok = ok && e.encFinal(c, this.memAddr + 128, outl) === 1
      && e.ctrl(c, EVP_CTRL_AEAD_GET_TAG, TAG_BYTES, addressOf(tag, tagOff)) === 1;
    if (!ok) throw new Error('EVP seal failed');
  }

  open(iv: Uint8Array, aad: Uint8Array, buf: Uint8Array, off: number, len: number, encrypted: boolean,
    tag: Uint8Array, tagOff: number): boolean {
    if (!pinned(iv) || !pinned(aad) || !pinned(buf) || !pinned(tag)) {
      return this.fallback.open(iv, aad, buf, off, len, encrypted, tag, tagOff);
    }
    const e = this.e;
    const c = this.dec;
    const outl = this.memAddr + 64;
    if (e.decInit(c, 0, 0, 0, addressOf(iv)) !== 1) return false;
    if (e.decUpdate(c, 0, outl, addressOf(aad), aad.length) !== 1) return false;
    if (len > 0) {
      const p = addressOf(buf, off);
      // In place: GCM and ChaCha20 are stream modes, output may alias input exactly.
      if (e.decUpdate(c, encrypted ? p : 0, outl, p, len) !== 1) return false;
    }
    if (e.ctrl(c, EVP_CTRL_AEAD_SET_TAG, TAG_BYTES, addressOf(tag, tagOff)) !== 1) return false;
    return e.decFinal(c, this.memAddr + 128, outl) === 1;
  }

  close(): void {
    this.fallback.close();
    if (this.enc) this.e.ctxFree(this.enc);
    if (this.dec) this.e.ctxFree(this.dec);
    this.enc = 0;
    this.dec = 0;
  }
}
