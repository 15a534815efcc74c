// The tunnel keys a worker holds (SPEC §5.4): its cluster's key, and root's overlay key once the
// cluster hands it on. Both are accepted; the overlay key is used for sending as soon as it is known,
// so workers of other clusters (which share only that key with us) can authenticate our datagrams.
// The codec keeps the options object it is given and reads `keys` and `keyId` on every datagram, so
// a key learned while the datapath runs takes effect without rebuilding it.
import type { TunnelCodecOptions } from '../../../netstack/tunnel.ts';
import type { TunnelKey } from '../../protocol/tunnel-identity.ts';

export type OverlayKeyOutcome = 'added' | 'unchanged' | 'same-id-as-cluster-key' | 'other-key-same-id';

export class TunnelKeyring {
  private readonly keys = new Map<number, Buffer>();
  private sending: number;

  constructor(readonly clusterKey: TunnelKey) {
    this.keys.set(clusterKey.key_id, Buffer.from(clusterKey.key, 'hex'));
    this.sending = clusterKey.key_id;
  }

  /** The key id datagrams are sent with. */
  get sendKeyId(): number {
    return this.sending;
  }

  acceptedKeyIds(): number[] {
    return [...this.keys.keys()].sort((a, b) => a - b);
  }

  /**
   * Adds root's overlay key and sends with it from now on. Refused (nothing changes) when it would
   * shadow the cluster key, or replace another key under the same id: the codec caches a cipher
   * context per key id, so that needs a new codec (a worker restart).
   */
  setOverlay(k: TunnelKey): OverlayKeyOutcome {
    if (k.key_id === this.clusterKey.key_id) return 'same-id-as-cluster-key';
    const key = Buffer.from(k.key, 'hex');
    const had = this.keys.get(k.key_id);
    if (had && !had.equals(key)) return 'other-key-same-id';
    this.keys.set(k.key_id, key);
    const was = this.sending;
    this.sending = k.key_id;
    return had && was === k.key_id ? 'unchanged' : 'added';
  }

  /** Options for a TunnelCodec that follow this keyring while the codec runs. */
  codecOptions(o: Omit<TunnelCodecOptions, 'keys' | 'keyId' | 'encrypt'>): TunnelCodecOptions {
    const sending = (): number => this.sending;
    return {
      ...o,
      keys: this.keys,
      encrypt: this.clusterKey.encrypt,
      get keyId(): number {
        return sending();
      },
    };
  }
}
