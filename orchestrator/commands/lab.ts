// `canopy lab up|down|status|sweep`: the test lab's emulated hosts, for poking at a topology by hand
// (`ip netns exec <prefix>-w1 bash`). Labs made here are persistent: they outlive this command and
// the sweeper leaves them alone unless told --all.
import type { Command } from 'commander';
import { hostNames, linksFromArgs } from '../../lab/cli-spec.ts';
import { describeImpairment } from '../../lab/impair/rules.ts';
import { Lab, destroyByPrefix } from '../../lab/lab.ts';
import { listPrefixes, readRecord } from '../../lab/registry.ts';
import { type LabStatus, labStatus } from '../../lab/status.ts';
import { sweep } from '../../lab/sweep.ts';

const collect = (v: string, prev: string[]): string[] => [...prev, v];

function fail(msg: string): never {
  console.error(`canopy lab: ${msg}`);
  process.exit(1);
}

function needRoot(): void {
  if (process.getuid?.() !== 0) fail('needs root (network namespaces)');
}

function printStatus(labs: LabStatus[]): void {
  if (labs.length === 0) {
    console.log('no labs');
    return;
  }
  for (const l of labs) {
    console.log(`lab ${l.prefix}  ${l.persistent ? 'persistent' : `test (owner pid ${l.ownerPid})`}  since ${l.created}  ${l.state}`);
    console.log(`  switch   ${l.prefix}_sw (bridge br0)`);
    for (const h of l.hosts) {
      const via = h.relayed ? `relay${h.relayAlive ? '' : ' (not running)'}` : 'veth';
      console.log(`  ${h.name.padEnd(8)} ${h.netns.padEnd(16)} ${h.ip.padEnd(13)} ${(h.ip6 ?? '-').padEnd(12)} mtu ${h.mtu}  ${via}`);
      if (h.relay) {
        for (const [dir, s] of [['egress', h.relay.egress], ['ingress', h.relay.ingress]] as const) {
          console.log(`           ${dir.padEnd(8)} forwarded ${s.forwarded} (${s.bytes} B), dropped: loss ${s.droppedLoss}, rate ${s.droppedRate}, queue ${s.droppedQueue}; queued ${s.queued}`);
        }
      }
    }
    for (const k of l.links) console.log(`  impair   ${k.what.replace('~', '–').padEnd(12)} ${describeImpairment(k.impairment)}`);
  }
}

export function register(program: Command): void {
  const lab = program.command('lab').description('emulated hosts in network namespaces (198.18.0.0/15)');

  lab.command('up')
    .description('create a persistent lab: hosts w1…wN on one switch, with optional impairments')
    .option('--hosts <n>', 'number of hosts (named w1…wN)', '3')
    .option('--names <list>', 'comma-separated host names instead of w1…wN')
    .option('--delay <spec>', 'one-way delay, ms: host:ms, a:b:ms (each way) or a>b:ms (a→b only) (repeatable)', collect, [])
    .option('--jitter <spec>', 'jitter ±ms: host:ms or a:b:ms (repeatable)', collect, [])
    .option('--loss <spec>', 'loss, %: host:pct or a:b:pct (repeatable)', collect, [])
    .option('--rate <spec>', 'rate, Mbit/s: host:mbit or a:b:mbit (repeatable)', collect, [])
    .option('--mtu <n>', 'underlay MTU of every host', '1500')
    .option('--forwarding', 'enable IP forwarding in every host')
    .option('--no-ipv6', 'IPv4 addresses only')
    .option('--json', 'print the lab record as JSON')
    .action(async (o: { hosts: string; names?: string; delay: string[]; jitter: string[]; loss: string[];
      rate: string[]; mtu: string; forwarding?: boolean; ipv6: boolean; json?: boolean }) => {
      needRoot();
      let created: Lab;
      try {
        const names = hostNames(Number(o.hosts), o.names);
        const links = linksFromArgs(o);
        created = await Lab.create({
          hosts: names.map((name) => ({ name, forwarding: o.forwarding ?? false })),
          mtu: Number(o.mtu), ipv6: o.ipv6, links, persistent: true,
        });
      } catch (e) {
        fail((e as Error).message);
      }
      if (o.json) {
        console.log(JSON.stringify(created.record, null, 2));
      } else {
        printStatus((await labStatus()).filter((s) => s.prefix === created.prefix));
        console.log(`\nenter a host:  ip netns exec ${created.hosts[0]!.netns} bash`);
        console.log(`remove it:     canopy lab down ${created.prefix}`);
      }
      process.exit(0);
    });

  lab.command('down')
    .description('remove persistent labs (all of them, or the one named)')
    .argument('[prefix]', 'lab prefix, e.g. cl3fa0')
    .option('--all', 'also remove test labs whose owner still runs')
    .action((prefix: string | undefined, o: { all?: boolean }) => {
      needRoot();
      const targets = prefix ? [prefix] : listPrefixes().filter((p) => {
        const rec = readRecord(p);
        return o.all || rec === null || rec.persistent;
      });
      if (prefix && !listPrefixes().includes(prefix)) fail(`no lab ${prefix} (see canopy lab status)`);
      for (const p of targets) {
        destroyByPrefix(p);
        console.log(`removed lab ${p}`);
      }
      if (targets.length === 0) console.log('no persistent labs');
    });

  lab.command('status')
    .description('list labs with hosts, addresses, impairments and relay counters')
    .option('--json', 'machine-readable')
    .action(async (o: { json?: boolean }) => {
      const labs = await labStatus();
      if (o.json) console.log(JSON.stringify(labs, null, 2));
      else printStatus(labs);
    });

  lab.command('sweep')
    .description('remove labs whose owner died and stray lab namespaces')
    .option('--all', 'persistent labs too')
    .action((o: { all?: boolean }) => {
      needRoot();
      const r = sweep({ all: o.all ?? false });
      console.log(JSON.stringify(r));
    });
}
