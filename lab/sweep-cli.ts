// `node --import tsx lab/sweep-cli.ts [--all]`: run before integration tests (test/run.sh) to
// remove what a killed earlier run left behind: labs and worker instances whose owner is gone.
// Exits 0 unless sweeping itself failed.
import { sweep } from './sweep.ts';
import { sweepWorkers } from './sweep-workers.ts';

const all = process.argv.includes('--all');
if (process.getuid?.() !== 0) {
  console.error(JSON.stringify({ msg: 'lab sweep skipped: not root' }));
  process.exit(0);
}
const r = sweep({ all });
if (r.labs.length + r.orphans.length > 0 || all) {
  console.error(JSON.stringify({ msg: 'lab sweep', removed: r.labs, orphans: r.orphans, kept: r.kept }));
}
const w = await sweepWorkers();
if (w.containerd.length + w.cgroups.length + w.namespaces.length > 0) {
  console.error(JSON.stringify({ msg: 'worker sweep', containerd: w.containerd, cgroups: w.cgroups, namespaces: w.namespaces }));
}
