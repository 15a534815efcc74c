// The seam between the node engine and the net manager. The node engine creates an instance's
// network namespace and calls attach() before the instance's command starts, and detach() before it
// deletes the namespace. The net manager (bridge, veth, TUN, data plane, DNS) implements this later;
// until then NoNetwork leaves the namespace with loopback only.
import type { ServiceName } from '../mqtt/messages.ts';

export interface AttachRequest {
  /** Unique on this worker: "<service_id>-<instance_n>". */
  key: string;
  service_id: string;
  instance_n: number;
  name: ServiceName;
  /** Name under /run/netns (usable with `ip netns exec`). */
  netns: string;
  instance_ip?: string;
  instance_ip_v6?: string;
  /** The descriptor's `port` field ("host:container[/tcp|udp];…"), for host port mappings. */
  port?: string;
}

export interface Attachment {
  /** The instance's namespace addresses on the worker subnet, reported to the cluster. */
  ns_ip?: string;
  ns_ip_v6?: string;
}

export interface InstanceNetwork {
  attach(req: AttachRequest): Promise<Attachment>;
  /** Idempotent: detaching an unknown key is not an error (daemon restarts call it blindly). */
  detach(key: string): Promise<void>;
  close(): Promise<void>;
}

export class NoNetwork implements InstanceNetwork {
  async attach(_req: AttachRequest): Promise<Attachment> {
    return {};
  }

  async detach(_key: string): Promise<void> {}

  async close(): Promise<void> {}
}
