// How the cluster itself publishes and receives. With the embedded broker it attaches in-process
// (aedes' server-side subscribe/publish): no socket between the cluster and its own broker, so a busy
// cluster never becomes a slow subscriber whose backlog the broker must queue. (Measured: with 10 000
// workers over a loopback client, a burst let aedes' queue grow until its release recursion overflowed
// the stack.) With an external broker it is an ordinary MQTT client.
import mqtt, { type MqttClient } from 'mqtt';
import type { Aedes } from 'aedes';
import { mqttOptions } from './client.ts';
import type { Credentials } from './credentials.ts';

export interface ClusterBus {
  /** Delivery is at-least-once (QoS 1) on an external broker; in-process it cannot be lost. */
  publish(topic: string, payload: string, retain?: boolean): void;
  subscribe(filters: readonly string[], onMessage: (topic: string, payload: Buffer) => void): Promise<void>;
  /** Called with false when the link to the broker is lost, true when it is back. */
  onLink(listener: (up: boolean) => void): void;
  close(): Promise<void>;
}

export class InProcessBus implements ClusterBus {
  private readonly subs: Array<{ topic: string; fn: (packet: { topic: string; payload: Buffer | string }, cb: () => void) => void }> = [];

  constructor(private readonly aedes: Aedes, private readonly onError: (e: Error) => void) {}

  publish(topic: string, payload: string, retain = false): void {
    this.aedes.publish({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain, dup: false }, (err) => {
      if (err) this.onError(err);
    });
  }

  async subscribe(filters: readonly string[], onMessage: (topic: string, payload: Buffer) => void): Promise<void> {
    for (const topic of filters) {
      const fn = (packet: { topic: string; payload: Buffer | string }, cb: () => void): void => {
        try {
          onMessage(packet.topic, typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload);
        } finally {
          cb();
        }
      };
      this.subs.push({ topic, fn });
      await new Promise<void>((resolve) => this.aedes.subscribe(topic, fn, () => resolve()));
    }
  }

  onLink(_listener: (up: boolean) => void): void {
    // In-process: the link cannot go down.
  }

  async close(): Promise<void> {
    for (const s of this.subs.splice(0)) await new Promise<void>((resolve) => this.aedes.unsubscribe(s.topic, s.fn, () => resolve()));
  }
}

export class ClientBus implements ClusterBus {
  private readonly client: MqttClient;
  private readonly links: Array<(up: boolean) => void> = [];
  private filters: readonly string[] = [];

  private constructor(client: MqttClient) {
    this.client = client;
    client.on('connect', () => {
      if (this.filters.length > 0) client.subscribe([...this.filters], { qos: 1 });
      for (const l of this.links) l(true);
    });
    client.on('offline', () => {
      for (const l of this.links) l(false);
    });
  }

  /** Connects, retrying (an external broker may still be loading its password file) up to `timeoutMs`. */
  static async connect(url: string, creds: Credentials, clientId: string, onError: (e: Error) => void, timeoutMs = 15_000): Promise<ClientBus> {
    const client = mqtt.connect(url, mqttOptions(creds, { clientId, reconnectPeriod: 500 }));
    client.on('error', onError);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        client.end(true);
        reject(new Error(`cannot connect to the MQTT broker at ${url}`));
      }, timeoutMs);
      client.once('connect', () => {
        clearTimeout(t);
        resolve();
      });
    });
    return new ClientBus(client);
  }

  publish(topic: string, payload: string, retain = false): void {
    this.client.publish(topic, payload, { qos: 1, retain });
  }

  async subscribe(filters: readonly string[], onMessage: (topic: string, payload: Buffer) => void): Promise<void> {
    this.filters = [...this.filters, ...filters];
    this.client.on('message', onMessage);
    await this.client.subscribeAsync([...filters], { qos: 1 });
  }

  onLink(listener: (up: boolean) => void): void {
    this.links.push(listener);
  }

  async close(): Promise<void> {
    await this.client.endAsync(true).catch(() => {});
  }
}
