// `canopy certs --out <dir> --cert root=<names,addresses> --cert cluster-eu=… …`: the CA and the
// per-tier certificates of a real fleet (SPEC §10), for `--tls-cert/--tls-key` on each server and
// `--ca` on each client. Idempotent: a second run keeps what is still right.
import type { Command } from 'commander';
import { fail } from '../client/terminal.ts';
import { ensureFleetCerts, parseCertSpec } from '../tls/fleet.ts';

const collect = (v: string, prev: string[]): string[] => [...prev, v];

export function register(program: Command): void {
  program
    .command('certs')
    .description('make a CA and a TLS certificate per tier for a fleet (root, clusters, workers)')
    .requiredOption('--out <dir>', 'folder for ca.pem, ca-key.pem and <name>.pem + <name>-key.pem')
    .option('--cert <name=sans>', 'a certificate: file name and the DNS names and IP addresses it is reached at, e.g. root=root.example.org,203.0.113.7 (repeatable)', collect, [])
    .option('--new-ca', 'make a new CA even if one is there (needs --force when it is)')
    .option('--force', 'replace an existing CA (every certificate is then re-issued)')
    .action((o: { out: string; cert: string[]; newCa?: boolean; force?: boolean }) => {
      try {
        const requests = o.cert.map(parseCertSpec);
        const r = ensureFleetCerts(o.out, requests, { force: o.force, newCa: o.newCa });
        for (const n of r.made) console.log(`made ${n === 'ca' ? `CA ${r.paths.ca} (key ${r.paths.caKey}, mode 0600)` : `${n}: ${r.paths.cert(n)} + ${r.paths.key(n)}`}`);
        for (const n of r.kept) console.log(`kept ${n === 'ca' ? `CA ${r.paths.ca}` : `${n}: ${r.paths.cert(n)}`} (still valid)`);
        console.log(`servers: --tls-cert <name>.pem --tls-key <name>-key.pem; clients: --ca ${r.paths.ca} (or CANOPY_CA); keep ca-key.pem off the fleet`);
      } catch (e) {
        fail('certs', e as Error);
      }
    });
}
