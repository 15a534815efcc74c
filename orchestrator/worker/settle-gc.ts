// Gives memory back after a burst of instance changes (issue 16: RSS after 1 000 deploy/undeploy
// cycles within 10 % of idle). Each deploy or undeploy allocates ~1–2 MB in the daemon (child
// processes for `ip`, cgroups, MQTT messages); what survives a scavenge while an `ip` runs is promoted,
// and the old generation grows its limit instead of collecting. An idle worker allocates too slowly to
// reach that limit again, and V8's memory reducer only starts after a full GC, so without one the
// garbage of a burst stays resident for hours. One full GC once the worker has been quiet for a while
// collects it and lets the memory reducer return the empty pages.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export interface SettleGc {
  /** An instance changed: collect once nothing has changed for `quietMs`. */
  touch(): void;
  close(): void;
}

let collect: (() => void) | undefined;

/** V8's full collection, exposed to this isolate on first use (as `--expose-gc` would). */
function fullGc(): () => void {
  if (!collect) {
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as () => void;
  }
  return collect;
}

export function settleGc(o: { quietMs: number; onCollect?: (ms: number) => void }): SettleGc {
  let timer: NodeJS.Timeout | undefined;
  return {
    touch(): void {
      if (timer) timer.refresh();
      else {
        timer = setTimeout(() => {
          timer = undefined;
          const t0 = performance.now();
          fullGc()();
          o.onCollect?.(performance.now() - t0);
        }, o.quietMs);
        timer.unref();
      }
    },
    close(): void {
      clearTimeout(timer);
      timer = undefined;
    },
  };
}
