// The resolv.conf each instance namespace gets: its worker's DNS server, search domains that make the
// short names of SPEC §2.1 work from inside an application, and an ndots high enough that those short
// names (up to three labels, e.g. closest.ms2.otherns) try the search list first.
import { mkdir, writeFile, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface ResolvConfOptions {
  /** The worker's DNS server addresses (bridge address; v4 and/or v6). */
  nameservers: string[];
  app: string;
  appns: string;
  /** The instance's own service namespace, so that `closest.ms2` means a sibling service. */
  svcns: string;
  zone?: string;
  ndots?: number;
}

export function resolvConf(o: ResolvConfOptions): string {
  const zone = o.zone ?? 'canopy';
  const search = [`${o.svcns}.${o.app}.${o.appns}.${zone}`, `${o.app}.${o.appns}.${zone}`];
  return [
    '# Written by Canopy: the worker\'s service DNS. Short names such as closest.<svc> or <svc>.<svcns>',
    '# resolve through the search list; other names are forwarded to the worker\'s upstream resolvers.',
    ...o.nameservers.map((n) => `nameserver ${n}`),
    `search ${search.join(' ')}`,
    `options ndots:${o.ndots ?? 3} timeout:2 attempts:2`,
    '',
  ].join('\n');
}

/** Where `ip netns exec <ns>` bind-mounts a namespace's own resolv.conf. */
export function netnsResolvConfPath(netns: string): string {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(netns) || netns.startsWith('.')) throw new Error(`bad namespace name: ${netns}`);
  return `/etc/netns/${netns}/resolv.conf`;
}

/**
 * Written in place (truncated, never replaced by a new file): a container runtime bind-mounts the file
 * before it is filled, and a bind mount keeps the inode it was made on.
 */
export async function writeNetnsResolvConf(netns: string, o: ResolvConfOptions): Promise<string> {
  const path = netnsResolvConfPath(netns);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, resolvConf(o));
  return path;
}

export async function removeNetnsResolvConf(netns: string): Promise<void> {
  await rm(dirname(netnsResolvConfPath(netns)), { recursive: true, force: true });
}
