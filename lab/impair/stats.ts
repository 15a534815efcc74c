// The counters file a relay writes (on SIGUSR1, every few seconds and at exit) and the lab reads.

export interface DirectionStats {
  /** Frames written out the other side. */
  forwarded: number;
  bytes: number;
  droppedLoss: number;
  /** Dropped because the token bucket's backlog would exceed its latency bound. */
  droppedRate: number;
  /** Dropped because the delay queue was full, or the outgoing TAP refused the write. */
  droppedQueue: number;
  /** Frames waiting right now. */
  queued: number;
}

export interface RelayStats {
  host: string;
  pid: number;
  /** Increases with every write; lets a reader tell a fresh file from an old one. */
  seq: number;
  at: string;
  running: boolean;
  /** Frames leaving the host (host → switch). */
  egress: DirectionStats;
  /** Frames entering the host (switch → host). */
  ingress: DirectionStats;
}

export function emptyDirection(): DirectionStats {
  return { forwarded: 0, bytes: 0, droppedLoss: 0, droppedRate: 0, droppedQueue: 0, queued: 0 };
}
