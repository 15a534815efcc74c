// The DNS wire format, only as far as an authoritative server for one zone needs it: parse a query's
// header, single question and EDNS OPT record; build an answer that copies the question bytes and
// points at them. Hand-written rather than dns-packet because every query passes through here: it
// allocates one Buffer per answer and one string per name (see perf/RESULTS.md, "Service DNS").

export const QType = { A: 1, NS: 2, SOA: 6, PTR: 12, AAAA: 28, SRV: 33, OPT: 41, ANY: 255 } as const;
export const RCode = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export const CLASS_IN = 1;
const HEADER = 12;
/** What we advertise and the most we put in one UDP answer (RFC 9715 guidance). */
export const EDNS_UDP_SIZE = 1232;

export interface Query {
  id: number;
  /** The RD bit, echoed in the answer. */
  rd: boolean;
  /** Byte offset in the packet where each label of `name` starts (for compression pointers). */
  labelOffsets: number[];
  qtype: number;
  qclass: number;
  /** End of the question section: the answer copies bytes [12, questionEnd). */
  questionEnd: number;
  /** EDNS requested (OPT record present): answer with one, and up to this many bytes. */
  edns: boolean;
  udpSize: number;
}

/** A query that cannot be answered normally: drop it, or answer the rcode with what header we have. */
export interface Rejection {
  reject: 'drop' | 'formerr' | 'notimp';
  id: number;
  rd: boolean;
}

export function parseQuery(b: Uint8Array): Query | Rejection {
  if (b.length < HEADER) return { reject: 'drop', id: 0, rd: false };
  const id = (b[0]! << 8) | b[1]!;
  const flags = (b[2]! << 8) | b[3]!;
  const rd = (flags & 0x0100) !== 0;
  // Never answer answers: that is how reflection loops start.
  if (flags & 0x8000) return { reject: 'drop', id, rd };
  if (((flags >> 11) & 0xf) !== 0) return { reject: 'notimp', id, rd };
  const qd = (b[4]! << 8) | b[5]!, an = (b[6]! << 8) | b[7]!, ns = (b[8]! << 8) | b[9]!, ar = (b[10]! << 8) | b[11]!;
  if (qd !== 1 || an !== 0 || ns !== 0 || ar > 1) return { reject: 'formerr', id, rd };
  let p = HEADER;
  const labelOffsets: number[] = [];
  let nameLen = 0;
  for (;;) {
    if (p >= b.length) return { reject: 'formerr', id, rd };
    const len = b[p]!;
    if (len === 0) { p++; break; }
    if (len > 63) return { reject: 'formerr', id, rd }; // compression or reserved bits: not in a question
    if (p + 1 + len > b.length) return { reject: 'formerr', id, rd };
    nameLen += len + 1;
    if (nameLen > 254) return { reject: 'formerr', id, rd };
    labelOffsets.push(p);
    p += 1 + len;
  }
  if (p + 4 > b.length) return { reject: 'formerr', id, rd };
  const qtype = (b[p]! << 8) | b[p + 1]!;
  const qclass = (b[p + 2]! << 8) | b[p + 3]!;
  p += 4;
  const questionEnd = p;
  let edns = false, udpSize = 512;
  if (ar === 1) {
    // The one additional record of a query can only be OPT, owned by the root.
    if (p + 11 > b.length || b[p] !== 0) return { reject: 'formerr', id, rd };
    const type = (b[p + 1]! << 8) | b[p + 2]!;
    const size = (b[p + 3]! << 8) | b[p + 4]!;
    const rdlen = (b[p + 9]! << 8) | b[p + 10]!;
    if (type !== QType.OPT || p + 11 + rdlen !== b.length) return { reject: 'formerr', id, rd };
    edns = true;
    udpSize = Math.max(512, Math.min(size, EDNS_UDP_SIZE));
  } else if (p !== b.length) {
    return { reject: 'formerr', id, rd };
  }
  return { id, rd, labelOffsets, qtype, qclass, questionEnd, edns, udpSize };
}

/** The question name: lower-case, no trailing dot; "" for the root. Built only when needed. */
export function queryName(b: Uint8Array, q: Query): string {
  let s = '';
  for (const o of q.labelOffsets) {
    if (s.length > 0) s += '.';
    const len = b[o]!;
    for (let i = o + 1; i <= o + len; i++) {
      const c = b[i]!;
      s += String.fromCharCode(c >= 0x41 && c <= 0x5a ? c + 32 : c);
    }
  }
  return s;
}

export interface ResourceRecord {
  type: number;
  ttl: number;
  /** Already encoded RDATA. */
  rdata: Uint8Array;
}

/** SRV pointing back at the queried name (compression pointer to offset 12). */
export function rdataSrv(priority: number, weight: number, port: number): Uint8Array {
  return Uint8Array.of(priority >> 8, priority & 0xff, weight >> 8, weight & 0xff, port >> 8, port & 0xff, 0xc0, HEADER);
}

/** SOA for the zone apex whose name starts at `zoneOffset` in the packet (a compression pointer). */
export function rdataSoa(zoneOffset: number, serial: number, minimumTtl: number): Uint8Array {
  const ptr = [0xc0 | (zoneOffset >> 8), zoneOffset & 0xff];
  const out = Uint8Array.from([
    3, 0x6e, 0x73, 0x31, ...ptr, // ns1.<zone>
    10, ...Array.from('hostmaster', (c) => c.charCodeAt(0)), ...ptr, // hostmaster.<zone>
    0, 0, 0, 0, 0, 0, 14, 16, 0, 0, 3, 132, 0, 9, 58, 128, 0, 0, 0, 0, // serial, refresh 3600, retry 900, expire 604800, minimum
  ]);
  const v = new DataView(out.buffer);
  v.setUint32(out.length - 20, serial >>> 0);
  v.setUint32(out.length - 4, minimumTtl >>> 0);
  return out;
}

export interface AnswerSpec {
  rcode: number;
  authoritative: boolean;
  answers: ResourceRecord[];
  /** Authority records (the SOA of negative answers), owned by the zone at `authorityOffset`. */
  authority: ResourceRecord[];
  authorityOffset: number;
}

/** Builds the answer to a parsed query. Answers are owned by the queried name (pointer to offset 12). */
export function buildAnswer(q: Uint8Array, query: Query, a: AnswerSpec): Buffer {
  const qlen = query.questionEnd - HEADER;
  let size = HEADER + qlen + (query.edns ? 11 : 0);
  for (const r of a.answers) size += 12 + r.rdata.length;
  for (const r of a.authority) size += 12 + r.rdata.length;
  let answers = a.answers, authority = a.authority, tc = false;
  if (size > query.udpSize) {
    // Too big for this client's UDP: say so (TC) and send the question only.
    answers = []; authority = []; tc = true;
    size = HEADER + qlen + (query.edns ? 11 : 0);
  }
  const out = Buffer.allocUnsafe(size);
  out.writeUInt16BE(query.id, 0);
  out[2] = 0x80 | (a.authoritative ? 0x04 : 0) | (tc ? 0x02 : 0) | (query.rd ? 0x01 : 0);
  out[3] = 0x80 | (a.rcode & 0xf);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(answers.length, 6);
  out.writeUInt16BE(authority.length, 8);
  out.writeUInt16BE(query.edns ? 1 : 0, 10);
  out.set(q.subarray(HEADER, query.questionEnd), HEADER);
  let p = query.questionEnd;
  const put = (r: ResourceRecord, owner: number): void => {
    out[p] = 0xc0 | (owner >> 8); out[p + 1] = owner & 0xff;
    out.writeUInt16BE(r.type, p + 2);
    out.writeUInt16BE(CLASS_IN, p + 4);
    out.writeUInt32BE(r.ttl >>> 0, p + 6);
    out.writeUInt16BE(r.rdata.length, p + 10);
    out.set(r.rdata, p + 12);
    p += 12 + r.rdata.length;
  };
  for (const r of answers) put(r, HEADER);
  for (const r of authority) put(r, a.authorityOffset);
  if (query.edns) {
    out[p] = 0; out.writeUInt16BE(QType.OPT, p + 1); out.writeUInt16BE(EDNS_UDP_SIZE, p + 3);
    out.writeUInt32BE(0, p + 5); out.writeUInt16BE(0, p + 9);
  }
  return out;
}

/** An error answer from as little as a header: question copied when the query had a parseable one. */
export function buildError(q: Uint8Array, id: number, rd: boolean, rcode: number, query?: Query): Buffer {
  if (query) return buildAnswer(q, query, { rcode, authoritative: false, answers: [], authority: [], authorityOffset: 0 });
  const out = Buffer.alloc(HEADER);
  out.writeUInt16BE(id, 0);
  out[2] = 0x80 | (rd ? 0x01 : 0);
  out[3] = 0x80 | rcode;
  return out;
}
