// The container runtime a worker daemon adds beside `process`: on an operator's containerd socket
// (--containerd) or on the worker's own embedded containerd, started under its data dir. Without a
// containerd binary or a socket that answers, the worker runs on without `container`.
// The runtime and its gRPC client are loaded only when there is a containerd to talk to (gRPC and its
// proto loader cost a worker ~10 MB; issue 16).
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import type { ContainerRuntime } from './runtime.ts';
import type { Sandbox } from '../runtime/sandbox.ts';
import type { Logger } from '../../protocol/log.ts';

export interface WorkerContainerOptions {
  dataDir: string;
  /** An operator's containerd socket; absent = the embedded one. */
  socket?: string;
  /** `host=url` strings from --registry-mirror. */
  mirrors: string[];
  /** --registry-mirrors-only: no pull ever goes to a registry's own address. */
  mirrorsOnly?: boolean;
}

function haveContainerd(): boolean {
  try {
    execFileSync('containerd', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Validates the flags now, so a bad mirror is a CLI error before anything starts. */
export async function containerRuntimeFor(o: WorkerContainerOptions): Promise<(sandbox: Sandbox, log: Logger) => Promise<ContainerRuntime[]>> {
  const mirrors = o.mirrors.length > 0 ? o.mirrors.map((await import('./images.ts')).parseMirror) : [];
  const mirrorsOnly = o.mirrorsOnly ?? false;
  return async (sandbox, log) => {
    if (o.socket) {
      if (!existsSync(o.socket)) log.warn('containerd socket not there (yet): container runtime unavailable until it answers', { socket: o.socket });
      const { ContainerRuntime } = await import('./runtime.ts');
      return [await ContainerRuntime.open(sandbox, { socket: o.socket, mirrors, mirrorsOnly, log })];
    }
    if (!haveContainerd()) {
      log.warn('no containerd on this host: this worker runs `process` only');
      return [];
    }
    try {
      const [{ ContainerRuntime }, { startEmbedded }] = await Promise.all([import('./runtime.ts'), import('./embedded.ts')]);
      const embedded = await startEmbedded(o.dataDir);
      return [await ContainerRuntime.open(sandbox, { socket: embedded.socket, mirrors, mirrorsOnly, log, onClose: () => embedded.stop() })];
    } catch (e) {
      log.error('embedded containerd did not start: this worker runs `process` only', { error: (e as Error).message });
      return [];
    }
  };
}
