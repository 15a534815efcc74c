// Two worker hosts, a bridge and one instance namespace on each, a static table: ping, TCP (iperf3)
// and UDP between the instances through a service IP, IPv4 and IPv6, in offload and per-packet mode;
// and a datagram spoofed from a third host with a wrong key changes nothing and is counted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { labFor, labSkipReason, type Lab } from '../../lab/lab.ts';
import { unavailable } from '../support/facility.ts';
import { allowedCpus } from '../../native/cpu.ts';
import { S4, S6, TUNNEL_PORT, buildOverlay, statsOf, stopOverlay, type OverlayWorker } from '../../harness/datapath-setup.ts';

const skip = unavailable(labSkipReason());

async function iperf(lab: Lab, a: OverlayWorker, b: OverlayWorker, target: string, extra: string[]): Promise<{ sent: number; received: number }> {
  const server = b.inst.spawn(['iperf3', '-s', '-1', '-p', '5201']);
  try {
    await b.inst.waitListening(5201);
    const r = await a.inst.exec(['iperf3', '-c', target, '-p', '5201', '-t', '2', '-J', ...extra], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, `iperf3 ${extra.join(' ')} to ${target}: ${r.stderr || r.stdout.slice(-500)}`);
    const j = JSON.parse(r.stdout) as { end: { sum_sent?: { bytes: number }; sum_received?: { bytes: number }; sum?: { bytes: number; lost_percent: number } } };
    if (j.end.sum) return { sent: j.end.sum.bytes, received: j.end.sum.bytes * (1 - j.end.sum.lost_percent / 100) };
    return { sent: j.end.sum_sent?.bytes ?? 0, received: j.end.sum_received?.bytes ?? 0 };
  } finally {
    // Wait for the exit: the next call binds the same port at once, and a dying server still holds it.
    if (server.exitCode === null && server.signalCode === null) {
      const exited = new Promise((res) => server.once('exit', res));
      server.kill('SIGKILL');
      await exited;
    }
    void lab;
  }
}

const modes = [
  { offload: true, encrypt: false, name: 'offload mode' },
  { offload: false, encrypt: false, name: 'per-packet mode' },
  { offload: true, encrypt: true, name: 'offload mode, encrypted' },
  { offload: true, encrypt: false, underlay6: true, name: 'offload mode, IPv6 underlay' },
  { offload: true, encrypt: false, cpu: 0, name: 'offload mode, datapaths pinned to CPU 0' },
];
for (const { offload, encrypt, name, underlay6, cpu } of modes) {
  test(`instances reach each other through a service IP (${name})`, { skip, timeout: 180_000 }, async (t) => {
    const lab = await labFor(t, { hosts: ['w1', 'w2', 'x3'] });
    const workers = await buildOverlay(lab, [lab.host('w1'), lab.host('w2')], { offload, encrypt, underlay6, cpu });
    t.after(() => stopOverlay(workers));
    const [a, b] = workers;

    await t.test('ping v4 and v6', async () => {
      for (const target of [S4, S6]) {
        const r = await a.inst.exec(['ping', '-c', '3', '-i', '0.2', '-W', '2', target]);
        assert.equal(r.code, 0, `ping ${target}: ${r.stdout}${r.stderr}`);
        // Replies come from the address that was dialled, not from B's namespace address.
        assert.match(r.stdout, new RegExp(`from ${target.replace(/\./g, '\\.')}`));
        // Larger than the overlay MTU: the instance's kernel fragments it, every fragment crosses.
        const big = await a.inst.exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', '-s', '4000', target]);
        assert.equal(big.code, 0, `ping -s 4000 ${target}: ${big.stdout}${big.stderr}`);
      }
      // Instance traffic flowed for about a second: the datapath kept warm between the packets
      // (netstack/keep-warm.ts), on the side that sent and on the side that answered.
      for (const w of [a, b]) {
        const st = await statsOf(lab, w.proc);
        assert.ok(st.keep_warm_ticks > 0, `keep_warm_ticks on ${w.host.name}: ${st.keep_warm_ticks}`);
      }
    });

    await t.test('TCP v4 and v6 (iperf3)', async () => {
      for (const target of [S4, S6]) {
        const fwd = await iperf(lab, a, b, target, []);
        assert.ok(fwd.received > 1_000_000, `TCP to ${target}: ${fwd.received} bytes`);
        const rev = await iperf(lab, a, b, target, ['-R']);
        assert.ok(rev.received > 1_000_000, `TCP reverse from ${target}: ${rev.received} bytes`);
      }
    });

    await t.test('request/response back to back: the datapaths poll instead of sleeping; a 5/s ping does not', async () => {
      const caught = async (): Promise<number[]> => Promise.all([a, b].map(async (w) => (await statsOf(lab, w.proc)).busy_poll_caught));
      const before = await caught();
      const server = b.inst.spawn(['sockperf', 'server', '--tcp', '-i', '0.0.0.0', '-p', '11111']);
      try {
        await b.inst.waitListening(11111);
        const r = await a.inst.exec(['sockperf', 'ping-pong', '--tcp', '-i', S4, '-p', '11111', '-m', '64', '-t', '2'], { timeoutMs: 30_000 });
        const m = /ReceivedMessages=(\d+)/.exec(r.stdout + r.stderr);
        assert.ok(r.code === 0 && m && Number(m[1]) > 0, `sockperf ping-pong through ${S4}: ${(r.stdout + r.stderr).slice(-500)}`);
      } finally {
        if (server.exitCode === null && server.signalCode === null) {
          const exited = new Promise((res) => server.once('exit', res));
          server.kill('SIGKILL');
          await exited;
        }
      }
      // The connection's teardown (the killed server's RST) may still be polled for: read until two
      // reads 300 ms apart agree, so the ping below is compared with a datapath at rest.
      let dense = await caught();
      for (let i = 0; i < 10; i++) {
        await new Promise((r) => setTimeout(r, 300));
        const again = await caught();
        if (again.every((v, k) => v === dense[k])) break;
        dense = again;
      }
      for (const [i, w] of [a, b].entries()) {
        assert.ok(dense[i] > before[i], `busy_poll_caught on ${w.host.name}: ${before[i]} → ${dense[i]} over 2 s of ping-pong`);
      }
      const r = await a.inst.exec(['ping', '-c', '5', '-i', '0.2', '-W', '2', S4]);
      assert.equal(r.code, 0, r.stdout);
      assert.deepEqual(await caught(), dense, 'a packet every 200 ms is not polled for');
    });

    await t.test('UDP v4 and v6 (iperf3)', async () => {
      for (const target of [S4, S6]) {
        const r = await iperf(lab, a, b, target, ['-u', '-b', '20M', '-l', '1200']);
        assert.ok(r.received > 1_000_000, `UDP to ${target}: ${r.received} bytes`);
      }
    });

    await t.test('UDP to a closed port is refused at once (the ICMP error crosses back)', async () => {
      for (const [target, fam] of [[S4, 'udp4'], [S6, 'udp6']] as const) {
        const code = `const s=require('dgram').createSocket('${fam}');` +
          `s.on('error',(e)=>{console.log(e.code);process.exit(0);});` +
          `s.connect(9,'${target}',()=>{s.send('x');setTimeout(()=>s.send('y'),300);` +
          `setTimeout(()=>{console.log('TIMEOUT');process.exit(0);},3000);});`;
        const r = await a.inst.exec([process.execPath, '-e', code]);
        assert.equal(r.stdout.trim(), 'ECONNREFUSED', `UDP to ${target}:9: ${r.stdout}${r.stderr}`);
      }
    });

    await t.test('a spoofed datagram with a wrong key changes nothing and is counted', async () => {
      const before = await statsOf(lab, b.proc);
      // A well-formed tunnel datagram claiming to be worker 1, carrying a UDP packet for B, with a
      // tag made with a key the attacker guessed.
      const inner = buildUdp4('10.30.1.1', b.nsIp, 4444, 9, 'spoofed');
      const hdr = Buffer.alloc(24);
      hdr[0] = 1; hdr[1] = 1; hdr[2] = 0; hdr[3] = 1;
      hdr.writeUInt32BE(1, 4);
      hdr.writeUInt32BE(0x7fffffff, 8);
      hdr.writeUInt32BE(1, 12);
      hdr.writeUInt16BE(0, 16); hdr.writeUInt16BE(1, 18);
      hdr.writeUInt32BE(inner.length, 20);
      const dgram = Buffer.concat([hdr, inner, Buffer.alloc(16, 0xab)]).toString('hex');
      const to = underlay6 ? b.host.ip6 : b.host.ip;
      const code = `const s=require('dgram').createSocket('udp${underlay6 ? 6 : 4}');const b=Buffer.from('${dgram}','hex');` +
        `let n=0;const go=()=>s.send(b,${TUNNEL_PORT},'${to}',()=>{if(++n<5)go();else s.close();});go();`;
      const r = await lab.host('x3').exec([process.execPath, '-e', code]);
      assert.equal(r.code, 0, r.stderr);
      await new Promise((res) => setTimeout(res, 300));
      const after = await statsOf(lab, b.proc);
      assert.equal(after.tunnel_drop_bad_tag - before.tunnel_drop_bad_tag, 5, 'each forged datagram counted');
      assert.equal(after.dev_tx_packets, before.dev_tx_packets, 'nothing reached the TUN');
      // And the overlay still works.
      const p = await a.inst.exec(['ping', '-c', '1', '-W', '2', S4]);
      assert.equal(p.code, 0);
    });

    if (cpu !== undefined) {
      await t.test('the loop runs on the given CPU and the TUN\'s receive is steered to the others', async () => {
        const others = allowedCpus().filter((c) => c !== cpu);
        for (const w of workers) {
          // The loop runs on the process's main thread, whose task id is the pid.
          const status = await w.host.execOk(['cat', `/proc/${w.proc.pid}/task/${w.proc.pid}/status`]);
          assert.match(status, new RegExp(`Cpus_allowed_list:\\s+${cpu}\\n`), `datapath on ${w.host.name}`);
          if (others.length === 0) continue; // one CPU: nothing to steer to, nothing to tell apart
          // Only the loop: V8's and libuv's helper threads stay free to run anywhere.
          const tasks = (await w.host.execOk(['ls', `/proc/${w.proc.pid}/task`])).trim().split(/\s+/);
          const helper = await w.host.execOk(['cat', `/proc/${w.proc.pid}/task/${tasks.find((x) => x !== String(w.proc.pid))}/status`]);
          assert.doesNotMatch(helper, new RegExp(`Cpus_allowed_list:\\s+${cpu}\\n`));
          const rps = (await w.host.execOk(['cat', '/sys/class/net/canopy0/queues/rx-0/rps_cpus'])).trim();
          assert.equal(Number.parseInt(rps.replace(/,/g, ''), 16), others.reduce((m, c) => m + 2 ** c, 0), `rps_cpus on ${w.host.name}: ${rps}`);
        }
      });
    }
  });
}

function buildUdp4(src: string, dst: string, sport: number, dport: number, text: string): Buffer {
  const payload = Buffer.from(text);
  const b = Buffer.alloc(28 + payload.length);
  b[0] = 0x45; b.writeUInt16BE(b.length, 2); b[8] = 64; b[9] = 17;
  Buffer.from(src.split('.').map(Number)).copy(b, 12);
  Buffer.from(dst.split('.').map(Number)).copy(b, 16);
  let s = 0;
  for (let i = 0; i < 20; i += 2) s += b.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  b.writeUInt16BE(~s & 0xffff, 10);
  b.writeUInt16BE(sport, 20); b.writeUInt16BE(dport, 22); b.writeUInt16BE(8 + payload.length, 24);
  payload.copy(b, 28);
  return b;
}
