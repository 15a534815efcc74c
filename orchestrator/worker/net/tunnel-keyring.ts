// The tunnel keys a worker holds (SPEC §5.4): its cluster's key, and root's overlay key once the
// cluster hands it on. Both are accepted; the overlay key is used for sending as soon as it is known,
// so workers of other clusters (which share only that key with us) can authenticate our datagrams.
// The codec keeps the options object it is given and reads `keys`, `keyId` and `retired` on every
// datagram, so a key learned while the datapath runs takes effect without rebuilding it.
//
// Rotation (after a worker is revoked, docs/decisions.md "Tunnel key rotation on revoke"): a new
// cluster or overlay key replaces the one it succeeds at once. The old key id is retired: its
// datagrams are dropped and counted as `retired_key`, whoever claims to send them, because the old
// key is exactly what the revoked worker still holds.
import type { TunnelCodecOptions } from '../../../netstack/tunnel.ts';
import type { TunnelKey } from '../../protocol/tunnel-identity.ts';

export type KeyOutcome = 'added' | 'rotated' | 'unchanged' | 'same-id-as-other-key';

export class TunnelKeyring {
  private readonly keys = new Map<number, Buffer>();
  private readonly retired = new Set<number>();
  private cluster: TunnelKey;
  private overlay: TunnelKey | undefined;

  constructor(clusterKey: TunnelKey) {
    this.cluster = clusterKey;
    this.keys.set(clusterKey.key_id, Buffer.from(clusterKey.key, 'hex'));
  }

  get clusterKey(): TunnelKey {
    return this.cluster;
  }

  /** The key id datagrams are sent with: the overlay key once known, else the cluster key. */
  get sendKeyId(): number {
    return (this.overlay ?? this.cluster).key_id;
  }

  acceptedKeyIds(): number[] {
    return [...this.keys.keys()].sort((a, b) => a - b);
  }

  retiredKeyIds(): number[] {
    return [...this.retired].sort((a, b) => a - b);
  }

  /** Root's overlay key, first or rotated: sent with from now on; the one it replaces is retired. */
  setOverlay(k: TunnelKey): KeyOutcome {
    if (k.key_id === this.cluster.key_id) return 'same-id-as-other-key';
    return this.replace(this.overlay, k, (n) => {
      this.overlay = n;
    });
  }

  /** The cluster's key, rotated: accepted (and sent with until there is an overlay key); the old one retired. */
  setCluster(k: TunnelKey): KeyOutcome {
    if (this.overlay && k.key_id === this.overlay.key_id) return 'same-id-as-other-key';
    return this.replace(this.cluster, k, (n) => {
      this.cluster = n;
    });
  }

  private replace(old: TunnelKey | undefined, k: TunnelKey, set: (k: TunnelKey) => void): KeyOutcome {
    if (old && old.key_id === k.key_id && old.key === k.key) return 'unchanged';
    // The new key goes in before the send id moves to it, and the old one out after: the codec never
    // sees a send id without a key.
    this.keys.set(k.key_id, Buffer.from(k.key, 'hex'));
    this.retired.delete(k.key_id);
    set(k);
    if (!old) return 'added';
    if (old.key_id !== k.key_id) {
      this.keys.delete(old.key_id);
      this.retired.add(old.key_id);
    }
    return 'rotated';
  }

  /** Options for a TunnelCodec that follow this keyring while the codec runs. */
  codecOptions(o: Omit<TunnelCodecOptions, 'keys' | 'keyId' | 'encrypt' | 'retired'>): TunnelCodecOptions {
    const sending = (): number => this.sendKeyId;
    return {
      ...o,
      keys: this.keys,
      retired: this.retired,
      encrypt: this.cluster.encrypt,
      get keyId(): number {
        return sending();
      },
    };
  }
}
