// Root's change feed for the dashboard's live view (GET /api/v1/events). Every change a user can see
// passes through the store, so the feed is taken there: the store's writing methods are wrapped once,
// at start, and each write is announced after it is made. The domain code (instances, catalog,
// clusters) stays unaware of the dashboard, and no change can be missed by a code path that forgot
// to emit. Writes inside a transaction are announced before it commits; a browser's refetch they
// trigger goes through the network and waits for the commit (SQLite: the store's lock; PostgreSQL:
// it reads committed data, and a later event follows). Events made by other root replicas arrive
// through the database (notify.ts).
import { EventEmitter } from 'node:events';
import type { InstanceRecord, RootStore } from './store.ts';

export type RootEvent =
  /** An instance was created or changed state or reason. `owner` is the service owner's user id. */
  | { type: 'instance'; owner: string | null; service_id: string; instance_n: number; state: string; reason: string; ts: number }
  /** Applications or services were added, changed or removed. */
  | { type: 'catalog'; owner: string | null; ts: number }
  /** A cluster registered or reported. */
  | { type: 'cluster'; cluster_id: string; ts: number };

export class RootEvents extends EventEmitter<{ event: [RootEvent] }> {
  /** An event another root replica made (set by watchStore). */
  fromPeer: (e: RootEvent) => Promise<void> = async () => undefined;

  constructor() {
    super();
    // Each open dashboard is one listener; dozens are normal.
    this.setMaxListeners(0);
  }
}

/**
 * Wraps `store`'s writing methods so that each write is announced on the returned feed, and passed
 * to `forward` (the other root replicas, replicas.ts) whether or not anyone here listens. An
 * instance event is forwarded without its owner, which a replica with subscribers looks up itself
 * (fromPeer).
 */
export function watchStore(store: RootStore, forward: (e: RootEvent) => void = () => undefined): RootEvents {
  const events = new RootEvents();
  const instance = async (i: InstanceRecord): Promise<void> => {
    const e: RootEvent = { type: 'instance', owner: null, service_id: i.service_id, instance_n: i.n, state: i.state, reason: i.reason, ts: Date.now() };
    forward(e);
    if (events.listenerCount('event') === 0) return;
    e.owner = (await store.service(i.service_id).catch(() => undefined))?.owner ?? null;
    events.emit('event', e);
  };
  events.fromPeer = async (e: RootEvent): Promise<void> => {
    if (events.listenerCount('event') === 0) return;
    if (e.type === 'instance' && e.owner === null) e.owner = (await store.service(e.service_id).catch(() => undefined))?.owner ?? null;
    events.emit('event', e);
  };
  const after = <K extends keyof RootStore>(name: K, announce: (...args: Parameters<Extract<RootStore[K], (...a: never[]) => unknown>>) => void | Promise<void>): void => {
    const original = (store[name] as (...a: unknown[]) => Promise<unknown>).bind(store);
    (store as unknown as Record<string, unknown>)[name] = async (...args: unknown[]) => {
      const result = await original(...args);
      // A conditional write that did not happen (compare and set, a claim that lost) changed nothing.
      if (result !== false) await announce(...(args as Parameters<Extract<RootStore[K], (...a: never[]) => unknown>>));
      return result;
    };
  };
  after('insertInstance', (i) => instance(i));
  after('updateInstance', (i) => instance(i));
  // The SQLite versions call the two above (announced there); PostgreSQL's write in one statement.
  if (store.kind === 'postgres') {
    after('createInstance', (i) => instance(i));
    after('claimAndCreateInstance', (i) => instance(i));
    after('recordTransition', (i) => instance(i));
  }
  const catalog = (owner: string | null): void => {
    const e: RootEvent = { type: 'catalog', owner, ts: Date.now() };
    forward(e);
    if (events.listenerCount('event') > 0) events.emit('event', e);
  };
  after('insertApplication', (a) => catalog(a.owner));
  after('updateApplication', (a) => catalog(a.owner));
  // Deletions: the record is gone by now, so the owner is unknown; every subscriber refetches its own view.
  after('deleteApplication', () => catalog(null));
  after('insertService', (s) => catalog(s.owner));
  after('updateService', (s) => catalog(s.owner));
  after('deleteService', () => catalog(null));
  const cluster = (id: string): void => {
    const e: RootEvent = { type: 'cluster', cluster_id: id, ts: Date.now() };
    forward(e);
    if (events.listenerCount('event') > 0) events.emit('event', e);
  };
  after('upsertCluster', (c) => cluster(c.id));
  after('touchCluster', (id) => cluster(id));
  return events;
}
