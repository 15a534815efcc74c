// A process that owns a lab, for the cleanup tests: creates one (with a relay), prints
// {"prefix", "relays": [pids], "children": [pids], "namespaces": […]} on stdout, then `hold`s (waits to be killed) or
// `throw`s an uncaught exception.
import { Lab } from '../lab.ts';

const then = process.argv[2] ?? 'hold';
const lab = await Lab.create({ hosts: ['a', 'b'], links: [{ a: 'a', b: 'b', delayMs: 5 }] });
// A process that would outlive its owner if nobody killed it.
const sleeper = lab.host('a').spawn(['sleep', '600']);
const rec = lab.record;
console.log(JSON.stringify({
  prefix: lab.prefix,
  relays: rec.procs.filter((p) => p.role === 'relay').map((p) => p.pid),
  children: [sleeper.pid],
  namespaces: rec.namespaces,
}));
if (then === 'throw') {
  setTimeout(() => { throw new Error('lab-child: deliberate uncaught exception'); }, 100);
} else {
  setInterval(() => { /* hold until killed */ }, 60_000);
}
