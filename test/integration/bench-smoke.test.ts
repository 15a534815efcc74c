// Every benchmark in perf/ still runs: each is started the way a user starts it (`npm run bench --
// <name>`, here through perf/bench.ts directly) in smoke mode (CANOPY_BENCH_SMOKE=1: tiny durations and
// counts, see perf/smoke.ts), and must exit 0 with one JSON object naming it as its last output line.
// The figures are not looked at. Benchmarks that build emulated hosts or a `canopy up` deployment need
// root and are skipped without it (a failure under CI, test/support/facility.ts). Two lanes run side by side to keep the file short (a smoke run
// measures nothing, so sharing the CPUs is harmless); each lane holds at most one `canopy up`.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { labSkipReason } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';

const PERF = join(import.meta.dirname, '../../perf');
const benches = readdirSync(PERF).filter((f) => f.endsWith('.bench.ts')).map((f) => f.slice(0, -'.bench.ts'.length)).sort();
/** Pure computation or loopback sockets only; every other benchmark is assumed to need root. */
const WITHOUT_ROOT = new Set(['flows', 'schedule', 'translate', 'scale', 'ldp']);
/** The first lane; every other benchmark (a new one too) runs in the second. Roughly equal halves. */
const LANE_ONE = new Set(['flows', 'schedule', 'translate', 'scale', 'ldp', 'lab', 'tunnel', 'dns']);
const LIMIT_MS = 150_000;
/** Keys of the JSON line that issues and perf/RESULTS.md name (a contract: a renamed key fails here). */
const CONTRACT: Record<string, string[]> = {
  dashboard: ['first_load_ms', 'js_gzip_kb'],
  dns: ['canopy_qps', 'dnsmasq_qps', 'ratio', 'canopy_p99_ms'],
  container: ['first_answer_p50_s', 'to_running_p50_s', 'ctr_run_p50_s', 'ratio', 'cold_pull_s', 'image_mb'],
  deploy: ['p50_s', 'p90_s', 'to_running_p50_s'],
  flows: ['new_flows_per_s', 'hit_pps', 'static_new_flows_per_s', 'ratio_vs_static'],
  latency: ['overlay_rtt_p50_us', 'overlay_rtt_p99_us', 'vxlan_rtt_p50_us', 'vxlan_rtt_p99_us', 'ratio_p50', 'ratio_p99', 'overlay_tcp_rr_per_s', 'vxlan_tcp_rr_per_s', 'low_rate_ratio_p50'],
  scale: ['workers', 'cluster_cpu_pct', 'cluster_rss_mb'],
  tunnel: ['veth_gbps', 'vxlan_gbps', 'canopy_gbps', 'ratio_vxlan'],
};

interface Run { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

function runBench(name: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', join(PERF, 'bench.ts'), name], {
      cwd: join(PERF, '..'), env: { ...process.env, CANOPY_BENCH_SMOKE: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '', stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    // SIGTERM first: the benchmarks take their labs and deployments down on it.
    const term = setTimeout(() => p.kill('SIGTERM'), LIMIT_MS);
    const kill = setTimeout(() => p.kill('SIGKILL'), LIMIT_MS + 20_000);
    p.once('error', reject);
    p.once('exit', (code, signal) => {
      clearTimeout(term);
      clearTimeout(kill);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

async function smoke(t: TestContext, name: string): Promise<void> {
  const t0 = Date.now();
  const r = await runBench(name);
  t.diagnostic(`${name}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const tail = `\n--- stdout (end)\n${r.stdout.slice(-1500)}\n--- stderr (end)\n${r.stderr.slice(-3000)}`;
  assert.equal(r.code, 0, `${name} exited with ${r.code ?? r.signal}${tail}`);
  const last = r.stdout.trimEnd().split('\n').at(-1) ?? '';
  let parsed: unknown;
  assert.doesNotThrow(() => (parsed = JSON.parse(last)), `${name}: last line is not JSON: ${last}${tail}`);
  assert.ok(parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed), `${name}: last line is not one object: ${last}`);
  assert.equal((parsed as { bench?: unknown }).bench, name, `${name}: last line names another bench: ${last}`);
  const missing = (CONTRACT[name] ?? []).filter((k) => !(k in (parsed as object)));
  assert.deepEqual(missing, [], `${name}: last line lacks the contract's keys: ${last}`);
}

test('perf/ has the benchmarks this test knows how to run', () => {
  for (const b of new Set([...WITHOUT_ROOT, ...LANE_ONE, ...Object.keys(CONTRACT)])) assert.ok(benches.includes(b), `perf/${b}.bench.ts is gone: update this test's lists`);
  assert.ok(benches.length > WITHOUT_ROOT.size, 'no benchmark that needs root found');
});

async function lane(t: TestContext, names: string[]): Promise<void> {
  for (const b of names) await t.test(b, { skip: WITHOUT_ROOT.has(b) ? false : unavailable(labSkipReason()) }, (tt) => smoke(tt, b));
}

describe('every benchmark runs in smoke mode', { concurrency: 2 }, () => {
  const one = benches.filter((b) => LANE_ONE.has(b));
  const two = benches.filter((b) => !LANE_ONE.has(b));
  test(`lane 1: ${one.join(', ')}`, (t) => lane(t, one));
  test(`lane 2: ${two.join(', ')}`, (t) => lane(t, two));
});
