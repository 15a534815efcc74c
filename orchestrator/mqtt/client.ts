// MQTT client settings shared by the cluster and the workers: MQTT 3.1.1 (what aedes speaks), client
// id = username (the brokers enforce it), automatic reconnection, and QoS 1 messages queued while
// the connection is down so that status reports survive a broker outage.
import mqtt, { type MqttClient, type IClientOptions } from 'mqtt';
import type { Credentials } from './credentials.ts';
import { mqttTls } from '../protocol/tls.ts';

export interface ConnectOptions {
  clientId?: string;
  /** ms between reconnect attempts; 0 disables reconnection. */
  reconnectPeriod?: number;
  connectTimeout?: number;
  keepalive?: number;
}

export function mqttOptions(creds: Credentials, o: ConnectOptions = {}): IClientOptions {
  return {
    protocolVersion: 4,
    clientId: o.clientId ?? creds.username,
    username: creds.username,
    password: creds.password,
    clean: true,
    reconnectPeriod: o.reconnectPeriod ?? 1000,
    connectTimeout: o.connectTimeout ?? 5000,
    keepalive: o.keepalive ?? 10,
    queueQoSZero: false,
    resubscribe: true,
    // mqtt-packet's default keeps a table of 65 536 two-byte Buffers, one per packet id: 6 MB of every
    // daemon's heap, for a worker that sends a few packets a second (issue 16).
    writeCache: false,
    // mqtts:// is verified against the pinned CA only (protocol/tls.ts).
    ...mqttTls(),
  };
}

/** Connects and resolves once the first CONNACK arrives; rejects on refusal or timeout. */
export function connectMqtt(url: string, creds: Credentials, o: ConnectOptions = {}): Promise<MqttClient> {
  const client = mqtt.connect(url, mqttOptions(creds, o));
  return new Promise((resolve, reject) => {
    const fail = (err: Error): void => {
      client.removeListener('connect', ok);
      client.end(true);
      reject(err);
    };
    const ok = (): void => {
      client.removeListener('error', fail);
      resolve(client);
    };
    client.once('connect', ok);
    client.once('error', fail);
  });
}
