// The live model: applications and their services, kept current by root's event feed. A change to an
// instance refetches only its service; a catalog change refetches the list; a cluster event the
// clusters. Reconnecting refetches everything (events during the gap are lost).
import { createContext, type ComponentChildren } from 'preact';
import { useContext, useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { call, stream, type Session } from './api.ts';
import type { Application, Cluster, Service } from './types.ts';

export interface Live {
  session: Session;
  connected: boolean;
  apps: Application[] | null;
  services: Map<string, Service>;
  clusters: Cluster[] | null;
  error: string;
  /** Runs an API call with the session's token. */
  api: <T>(method: string, path: string, body?: unknown) => Promise<T>;
  refresh: () => void;
  /** Announced to screen readers (and shown briefly). */
  announce: (message: string) => void;
  message: string;
}

const LiveContext = createContext<Live | null>(null);

export function useLive(): Live {
  const v = useContext(LiveContext);
  if (!v) throw new Error('useLive outside LiveProvider');
  return v;
}

export function LiveProvider({ session, children }: { session: Session; children: ComponentChildren }) {
  const [connected, setConnected] = useState(false);
  const [apps, setApps] = useState<Application[] | null>(null);
  const [services, setServices] = useState<Map<string, Service>>(new Map());
  const [clusters, setClusters] = useState<Cluster[] | null>(null);
  const [error, setError] = useState('');
  const [message, setMessage] = useState('');
  const pending = useRef(new Map<string, ReturnType<typeof setTimeout>>());
  const api = useMemo(() => <T,>(method: string, path: string, body?: unknown) => call<T>(session.token, method, path, body), [session.token]);

  // Bursts of events (a deploy makes several per instance) become one fetch per key.
  const soon = (key: string, fn: () => Promise<void>, ms = 150) => {
    if (pending.current.has(key)) return;
    pending.current.set(key, setTimeout(() => {
      pending.current.delete(key);
      fn().catch((e: Error) => setError(e.message));
    }, ms));
  };

  const loadService = async (id: string) => {
    try {
      const s = await api<Service>('GET', `/service/${encodeURIComponent(id)}`);
      setServices((m) => new Map(m).set(id, s));
    } catch (e) {
      if ((e as { status?: number }).status === 404) {
        setServices((m) => {
          const n = new Map(m);
          n.delete(id);
          return n;
        });
      } else throw e;
    }
  };
  const loadAll = async () => {
    const list = await api<Application[]>('GET', '/applications');
    const all = await Promise.all(list.map((a) => api<Service[]>('GET', `/services/${encodeURIComponent(a.applicationID)}`)));
    setApps(list);
    setServices(new Map(all.flat().map((s) => [s.microserviceID, s])));
    setError('');
  };
  const loadClusters = async () => setClusters(await api<Cluster[]>('GET', '/clusters'));

  useEffect(() => {
    const h = stream(session.token, '/events', (event, data) => {
      const d = data as { service_id?: string };
      if (event === 'instance' && d.service_id) soon(`svc:${d.service_id}`, () => loadService(d.service_id as string));
      else if (event === 'catalog') soon('all', loadAll);
      else if (event === 'cluster') soon('clusters', loadClusters, 1000);
    }, (open) => {
      setConnected(open);
      if (open) {
        soon('all', loadAll, 0);
        soon('clusters', loadClusters, 0);
      }
    });
    return () => {
      h.close();
      for (const t of pending.current.values()) clearTimeout(t);
    };
  }, [session.token]);

  const value: Live = {
    session, connected, apps, services, clusters, error, api, message,
    refresh: () => soon('all', loadAll, 0),
    announce: (m) => setMessage(m),
  };
  return (
    <LiveContext.Provider value={value}>
      {children}
      <div class="sr-live" role="status" aria-live="polite">{message}</div>
    </LiveContext.Provider>
  );
}
