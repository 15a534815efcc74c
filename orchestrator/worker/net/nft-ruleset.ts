// The worker's nftables table, rendered whole from the current state and swapped in one transaction
// (`nft -f`): host port mappings (DNAT to instances, from outside and from the host itself) and
// masquerading of instance traffic that leaves for the outside world. Overlay traffic (bridge ↔ TUN)
// is never NATed: the datapath needs the instances' own addresses.
import type { PortMapping } from './port-mappings.ts';

export interface NatTarget {
  ns_ip: string;
  ns_ip_v6: string | null;
  ports: PortMapping[];
}

export interface RulesetInput {
  table: string;
  bridge: string;
  tun: string;
  subnetV4: string;
  subnetV6: string | null;
  targets: NatTarget[];
}

function dnatRules(targets: NatTarget[], prefix: string): string[] {
  const out: string[] = [];
  for (const t of targets) {
    for (const p of t.ports) {
      out.push(`    ${prefix}meta nfproto ipv4 ${p.proto} dport ${p.host} dnat ip to ${t.ns_ip}:${p.container}`);
      if (t.ns_ip_v6) out.push(`    ${prefix}meta nfproto ipv6 ${p.proto} dport ${p.host} dnat ip6 to [${t.ns_ip_v6}]:${p.container}`);
    }
  }
  return out;
}

export function renderRuleset(i: RulesetInput): string {
  const notOverlay = `oifname != { "${i.bridge}", "${i.tun}" }`;
  return [
    `add table inet ${i.table}`,
    `delete table inet ${i.table}`,
    `table inet ${i.table} {`,
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    ...dnatRules(i.targets, `iifname != "${i.bridge}" `),
    '  }',
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    ...dnatRules(i.targets, 'fib daddr type local '),
    '  }',
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    `    ip saddr ${i.subnetV4} ${notOverlay} masquerade`,
    ...(i.subnetV6 ? [`    ip6 saddr ${i.subnetV6} ${notOverlay} masquerade`] : []),
    '  }',
    '}',
    '',
  ].join('\n');
}
