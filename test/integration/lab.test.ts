// The emulated-host lab: delay, loss, rate and plain links behave as asked, host knobs work, and
// nothing is left behind after destroy.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import { Lab, labSkipReason, withLab } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import { listNetnsSync } from '../../lab/iproute.ts';
import { registryPath } from '../../lab/registry.ts';
import { isAlive } from '../../orchestrator/proc.ts';

const skip = unavailable(labSkipReason());

/** Ping's summary, with the fastest and the median of the per-reply times. */
function pingStats(out: string): { sent: number; received: number; avgMs: number; medianMs: number; minMs: number } {
  const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
  const r = /= [\d.]+\/([\d.]+)\//.exec(out);
  assert.ok(m, `no ping summary in: ${out}`);
  const times = [...out.matchAll(/time=([\d.]+)/g)].map((x) => Number(x[1]));
  return { sent: Number(m[1]), received: Number(m[2]), avgMs: r ? Number(r[1]) : NaN, medianMs: times.length ? median(times) : NaN, minMs: times.length ? Math.min(...times) : NaN };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

interface EchoResult {
  received: number;
  rttMs: number[];
  fwdMs: number[];
  backMs: number[];
}

/** Runs the UDP echo (tools/udp-echo.ts) from `from` to `to`: `count` probes, 50 ms apart. */
async function udpEcho(lab: Lab, from: string, to: string, port: number, count = 20): Promise<EchoResult> {
  const server = lab.host(to).spawnNode('lab/tools/udp-echo.ts', ['server', String(port)]);
  try {
    await lab.host(to).waitListening(port, { proto: 'udp' });
    const r = await lab.host(from).exec([process.execPath, '--import', 'tsx', 'lab/tools/udp-echo.ts',
      'client', lab.host(to).ip, String(port), String(count), '50'], { cwd: process.cwd() });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as EchoResult;
  } finally {
    server.kill();
  }
}

/**
 * A configured delay shows as a floor: the fastest probe cannot beat it (less `frac` for clock
 * granularity) and stays below one and a half delays, so a delay applied twice or not at all fails.
 * The fastest probe, not the median: a busy machine adds time to some probes, never removes it.
 */
function delayed(fastest: number, target: number, frac: number, what: string): void {
  assert.ok(fastest >= target * (1 - frac) && fastest < target * 1.5,
    `${what}: fastest ${fastest.toFixed(2)} ms, want at least ${target} ms (− ${frac * 100} %) and under ${target * 1.5} ms`);
}

describe('lab with delay, loss and plain links', { skip, timeout: 180_000 }, () => {
  let lab: Lab;
  before(async () => {
    lab = await Lab.create({
      hosts: ['w1', 'w2', 'w3', 'w4'],
      links: [{ a: 'w1', b: 'w2', delayMs: 20 }, { host: 'w3', lossPct: 5 }],
    });
  });
  after(() => lab?.destroy());

  it('gives each host its underlay addresses on eth0, loopback up', async () => {
    const w2 = lab.host('w2');
    assert.equal(w2.ip, '198.18.0.2');
    assert.equal(w2.ip6, '2001:2::2');
    const addrs = await w2.execOk(['ip', '-br', 'addr', 'show', 'dev', 'eth0']);
    assert.match(addrs, /198\.18\.0\.2\/24/);
    assert.match(addrs, /2001:2::2\/64/);
    assert.match(await w2.execOk(['ip', '-br', 'link', 'show', 'dev', 'lo']), /UP|UNKNOWN/);
    assert.equal((await w2.exec(['ping', '-c', '1', '-W', '2', '127.0.0.1'])).code, 0);
    assert.equal(w2.relayed, false, 'the far end of a pair rule stays on a plain veth');
    assert.equal(lab.host('w1').relayed, true);
  });

  it('20 ms between w1 and w2 gives a ping RTT of at least 40 ms, IPv4 and IPv6', async () => {
    const w1 = lab.host('w1');
    await w1.exec(['ping', '-c', '1', '-W', '2', lab.host('w2').ip]); // ARP/NDP out of the way
    const v4 = pingStats((await w1.exec(['ping', '-c', '15', '-i', '0.1', lab.host('w2').ip])).stdout);
    assert.equal(v4.received, 15);
    delayed(v4.minMs, 40, 0.1, `ICMP RTT w1→w2 (median ${v4.medianMs.toFixed(1)} ms)`);
    const v6 = pingStats((await w1.exec(['ping', '-6', '-c', '15', '-i', '0.1', lab.host('w2').ip6!])).stdout);
    assert.equal(v6.received, 15);
    delayed(v6.minMs, 40, 0.1, `ICMPv6 RTT w1→w2 (median ${v6.medianMs.toFixed(1)} ms)`);
  });

  it('a UDP echo round trip timed by the test agrees: at least 40 ms (smallest of 20), 20 ms each way', async () => {
    const res = await udpEcho(lab, 'w1', 'w2', 7007);
    assert.ok(res.received >= 18, `only ${res.received}/20 echoes came back`);
    // The echo ends are Node processes whose own scheduling delay adds to some samples on a busy
    // machine; that noise only ever adds, so the smallest sample is the path's RTT.
    delayed(Math.min(...res.rttMs), 40, 0.1, `UDP echo RTT w1→w2 (min; median ${median(res.rttMs).toFixed(1)} ms)`);
    // netem semantics: each direction carries its own 20 ms.
    delayed(Math.min(...res.fwdMs), 20, 0.1, 'one-way w1→w2');
    delayed(Math.min(...res.backMs), 20, 0.1, 'one-way w2→w1');
  });

  it('the pair rule leaves w1 to w4 undelayed', async () => {
    const s = pingStats((await lab.host('w1').exec(['ping', '-c', '5', '-i', '0.05', lab.host('w4').ip])).stdout);
    assert.equal(s.received, 5);
    assert.ok(s.minMs < 10, `w1→w4 RTT ${s.minMs} ms at the fastest; only w1–w2 is delayed`);
  });

  it('5 % loss on w3 loses between 1 % and 15 % of 400 pings, and the relay counts it', async () => {
    const w4 = lab.host('w4');
    await w4.exec(['ping', '-c', '3', '-i', '0.05', lab.host('w3').ip]);
    const before = await lab.relayStats('w3');
    // 5 % each way loses ~9.75 % of round trips; 400 samples keep the 15 % bound 3.5 σ away.
    const s = pingStats((await w4.exec(['ping', '-c', '400', '-i', '0.005', '-W', '1', '-q', lab.host('w3').ip])).stdout);
    const lossPct = 100 * (1 - s.received / s.sent);
    assert.ok(lossPct >= 1 && lossPct <= 15, `loss ${lossPct.toFixed(1)} %`);
    const afterStats = await lab.relayStats('w3');
    const dropped = afterStats.egress.droppedLoss + afterStats.ingress.droppedLoss
      - before.egress.droppedLoss - before.ingress.droppedLoss;
    assert.ok(dropped > 0, 'relay counted drops');
    assert.ok(afterStats.ingress.forwarded > before.ingress.forwarded);
  });

  it('TCP moves every byte between unimpaired hosts and across the delayed pair', async () => {
    for (const [from, to, addr] of [['w2', 'w4', 'ip'], ['w1', 'w2', 'ip6'], ['w1', 'w3', 'ip']] as const) {
      const dst = lab.host(to);
      const recv = dst.spawnNode('lab/tools/tcp-blob.ts', ['recv', '7100']);
      let out = '';
      recv.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
      const done = once(recv, 'exit');
      await dst.waitListening(7100);
      const r = await lab.host(from).exec([process.execPath, '--import', 'tsx', 'lab/tools/tcp-blob.ts',
        'send', dst[addr]!, '7100', String(4 << 20)], { timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
      await done;
      const sent = JSON.parse(r.stdout) as { bytes: number; sha256: string };
      const got = JSON.parse(out) as { bytes: number; sha256: string };
      assert.equal(got.bytes, 4 << 20, `${from}→${to}: bytes received`);
      assert.equal(got.sha256, sent.sha256, `${from}→${to}: content`);
    }
  });

  it('iperf3 runs between unimpaired hosts', async () => {
    const server = lab.host('w4').spawn(['iperf3', '-s', '-1', '-p', '5201']);
    const serverExited = once(server, 'exit');
    await lab.host('w4').waitListening(5201);
    const r = await lab.host('w2').exec(['iperf3', '-c', lab.host('w4').ip, '-p', '5201', '-n', '8M', '-J'], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr || r.stdout);
    const j = JSON.parse(r.stdout) as { end: { sum_sent: { bytes: number }; sum_received: { bytes: number } } };
    assert.ok(j.end.sum_sent.bytes >= 8 << 20);
    assert.ok(j.end.sum_received.bytes > 0);
    await serverExited; // `-1`: the server ends after serving one client
  });

  it('an extra namespace is created with loopback up and removed with the lab', async () => {
    const ns = await lab.addNamespace('w1i1');
    assert.ok(listNetnsSync().includes(`${lab.prefix}-w1i1`));
    assert.equal((await ns.exec(['ping', '-c', '1', '-W', '1', '127.0.0.1'])).code, 0);
    await assert.rejects(() => lab.addNamespace('w1i1'), /already exists/);
    await assert.rejects(() => lab.addNamespace('Bad_Name'), /bad host name/);
  });
});

describe('lab host knobs', { skip, timeout: 120_000 }, () => {
  it('sets the underlay MTU and IP forwarding per host', async () => {
    await withLab({ hosts: [{ name: 'a', mtu: 1400, forwarding: true }, 'b'], ipv6: false }, async (lab) => {
      const a = lab.host('a');
      assert.equal(a.ip6, null);
      assert.match(await a.execOk(['ip', 'link', 'show', 'dev', 'eth0']), /mtu 1400/);
      assert.equal((await a.execOk(['sysctl', '-n', 'net.ipv4.ip_forward'])).trim(), '1');
      assert.equal((await lab.host('b').execOk(['sysctl', '-n', 'net.ipv4.ip_forward'])).trim(), '0');
      // 1372 bytes of ICMP payload + 28 of headers fill 1400 exactly; one more does not fit unfragmented.
      assert.equal((await a.exec(['ping', '-c', '1', '-W', '2', '-M', 'do', '-s', '1372', lab.host('b').ip])).code, 0);
      assert.notEqual((await a.exec(['ping', '-c', '1', '-W', '1', '-M', 'do', '-s', '1373', lab.host('b').ip])).code, 0);
    });
  });

  it('limits a relayed link to its rate', async () => {
    await withLab({ hosts: ['a', 'b'], links: [{ host: 'a', rateMbit: 10 }] }, async (lab) => {
      const server = lab.host('b').spawn(['iperf3', '-s', '-p', '5202']);
      await lab.host('b').waitListening(5202);
      const r = await lab.host('a').exec(['iperf3', '-c', lab.host('b').ip, '-p', '5202', '-t', '2', '-J'], { timeoutMs: 30_000 });
      server.kill();
      assert.equal(r.code, 0, r.stderr || r.stdout);
      const mbit = (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e6;
      assert.ok(mbit > 2 && mbit < 15, `TCP through a 10 Mbit/s link ran at ${mbit.toFixed(1)} Mbit/s`);
    });
  });

  it('a one-way pair rule delays one direction only, whichever end carries it', async () => {
    // b already has a relay (its rate), so b carries the pair: a→b becomes b's ingress.
    await withLab({ hosts: ['a', 'b', 'c'], links: [
      { host: 'b', rateMbit: 1000 },
      { a: 'a', b: 'b', delayMs: 20, direction: 'out' },
      { a: 'a', b: 'c', delayMs: 10, direction: 'in' },
    ] }, async (lab) => {
      assert.equal(lab.host('a').relayed, true, 'a carries a–c');
      const ab = await udpEcho(lab, 'a', 'b', 7008);
      assert.ok(ab.received >= 18);
      delayed(Math.min(...ab.fwdMs), 20, 0.1, 'one-way a→b');
      assert.ok(Math.min(...ab.backMs) < 5, `b→a must not be delayed: ${Math.min(...ab.backMs)} ms`);
      const ac = await udpEcho(lab, 'a', 'c', 7009);
      assert.ok(Math.min(...ac.fwdMs) < 5, `a→c must not be delayed: ${Math.min(...ac.fwdMs)} ms`);
      delayed(Math.min(...ac.backMs), 10, 0.15, 'one-way c→a');
    });
  });

  it('jitter spreads one-way delays over delay ± jitter', async () => {
    await withLab({ hosts: ['a', 'b'], links: [{ a: 'a', b: 'b', delayMs: 20, jitterMs: 10, direction: 'out' }] }, async (lab) => {
      const r = await udpEcho(lab, 'a', 'b', 7010, 80);
      assert.ok(r.received >= 72);
      const sorted = [...r.fwdMs].sort((x, y) => x - y);
      const at = (q: number) => sorted[Math.floor(q * (sorted.length - 1))]!;
      // A loaded machine only adds delay (the relay runs late, never early), to every sample alike or
      // to a few: the bounds below hold under load, and the spread in the middle is the jitter's.
      assert.ok(sorted[0]! >= 9, `smallest one-way delay ${sorted[0]!.toFixed(1)} ms, want ≥ 9 (delay − jitter)`);
      assert.ok(sorted.at(-1)! > 25, `largest one-way delay ${sorted.at(-1)!.toFixed(1)} ms, want > 25`);
      // Uniform over 10–30 ms the middle half spans ~10 ms (80 samples: below 5 ms less than once in
      // 100 000 runs); without jitter it is the relay's noise, a fraction of a millisecond.
      const iqr = at(0.75) - at(0.25);
      assert.ok(iqr >= 5, `middle half of the one-way delays spans ${iqr.toFixed(1)} ms (${at(0.25).toFixed(1)}–${at(0.75).toFixed(1)}), want ≥ 5`);
    });
  });

  it('refuses bad specs before creating anything', async () => {
    const before = listNetnsSync().length;
    await assert.rejects(() => Lab.create({ hosts: ['a', 'a'] }), /given twice/);
    await assert.rejects(() => Lab.create({ hosts: ['a'], links: [{ host: 'z', delayMs: 1 }] }), /no host named "z"/);
    await assert.rejects(() => Lab.create({ hosts: ['a', 'b'], links: [{ a: 'a', b: 'b', lossPct: 120 }] }), /lossPct/);
    await assert.rejects(() => Lab.create({ hosts: [{ name: 'a', mtu: 100 }] }), /mtu/);
    await assert.rejects(() => Lab.create({ hosts: ['a', 'b'], links: [{ host: 'a', delayMs: 1, direction: 'up' as 'in' }] }), /direction/);
    assert.equal(listNetnsSync().length, before);
  });

  it('destroy kills processes and relays and removes namespaces and the registry; twice is fine', async () => {
    const lab = await Lab.create({ hosts: ['a', 'b'], links: [{ host: 'b', delayMs: 1 }] });
    const p = lab.host('a').spawn(['sleep', '600']);
    const rec = lab.record;
    assert.ok(existsSync(registryPath(lab.prefix)));
    const exited = once(p, 'exit');
    await lab.destroy();
    await lab.destroy();
    await exited;
    const left = listNetnsSync().filter((n) => n.startsWith(lab.prefix));
    assert.deepEqual(left, []);
    assert.equal(existsSync(registryPath(lab.prefix)), false);
    for (const pr of rec.procs) assert.equal(isAlive(pr), false, `${pr.role} ${pr.pid} still runs`);
    assert.throws(() => lab.host('a').spawn(['true']), /destroyed/);
  });
});
