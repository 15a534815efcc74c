// `canopy dns-relay --listen <ip:port>`: relays every DNS query to the upstream resolvers (default: the
// nameservers of /etc/resolv.conf) until SIGTERM/SIGINT. `canopy up` runs one on its bridge address so
// that workers in their own network namespaces resolve outside names as their host does.
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { fail } from '../client/terminal.ts';
import { parseUpstream, upstreamsFromResolvConf } from '../../dns/forwarder.ts';
import { DnsRelay } from '../../dns/relay.ts';

export function register(program: Command): void {
  program
    .command('dns-relay')
    .description('relay DNS queries to upstream resolvers (run by `canopy up` on its bridge for the workers)')
    .requiredOption('--listen <ip:port>', 'address and port to serve on (UDP and TCP)')
    .option('--upstream <address...>', 'resolvers to relay to (default: nameservers in /etc/resolv.conf)')
    .option('--for <dir>', 'state directory of the deployment it serves (so `canopy down --force` finds it)')
    .action(async (o: { listen: string; upstream?: string[] }) => {
      let relay: DnsRelay;
      try {
        const listen = parseUpstream(o.listen);
        const upstreams = o.upstream?.map(parseUpstream) ?? upstreamsFromResolvConf(readFileSync('/etc/resolv.conf', 'utf8'), [listen.address]);
        relay = new DnsRelay({
          listen, upstreams,
          log: (r) => process.stderr.write(`${JSON.stringify({ ts: new Date().toISOString(), component: 'dns-relay', ...r })}\n`),
        });
        await relay.start();
      } catch (e) {
        fail('dns-relay', e);
      }
      const stop = (): void => { relay.close(); process.exit(0); };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
}
