// Sweeps what killed test runs left of Canopy workers: instances whose worker daemon is gone (the
// daemon marker in orchestrator/worker/daemon-marker.ts) — their processes, cgroups and `canopy-<worker
// id>-<key>` namespaces. A live daemon's instances (a `canopy up` deployment, another run) are kept.
import { execFileSync } from 'node:child_process';
import { detectCgroups } from '../orchestrator/worker/cgroup.ts';
import { liveDaemons } from '../orchestrator/worker/daemon-marker.ts';
import { listNetnsSync } from './iproute.ts';
import { reapOrphanedEmbeddedSync } from '../orchestrator/worker/container/embedded-reap.ts';

export interface WorkerSweepReport {
  /** Data dirs of embedded containerds whose worker was gone (stopped, shims and mounts too). */
  containerd: string[];
  cgroups: string[];
  namespaces: string[];
}

export async function sweepWorkers(): Promise<WorkerSweepReport> {
  const live = liveDaemons();
  const report: WorkerSweepReport = { containerd: reapOrphanedEmbeddedSync(), cgroups: [], namespaces: [] };
  let cg;
  try {
    cg = detectCgroups();
  } catch {
    cg = undefined;
  }
  if (cg) {
    for (const wid of cg.children('canopy')) {
      if (live.has(wid)) continue;
      for (const key of cg.children(`canopy/${wid}`)) {
        await cg.open(`canopy/${wid}/${key}`)?.destroy();
        report.cgroups.push(`canopy/${wid}/${key}`);
      }
      cg.removeIfEmpty(`canopy/${wid}`);
    }
  }
  const ownedByLive = (ns: string) => [...live].some((wid) => ns.startsWith(`canopy-${wid}-`));
  for (const ns of listNetnsSync()) {
    if (!ns.startsWith('canopy-') || ownedByLive(ns)) continue;
    // Processes still inside (an instance without a cgroup): kill them before the namespace goes.
    const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean);
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    execFileSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
    report.namespaces.push(ns);
  }
  return report;
}
