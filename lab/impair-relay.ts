// The impairment relay: joins one lab host to the switch through two TAP devices and forwards
// Ethernet frames both ways with delay, jitter, loss and rate (netem, which this kernel lacks, done in
// userspace). Started by the lab in the switch namespace:
//   node --import tsx lab/impair-relay.ts --name w1 --host-tap h1 --switch-tap p1 --mtu 1500 \
//     --stats /run/canopy-lab/<prefix>.d/relay-w1.json --config '{"link":{…},"pairs":[…]}' [--exit-on-stdin-eof]
// It creates both TAPs; the lab then moves the host one into the host's namespace (as eth0) and
// enslaves the other to the bridge. The fds stay valid across the move.
//
// Counters go to the --stats file once the TAPs are open (the lab's readiness signal), on SIGUSR1 and
// at exit. It exits on SIGTERM/SIGINT, when either TAP fails (its device was deleted) and, with
// --exit-on-stdin-eof, when its owner dies. Logs are JSON lines on stderr.
import { renameSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import koffi from 'koffi';
import { TunQueue } from '../native/tun.ts';
import { type Clock, Direction, Stage, pairStages } from './impair/direction.ts';
import type { RelayConfig } from './impair/rules.ts';
import { appliesTo, checkDirection, checkImpairment } from './impair/rules.ts';
import type { RelayStats } from './impair/stats.ts';
import { parseAddr } from './impair/frame.ts';

function log(level: 'info' | 'error', msg: string, extra: Record<string, unknown> = {}): void {
  process.stderr.write(`${JSON.stringify({ t: new Date().toISOString(), level, component: 'impair-relay', name, msg, ...extra })}\n`);
}

const { values: args } = parseArgs({
  options: {
    'name': { type: 'string' },
    'host-tap': { type: 'string' },
    'switch-tap': { type: 'string' },
    'mtu': { type: 'string', default: '1500' },
    'stats': { type: 'string' },
    'config': { type: 'string' },
    'exit-on-stdin-eof': { type: 'boolean', default: false },
  },
});
const name = args.name ?? 'relay';
function fail(msg: string): never {
  log('error', msg);
  process.exit(2);
}
if (!args['host-tap'] || !args['switch-tap'] || !args.stats || !args.config) {
  fail('usage: impair-relay --name N --host-tap T1 --switch-tap T2 --stats FILE --config JSON');
}
const mtu = Number(args.mtu);
if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65_000) fail(`bad --mtu ${args.mtu}`);
let config: RelayConfig;
try {
  config = JSON.parse(args.config) as RelayConfig;
  if (config.link) checkImpairment(config.link, 'link');
  checkDirection(config.linkDirection, 'link');
  for (const p of config.pairs) {
    checkImpairment(p.impairment, `pair with ${p.peer}`);
    checkDirection(p.direction, `pair with ${p.peer}`);
    for (const a of p.addrs) parseAddr(a);
  }
} catch (e) {
  fail(`bad --config: ${(e as Error).message}`);
}
const statsPath = args.stats;

const clock: Clock = {
  now: () => performance.now(),
  setTimer: (fn, ms) => setTimeout(fn, ms),
  clearTimer: (h) => clearTimeout(h as NodeJS.Timeout),
};

let hostTap: TunQueue;
let switchTap: TunQueue;
try {
  hostTap = new TunQueue({ name: args['host-tap'], mode: 'tap', nonBlocking: true });
  switchTap = new TunQueue({ name: args['switch-tap'], mode: 'tap', nonBlocking: true });
} catch (e) {
  fail(`cannot open TAPs: ${(e as Error).message}`);
}

/** A write error is a drop (EIO while the peer interface is still down); a dead device shows on read. */
function writer(tap: TunQueue): (f: Uint8Array, n: number) => boolean {
  return (f, n) => {
    try {
      return tap.write(f, n);
    } catch {
      return false;
    }
  };
}

// Node timers fire ~0.5–1 ms late: arm them 1 ms early and release what is due within 1 ms, which
// centres the error on zero instead of always adding it.
const TIMING = { leadMs: 1, slackMs: 1 };

const egress = new Direction({
  link: config.link && appliesTo(config.linkDirection, 'out') ? new Stage(config.link, mtu) : null,
  pairs: pairStages(config.pairs.filter((p) => appliesTo(p.direction, 'out')), mtu),
  side: 'dst',
  write: writer(switchTap),
  clock,
  ...TIMING,
});
const ingress = new Direction({
  link: config.link && appliesTo(config.linkDirection, 'in') ? new Stage(config.link, mtu) : null,
  pairs: pairStages(config.pairs.filter((p) => appliesTo(p.direction, 'in')), mtu),
  side: 'src',
  write: writer(hostTap),
  clock,
  ...TIMING,
});

let seq = 0;
let running = true;
function writeStats(): void {
  const s: RelayStats = {
    host: name, pid: process.pid, seq: ++seq, at: new Date().toISOString(), running,
    egress: egress.stats, ingress: ingress.stats,
  };
  try {
    const tmp = `${statsPath}.tmp`;
    writeFileSync(tmp, JSON.stringify(s));
    renameSync(tmp, statsPath);
  } catch (e) {
    log('error', 'cannot write counters', { error: (e as Error).message });
  }
}

// One read buffer: frames that must wait are copied by the Direction, others are written at once.
const buf = new Uint8Array(65_536 + 64);
/** Frames per readiness callback, so that a flood cannot starve the delay timers. */
const BATCH = 64;

function pump(from: TunQueue, dir: Direction): void {
  try {
    for (let i = 0; i < BATCH; i++) {
      const n = from.read(buf);
      if (n < 0) return;
      dir.onFrame(buf, n);
    }
  } catch (e) {
    // Typically EBADFD: the device went away with its namespace.
    shutdown(`TAP ${from.name} failed: ${(e as Error).message}`, 0);
  }
}

// Poll handles must stay referenced, or they are collected and polling silently stops.
const polls = [
  koffi.node.poll(hostTap.fd, { readable: true, disconnect: true }, (ev) => {
    if (ev.disconnect) shutdown(`TAP ${hostTap.name} disconnected`, 0);
    else pump(hostTap, egress);
  }),
  koffi.node.poll(switchTap.fd, { readable: true, disconnect: true }, (ev) => {
    if (ev.disconnect) shutdown(`TAP ${switchTap.name} disconnected`, 0);
    else pump(switchTap, ingress);
  }),
];

function shutdown(reason: string, code: number): void {
  if (!running) return;
  running = false;
  for (const p of polls) p.close();
  egress.close();
  ingress.close();
  writeStats();
  log('info', 'relay stopped', { reason, egress: egress.stats, ingress: ingress.stats });
  hostTap.close();
  switchTap.close();
  process.exit(code);
}

process.on('SIGUSR1', writeStats);
process.on('SIGTERM', () => shutdown('SIGTERM', 0));
process.on('SIGINT', () => shutdown('SIGINT', 0));
process.on('SIGHUP', () => shutdown('SIGHUP', 0));
if (args['exit-on-stdin-eof']) {
  process.stdin.on('end', () => shutdown('owner gone (stdin closed)', 0));
  process.stdin.on('error', () => shutdown('owner gone (stdin error)', 0));
  process.stdin.resume();
}
process.on('uncaughtException', (e) => {
  log('error', 'uncaught exception', { error: e.stack ?? String(e) });
  shutdown('uncaught exception', 1);
});

log('info', 'relay started', { hostTap: hostTap.name, switchTap: switchTap.name, mtu, config });
writeStats();
