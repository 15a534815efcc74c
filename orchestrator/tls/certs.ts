// The certificates Canopy makes for its control links (SPEC §10): a small CA per deployment and one
// certificate per tier, naming every DNS name and address the tier is reached at. node-forge writes
// the X.509 (docs/decisions.md); the RSA keys come from Node's own crypto, which is native and fast.
import { generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import forge from 'node-forge';

export interface Pem {
  cert: string;
  key: string;
}

export interface CertRequest {
  /** Subject CN and file name label, e.g. "root" or "cluster-eu". */
  name: string;
  /** DNS names and IP addresses (v4 or v6) the holder is reached at: its subjectAltName. */
  sans: string[];
  /** Validity in days; default 825 (the most browsers accept for a leaf). */
  days?: number;
}

const DAY_MS = 86_400_000;

function rsaKeys(): { forgeKey: forge.pki.rsa.PrivateKey; forgePub: forge.pki.rsa.PublicKey; pem: string } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(pem) as forge.pki.rsa.PrivateKey;
  return { forgeKey, forgePub: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e), pem };
}

function serial(): string {
  // Positive (high bit clear) and unique: 16 random bytes.
  const b = randomBytes(16);
  b[0]! &= 0x7f;
  return b.toString('hex');
}

function validity(cert: forge.pki.Certificate, days: number): void {
  // An hour back: clocks of the machines in a fleet are not exactly together.
  cert.validity.notBefore = new Date(Date.now() - 3_600_000);
  cert.validity.notAfter = new Date(Date.now() + days * DAY_MS);
}

/** A self-signed CA that may sign only leaf certificates (pathLen 0). */
export function createCa(commonName = 'Canopy CA', days = 3650): Pem {
  const k = rsaKeys();
  const cert = forge.pki.createCertificate();
  cert.publicKey = k.forgePub;
  cert.serialNumber = serial();
  validity(cert, days);
  const subject = [{ name: 'commonName', value: commonName }, { name: 'organizationName', value: 'Canopy' }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(k.forgeKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: k.pem };
}

/** One SAN: an IP address if it parses as one, else a DNS name (checked, so a typo fails here). */
function altName(san: string): { type: 2; value: string } | { type: 7; ip: string } {
  if (isIP(san)) return { type: 7, ip: san };
  if (!/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(san)) {
    throw new Error(`not a DNS name or an IP address: ${JSON.stringify(san)}`);
  }
  return { type: 2, value: san };
}

/** Throws naming the first SAN that is neither a DNS name nor an address. */
export function checkSans(req: CertRequest): void {
  if (req.sans.length === 0) throw new Error(`certificate ${req.name}: needs at least one name or address`);
  for (const s of req.sans) altName(s);
}

/**
 * A certificate for one tier signed by `ca`, for both ends of a link (serverAuth and clientAuth): a
 * cluster serves its API and calls root's.
 */
export function issueCert(ca: Pem, req: CertRequest): Pem {
  checkSans(req);
  const alt = req.sans.map(altName);
  const caCert = forge.pki.certificateFromPem(ca.cert);
  const caKey = forge.pki.privateKeyFromPem(ca.key);
  const k = rsaKeys();
  const cert = forge.pki.createCertificate();
  cert.publicKey = k.forgePub;
  cert.serialNumber = serial();
  validity(cert, req.days ?? 825);
  cert.setSubject([{ name: 'commonName', value: req.name.slice(0, 64) }, { name: 'organizationName', value: 'Canopy' }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    { name: 'subjectAltName', altNames: alt },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: k.pem };
}

export interface CertFacts {
  subject: string;
  sans: string[];
  notAfter: Date;
  isCa: boolean;
}

/** What a PEM certificate says (Node's X509Certificate), for idempotent re-runs and messages. */
export function certFacts(pem: string): CertFacts {
  const x = new X509Certificate(pem);
  const sans = (x.subjectAltName ?? '').split(', ').filter(Boolean).map((s) => s.replace(/^(DNS|IP Address):/, ''));
  return { subject: x.subject, sans, notAfter: new Date(x.validTo), isCa: x.ca };
}

/** True when `certPem` was signed by `caPem` and is valid now. */
export function signedBy(certPem: string, caPem: string): boolean {
  try {
    const c = new X509Certificate(certPem);
    const now = Date.now();
    return c.verify(new X509Certificate(caPem).publicKey) && Date.parse(c.validFrom) <= now && Date.parse(c.validTo) > now;
  } catch {
    return false;
  }
}
