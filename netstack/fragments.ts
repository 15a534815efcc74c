// IP fragments: only the first carries ports, so the table sees the first and its later fragments
// get what it got. Each direction keeps its own memory (the keys of the two never meet).
import { Verdict, type Rewrite } from './table.ts';
import type { PacketInfo } from './packet.ts';

/** Fragmented datagrams remembered (first fragment's outcome, for the later ones); oldest go first. */
const FRAG_MEMORY = 1024;

/** What the first fragment of a datagram became, applied to its later fragments. */
interface FragOutcome {
  verdict: Verdict;
  peer: number;
  src: Uint8Array;
  dst: Uint8Array;
}

export class FragmentMemory {
  private readonly frags = new Map<string, FragOutcome>();

  /** Family, protocol, addresses and identification of the parsed fragment m in b. */
  key(m: PacketInfo, b: Uint8Array): string {
    const a = m.family === 4 ? 4 : 16;
    let k = String.fromCharCode(m.proto, m.fragId >>> 16, m.fragId & 0xffff);
    for (let i = 0; i < a; i += 2) k += String.fromCharCode((b[m.srcOff + i] << 8) | b[m.srcOff + i + 1], (b[m.dstOff + i] << 8) | b[m.dstOff + i + 1]);
    return k;
  }

  /** Records the first fragment's final addresses (after every rewrite) for its later fragments. */
  remember(key: string, m: PacketInfo, b: Uint8Array, verdict: Verdict, peer: number): void {
    const a = m.family === 4 ? 4 : 16;
    if (this.frags.size >= FRAG_MEMORY) {
      const oldest = this.frags.keys().next();
      if (!oldest.done) this.frags.delete(oldest.value);
    }
    this.frags.set(key, { verdict, peer, src: b.slice(m.srcOff, m.srcOff + a), dst: b.slice(m.dstOff, m.dstOff + a) });
  }

  /** A later fragment gets what its first fragment got; Drop when the first was never seen. */
  later(key: string, rw: Rewrite): Verdict {
    const f = this.frags.get(key);
    if (!f) return Verdict.Drop;
    rw.rewriteSrc = true;
    rw.rewriteDst = true;
    rw.newSport = 0;
    rw.newDport = 0;
    rw.src.set(f.src, 0);
    rw.dst.set(f.dst, 0);
    rw.peer = f.peer;
    return f.verdict;
  }
}
