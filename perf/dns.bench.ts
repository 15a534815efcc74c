// `npm run bench -- dns [seconds]`: dnsperf against Canopy's service DNS and against dnsmasq (Debian),
// same names, same emulated host, one after the other in the same run (plus, for the record, Canopy's
// server on node:dgram instead of recvmmsg/sendmmsg). Throughput at saturation
// (dnsperf, 100 queries outstanding) for each; then Canopy's latency percentiles from a second,
// shorter run held at half of its measured throughput (at saturation latency only measures dnsperf's
// queue). Needs root (lab namespaces). Last line: {"bench":"dns","canopy_qps":…,"dnsmasq_qps":…,"ratio":…,"canopy_p99_ms":…}
import { writeFileSync, rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab } from '../lab/lab.ts';
import { startSemanticHost } from '../harness/semantic-lab.ts';
import type { ServiceRoute } from '../proxy/route-messages.ts';
import { orSmoke } from './smoke.ts';

const seconds = Number(process.argv[2] ?? orSmoke(10, 1));

const SERVICES = 20;
const routes: ServiceRoute[] = Array.from({ length: SERVICES }, (_, i) => ({
  service_id: `s${i}`, name: `app.ans.svc${i}.sns`, rr_ip: `10.30.${i}.2`, rr_ip_v6: `fdc0:30::${i}:2`,
  closest_ip: `10.30.${i}.3`, closest_ip_v6: `fdc0:30::${i}:3`, default_policy: 'rr', ports: [{ port: 80, proto: 'tcp' }],
  instances: [],
}));

/** The query mix: A and AAAA of the rr, closest and default names of every service. */
function queries(): { lines: string[]; records: string[] } {
  const lines: string[] = [], records: string[] = [];
  routes.forEach((r, i) => {
    for (const [sel, v4, v6] of [['rr.', r.rr_ip, r.rr_ip_v6], ['closest.', r.closest_ip, r.closest_ip_v6], ['', r.rr_ip, r.rr_ip_v6]] as const) {
      const name = `${sel}svc${i}.sns.app.ans.canopy`;
      lines.push(`${name} A`, `${name} AAAA`);
      records.push(`--host-record=${name},${v4},${v6}`);
    }
  });
  return { lines, records };
}

interface PerfResult { qps: number; lost: number; completed: number; latencies: number[] }

function parseDnsperf(out: string, verbose: boolean): PerfResult {
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? NaN);
  const latencies = verbose ? [...out.matchAll(/^> \S+ \S+ \S+ ([0-9.]+)$/gm)].map((m) => Number(m[1]) * 1000) : [];
  return { qps: num(/Queries per second:\s+([0-9.]+)/), lost: num(/Queries lost:\s+(\d+)/), completed: num(/Queries completed:\s+(\d+)/), latencies };
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
}

const lab = await Lab.create({ hosts: ['srv', 'cli'], ipv6: false });
const dir = mkdtempSync(join(tmpdir(), 'canopy-dns-bench-'));
try {
  const srv = lab.host('srv'), cli = lab.host('cli');
  const { lines, records } = queries();
  const qfile = join(dir, 'queries.txt');
  writeFileSync(qfile, `${lines.join('\n')}\n`);

  await startSemanticHost(lab, srv, {
    workerId: 'w1', peerIds: { w1: 1 }, routes, locals: [], rtt: {},
    dns: { listen: [{ address: srv.ip, port: 53 }], upstreams: [] },
  });
  // The same server on node:dgram (one syscall pair per query), for the record.
  await startSemanticHost(lab, srv, {
    workerId: 'w1', peerIds: { w1: 1 }, routes, locals: [], rtt: {},
    dns: { listen: [{ address: srv.ip, port: 5301 }], upstreams: [], batched: false },
  });
  // Warm the route caches (the first query of each name asks the route source).
  await cli.execOk(['dnsperf', '-s', srv.ip, '-p', '53', '-d', qfile, '-n', '1']);
  await cli.execOk(['dnsperf', '-s', srv.ip, '-p', '5301', '-d', qfile, '-n', '1']);
  srv.spawn(['dnsmasq', '-k', '--no-resolv', '--no-hosts', '--bind-interfaces', `--listen-address=${srv.ip}`, '--port=5300',
    '--user=root', '--pid-file=', '--local=/canopy/', '--cache-size=10000', ...records]);
  await srv.waitListening(5300, { proto: 'udp' });

  const run = async (port: number, extra: string[] = [], secs = seconds): Promise<PerfResult> => {
    const out = await cli.execOk(['dnsperf', '-s', srv.ip, '-p', String(port), '-d', qfile, '-l', String(secs), '-q', '100', ...extra],
      { timeoutMs: (secs + 30) * 1000 });
    return parseDnsperf(out, extra.includes('-v'));
  };
  console.error(`dns bench: ${lines.length} names, ${seconds} s per server`);
  const canopy = await run(53);
  console.error(`canopy:  ${canopy.qps.toFixed(0)} q/s, lost ${canopy.lost}`);
  const dnsmasq = await run(5300);
  console.error(`dnsmasq: ${dnsmasq.qps.toFixed(0)} q/s, lost ${dnsmasq.lost}`);
  const dgram = await run(5301, [], Math.min(5, seconds));
  console.error(`canopy on node:dgram: ${dgram.qps.toFixed(0)} q/s, lost ${dgram.lost}`);
  const half = Math.max(100, Math.floor(canopy.qps / 2));
  const lat = await run(53, ['-v', '-Q', String(half)], Math.min(3, seconds));
  const p50 = pct(lat.latencies, 50), p99 = pct(lat.latencies, 99);
  console.error(`canopy at ${half} q/s: p50 ${p50.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms (${lat.latencies.length} samples)`);
  console.log(JSON.stringify({
    bench: 'dns', canopy_qps: Math.round(canopy.qps), dnsmasq_qps: Math.round(dnsmasq.qps),
    ratio: Number((canopy.qps / dnsmasq.qps).toFixed(3)), canopy_p99_ms: Number(p99.toFixed(3)),
    canopy_p50_ms: Number(p50.toFixed(3)), latency_load_qps: half, canopy_dgram_qps: Math.round(dgram.qps), canopy_lost: canopy.lost, dnsmasq_lost: dnsmasq.lost, seconds,
  }));
} finally {
  await lab.destroy();
  rmSync(dir, { recursive: true, force: true });
}
