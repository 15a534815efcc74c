// The datapath's counters (/metrics as canopy_datapath_<name>), shared by both directions.

export const Counter = {
  DevRx: 'dev_rx_packets',
  DevTx: 'dev_tx_packets',
  DevTxFull: 'dev_tx_dropped',
  Parse: 'drop_unparsable',
  NoRoute: 'drop_no_route',
  NoPeer: 'drop_unknown_peer',
  SockTxFull: 'sock_tx_dropped',
  SockRxBytes: 'sock_rx_bytes',
  /** Receive calls that returned data (one GRO receive may hold many datagrams). */
  SockRxCalls: 'sock_rx_calls',
  TunnelTx: 'tunnel_tx_batches',
  TunnelRx: 'tunnel_rx_batches',
  InboundDrop: 'drop_inbound',
  Pending: 'pending_queued',
  PendingDrop: 'pending_dropped',
  PendingExpired: 'pending_expired',
  Segmented: 'segmented_packets',
  Local: 'local_delivered',
  Coalesced: 'coalesced_packets',
  MssClamped: 'mss_clamped',
  Errors: 'errors',
  FragmentDrop: 'drop_fragment_unknown',
  IcmpErrors: 'icmp_errors_translated',
} as const;
export type Counter = (typeof Counter)[keyof typeof Counter];

export class Counters {
  private readonly c = new Map<Counter, number>();
  /** The last exception a packet caused (counted as errors; the loop carries on). */
  lastError: string | undefined;

  constructor() {
    for (const k of Object.values(Counter)) this.c.set(k, 0);
  }

  count(k: Counter, n = 1): void {
    this.c.set(k, (this.c.get(k) as number) + n);
  }

  get(k: Counter): number {
    return this.c.get(k) as number;
  }

  /** A packet must never stop the loop: count, remember, move on. */
  fault(e: unknown): void {
    this.count(Counter.Errors);
    this.lastError = e instanceof Error ? e.message : String(e);
  }

  entries(): IterableIterator<[Counter, number]> {
    return this.c.entries();
  }
}
