// `node --import tsx test/lab/sweep-cli.ts [--all]`: run before integration tests (test/run.sh) to
// remove what a killed earlier run left behind. Exits 0 unless sweeping itself failed.
import { sweep } from './sweep.ts';

const all = process.argv.includes('--all');
if (process.getuid?.() !== 0) {
  console.error(JSON.stringify({ msg: 'lab sweep skipped: not root' }));
  process.exit(0);
}
const r = sweep({ all });
if (r.labs.length + r.orphans.length > 0 || all) {
  console.error(JSON.stringify({ msg: 'lab sweep', removed: r.labs, orphans: r.orphans, kept: r.kept }));
}
