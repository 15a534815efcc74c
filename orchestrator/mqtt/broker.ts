// The embedded MQTT 3.1.1 broker (aedes) with Canopy's credentials and per-worker ACL. A worker's
// client id must be its username, so no worker can take over another's session; a forbidden publish
// closes the offender's connection (aedes' behaviour), a forbidden subscription is refused (SUBACK 128).
import { createServer, type Server, type AddressInfo } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { createRequire } from 'node:module';
import type { ServerTls } from '../protocol/tls.ts';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import { CLUSTER_USER, type CredentialStore } from './credentials.ts';
import { workerMayPublish, workerMaySubscribe } from './topics.ts';
import type { Logger } from '../protocol/log.ts';

export interface BrokerOptions {
  host: string;
  port: number;
  credentials: CredentialStore;
  log: Logger;
  /** mqtts only (SPEC §10): a plain MQTT connection fails the handshake. */
  tls?: ServerTls;
}

// aedes writes packets with mqtt-packet, whose default keeps a table of 65 536 two-byte Buffers, one
// per packet id: 6 MB of the cluster's heap (issue 16). mqtt.js clients turn it off with `writeCache:
// false` (client.ts); aedes has no such option, so it is turned off on the copy aedes loads, before
// the broker writes its first packet.
(createRequire(import.meta.resolve('aedes'))('mqtt-packet') as { writeToStream: { cacheNumbers: boolean } }).writeToStream.cacheNumbers = false;

function authError(message: string, code: 4 | 5): AuthenticateError {
  return Object.assign(new Error(message), { returnCode: code }) as AuthenticateError;
}

export class EmbeddedBroker {
  private readonly users = new WeakMap<Client, string>();
  /** Connected clients by username, so a revoked worker's session can be closed at once. */
  private readonly byUser = new Map<string, Set<Client>>();
  private denied = 0;

  private constructor(
    private readonly aedes: Aedes,
    private readonly server: Server,
    private readonly log: Logger,
    private readonly tls: boolean,
  ) {}

  static async start(o: BrokerOptions): Promise<EmbeddedBroker> {
    // A higher mq concurrency keeps short bursts from queueing inside aedes at all.
    const aedes = new Aedes({ drainTimeout: 10_000, maxClientsIdLength: 64, connectTimeout: 10_000, concurrency: 1000 });
    await aedes.listen();
    const server: Server = o.tls ? createTlsServer({ cert: o.tls.cert, key: o.tls.key }, aedes.handle) : createServer(aedes.handle);
    // A client that does not speak TLS (or does not trust the CA) is dropped at the handshake: logged, not fatal.
    if (o.tls) server.on('tlsClientError', (err) => o.log.debug('mqtt tls handshake failed', { error: err.message }));
    const broker = new EmbeddedBroker(aedes, server, o.log, Boolean(o.tls));
    aedes.authenticate = (client, username, password, done) => {
      if (!o.credentials.verify(username, password)) {
        broker.log.warn('mqtt auth refused', { client: client.id, username: username ?? null });
        done(authError('bad username or password', 4), false);
        return;
      }
      const u = username!;
      const idOk = u === CLUSTER_USER ? client.id.startsWith(CLUSTER_USER) : client.id === u;
      if (!idOk) {
        broker.log.warn('mqtt client id must equal the username', { client: client.id, username: u });
        done(authError('client id must equal username', 5), false);
        return;
      }
      broker.users.set(client, u);
      let set = broker.byUser.get(u);
      if (!set) broker.byUser.set(u, (set = new Set()));
      set.add(client);
      done(null, true);
    };
    aedes.authorizePublish = (client, packet, callback) => {
      const u = client ? broker.users.get(client) : undefined;
      if (u === CLUSTER_USER && !packet.topic.startsWith('$SYS/')) return callback(null);
      if (u !== undefined && workerMayPublish(u, packet.topic)) return callback(null);
      broker.denied++;
      broker.log.warn('mqtt publish denied', { username: u ?? null, topic: packet.topic });
      callback(new Error(`publish to ${packet.topic} not allowed`));
    };
    aedes.authorizeSubscribe = (client, sub, callback) => {
      const u = broker.users.get(client);
      if (u === CLUSTER_USER || (u !== undefined && workerMaySubscribe(u, sub.topic))) return callback(null, sub);
      broker.denied++;
      broker.log.warn('mqtt subscribe denied', { username: u ?? null, topic: sub.topic });
      callback(null, null);
    };
    aedes.on('clientDisconnect', (client) => {
      const u = broker.users.get(client);
      const set = u === undefined ? undefined : broker.byUser.get(u);
      set?.delete(client);
      if (u !== undefined && set?.size === 0) broker.byUser.delete(u);
    });
    aedes.on('clientError', (client, err) => broker.log.debug('mqtt client error', { client: client.id, error: err.message }));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, o.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return broker;
  }

  /** Closes every session of `username` now (a revoked worker); returns how many there were. */
  disconnect(username: string): number {
    const set = this.byUser.get(username);
    if (!set) return 0;
    this.byUser.delete(username);
    for (const c of set) c.close();
    return set.size;
  }

  /** The broker itself, for the cluster's in-process attachment (bus.ts). */
  get instance(): Aedes {
    return this.aedes;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get url(): string {
    const a = this.server.address() as AddressInfo;
    return `${this.tls ? 'mqtts' : 'mqtt'}://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }

  get stats(): { clients: number; denied: number } {
    return { clients: this.aedes.connectedClients, denied: this.denied };
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      // Connections aedes already closed may linger in the server's list for a tick.
      setTimeout(resolve, 500).unref();
    });
  }
}
