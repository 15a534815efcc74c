// A worker's RTT to an address outside the overlay, for the cluster's `latency` constraint with a
// `target` (SPEC §12): a few ICMP echoes (iputils `ping`, which the worker's host has), and where those
// get no answer (ICMP filtered) a TCP connect, whose SYN is answered by a SYN-ACK or a RST one RTT later
// either way. Short by design: the cluster waits for it while it places.
import { execFile } from 'node:child_process';
import { connect } from 'node:net';
import { isIP } from 'node:net';
import type { ProbeResult } from '../mqtt/messages.ts';

const ECHOES = 3;
const TCP_PORTS = [443, 80];
const TCP_TIMEOUT_MS = 1000;

/** The RTTs (ms) of each echo reply in `ping` output. */
export function parsePingTimes(out: string): number[] {
  const times: number[] = [];
  for (const m of out.matchAll(/time[=<]([0-9.]+) ?ms/g)) {
    const v = Number(m[1]);
    if (Number.isFinite(v)) times.push(v);
  }
  return times;
}

/** The median of the samples (the minimum of two): one late reply does not decide. */
export function typicalRtt(samples: readonly number[]): number | null {
  if (samples.length === 0) return null;
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)]!;
}

function pingOnce(target: string): Promise<number[]> {
  return new Promise((resolve) => {
    execFile('ping', ['-n', '-c', String(ECHOES), '-i', '0.2', '-W', '1', target],
      { timeout: 4000 }, (_err, stdout) => resolve(parsePingTimes(String(stdout ?? ''))));
  });
}

function tcpConnect(target: string, port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const elapsed = (): number => Number(process.hrtime.bigint() - t0) / 1e6;
    const s = connect({ host: target, port });
    const timer = setTimeout(() => { s.destroy(); resolve(null); }, TCP_TIMEOUT_MS);
    s.once('connect', () => { const ms = elapsed(); clearTimeout(timer); s.destroy(); resolve(ms); });
    s.once('error', (e: NodeJS.ErrnoException) => {
      const ms = elapsed();
      clearTimeout(timer);
      // A refusal is the target's RST: it took one round trip as well.
      resolve(e.code === 'ECONNREFUSED' ? ms : null);
    });
  });
}

export async function probeRtt(probeId: string, target: string): Promise<ProbeResult> {
  if (isIP(target) === 0) return { probe_id: probeId, target, rtt_ms: null, method: 'none', error: 'target is not an IP address' };
  const echo = typicalRtt(await pingOnce(target));
  if (echo !== null) return { probe_id: probeId, target, rtt_ms: Math.round(echo * 1000) / 1000, method: 'icmp' };
  const tcp: number[] = [];
  for (const port of TCP_PORTS) {
    const ms = await tcpConnect(target, port);
    if (ms === null) continue;
    // A second handshake on the port that answered: the first may have paid for ARP or a cold path.
    tcp.push(ms, (await tcpConnect(target, port)) ?? ms);
    break;
  }
  const rtt = typicalRtt(tcp);
  if (rtt !== null) return { probe_id: probeId, target, rtt_ms: Math.round(rtt * 1000) / 1000, method: 'tcp' };
  return { probe_id: probeId, target, rtt_ms: null, method: 'none', error: `no answer to ICMP echo or TCP ${TCP_PORTS.join('/')}` };
}
