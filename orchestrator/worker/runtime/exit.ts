// What every runtime reports when an instance's main process ends, and the one wording of why.
export interface ExitInfo {
  code: number | null;
  signal: string | null;
  /** The kernel OOM-killed something in the cgroup during this run. */
  oomKilled: boolean;
  /** Human sentence for the instance status. */
  reason: string;
}

export interface RunHandle {
  readonly pid: number;
  readonly exited: Promise<ExitInfo>;
}

export function exitReason(code: number | null, signal: string | null, oom: boolean, memoryMb: number): string {
  if (oom) return `killed by the kernel: memory limit of ${memoryMb} MB exceeded (cgroup OOM kill)`;
  if (code === 125) return 'could not join its cgroup';
  if (code === 127) return 'command not found (exit 127)';
  if (signal) return `killed by ${signal}`;
  if (code !== null && code > 128) return `killed by signal ${code - 128} (exit ${code})`;
  return `exited with code ${code}`;
}

/** Names safe for netns, cgroup and containerd ids. */
export function instanceKey(serviceId: string, n: number): string {
  return `${serviceId.replace(/[^A-Za-z0-9_.-]/g, '_')}-${n}`;
}
