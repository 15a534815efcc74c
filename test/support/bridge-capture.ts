// A packet capture on a lab's bridge (the emulated switch every host's link is a port of), without a
// capture tool: a Python AF_PACKET socket in the switch namespace that reads every frame crossing br0
// and counts the UDP datagrams to or from a port, and those of them holding a marker in their bytes.
// It runs until stop() and then reports; what crossed the wire is what a host on it could read.
import { spawn, type ChildProcess } from 'node:child_process';

const SCRIPT = String.raw`
import json, select, socket, struct, sys
port, marker = int(sys.argv[1]), sys.argv[2].encode()
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(('br0', 0))
# Promiscuous (as tcpdump does): a bridge passes frames between its ports up to br0 only then.
s.setsockopt(263, 1, struct.pack('iHH8s', socket.if_nametoindex('br0'), 1, 0, b''))  # SOL_PACKET, PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC
frames = udp = with_marker = 0
print('ready', flush=True)
while True:
    r, _, _ = select.select([s, sys.stdin], [], [])
    if sys.stdin in r:
        break
    f, addr = s.recvfrom(65535)
    if addr[2] == socket.PACKET_OUTGOING:
        continue  # the bridge forwarding a frame out of another port: counted once, where it came in
    frames += 1
    if len(f) < 42 or f[12:14] != b'\x08\x00' or f[23] != 17:
        continue
    ihl = (f[14] & 15) * 4
    sport, dport = struct.unpack('!HH', f[14 + ihl:18 + ihl])
    if port not in (sport, dport):
        continue
    udp += 1
    if marker in f:
        with_marker += 1
print(json.dumps({'frames': frames, 'udp': udp, 'with_marker': with_marker}), flush=True)
`;

export interface CaptureResult {
  /** Frames that entered the bridge. */
  frames: number;
  /** IPv4 UDP datagrams to or from the port. */
  udp: number;
  /** Of those, the ones whose bytes contain the marker. */
  with_marker: number;
}

export class BridgeCapture {
  private out = '';
  private err = '';
  private readonly done: Promise<number | null>;

  private constructor(private readonly p: ChildProcess) {
    p.stdout!.setEncoding('utf8').on('data', (d: string) => (this.out += d));
    p.stderr!.setEncoding('utf8').on('data', (d: string) => (this.err += d));
    this.done = new Promise((resolve) => p.once('exit', resolve));
  }

  /** Starts capturing on br0 of `switchNetns`; resolves once the socket is bound. */
  static async start(switchNetns: string, udpPort: number, marker: string): Promise<BridgeCapture> {
    const p = spawn('ip', ['netns', 'exec', switchNetns, 'python3', '-c', SCRIPT, String(udpPort), marker], { stdio: ['pipe', 'pipe', 'pipe'] });
    const c = new BridgeCapture(p);
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (c.out.includes('ready\n')) resolve();
      };
      p.stdout!.on('data', check);
      void c.done.then((code) => reject(new Error(`capture exited with ${code}: ${c.err}`)));
    });
    return c;
  }

  /** Ends the capture and returns its counts. */
  async stop(): Promise<CaptureResult> {
    this.p.stdin!.end('stop\n');
    const code = await this.done;
    const line = this.out.trim().split('\n').at(-1) ?? '';
    if (code !== 0) throw new Error(`capture exited with ${code}: ${this.err}`);
    return JSON.parse(line) as CaptureResult;
  }

  /** For t.after: ends the capture if a failure left it running. */
  kill(): void {
    if (this.p.exitCode === null) this.p.kill('SIGKILL');
  }
}
