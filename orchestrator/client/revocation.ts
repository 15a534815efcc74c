// How `canopy worker revoke` and `canopy cluster revoke` report root's rotated overlay key.
import type { OverlayKeyNews } from './root-client.ts';

/** `; overlay key 129 sent to c1, c2` and the clusters the push missed (they get it with their next report). */
export function keyLine(k: OverlayKeyNews | undefined): string {
  if (!k) return '';
  const told = k.clusters_told.length ? ` sent to ${k.clusters_told.join(', ')}` : ' (no other active cluster)';
  const missed = k.clusters_missed.length
    ? `; not reached: ${k.clusters_missed.map((m) => `${m.cluster} (${m.error})`).join(', ')} (they get it with their next report)`
    : '';
  return `\nnew overlay key ${k.key_id}${told}${missed}`;
}
