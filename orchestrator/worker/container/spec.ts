// The OCI runtime spec of an instance's container, from the image's config and the descriptor:
// `cmd` replaces the image's entrypoint, `args` its cmd, `environment` adds to and overrides its env
// (Docker's rules); working dir and numeric user come from the image. The container joins the
// instance's existing network namespace and the sandbox's cgroup, so addresses and limits are the
// same as a process's.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { netnsResolvConfPath } from '../../../dns/resolv-conf.ts';

export interface ImageConfig {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[] | null;
  WorkingDir?: string;
  User?: string;
}

export interface ImageInfo {
  config: ImageConfig;
  /** Uncompressed layer digests, bottom first. */
  diffIds: string[];
}

/** The chain ID of the top layer: the snapshot a container's rootfs is prepared from. */
export function chainId(diffIds: readonly string[]): string {
  let id = diffIds[0];
  if (id === undefined) throw new Error('image has no layers');
  for (const d of diffIds.slice(1)) id = `sha256:${createHash('sha256').update(`${id} ${d}`).digest('hex')}`;
  return id;
}

export interface ContainerRequest {
  cmd: string[];
  args: string[];
  environment: string[];
  memory: number;
  vcpus: number;
  pidsMax: number;
  netns: string;
  /** Cgroup path relative to each hierarchy's root (the sandbox's). */
  cgroupRel: string;
  hostname: string;
}

/** Docker's rules for what runs: descriptor cmd replaces entrypoint (and drops the image's cmd). */
export function processArgs(image: ImageConfig, cmd: string[], args: string[]): string[] {
  const entrypoint = cmd.length > 0 ? cmd : image.Entrypoint ?? [];
  const rest = args.length > 0 ? args : cmd.length > 0 ? [] : image.Cmd ?? [];
  const all = [...entrypoint, ...rest];
  if (all.length === 0) throw new Error('the image has no entrypoint or cmd and the descriptor gives none');
  return all;
}

export function mergeEnv(image: readonly string[], overrides: readonly string[]): string[] {
  const out = new Map<string, string>();
  for (const kv of [...image, ...overrides]) {
    const i = kv.indexOf('=');
    if (i > 0) out.set(kv.slice(0, i), kv);
  }
  if (!out.has('PATH')) out.set('PATH', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  return [...out.values()];
}

/** Numeric `uid[:gid]` or root; a user name would need the image's /etc/passwd, which is not read yet. */
export function parseUser(user: string | undefined): { uid: number; gid: number } {
  if (!user || user === 'root' || user === '0') return { uid: 0, gid: 0 };
  const m = /^(\d+)(?::(\d+))?$/.exec(user);
  if (!m) throw new Error(`image user "${user}" is a name; only numeric uid[:gid] is supported`);
  return { uid: Number(m[1]), gid: Number(m[2] ?? m[1]) };
}

const CAPS = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE'];

/** containerd's default spec (`ctr oci spec`) with the instance's process, namespace, cgroup and limits. */
export function runtimeSpec(image: ImageInfo, r: ContainerRequest): object {
  const mounts: object[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
  ];
  // The net manager's resolver config for the namespace (service DNS, search domains), as
  // `ip netns exec` gives it to a process.
  const resolv = netnsResolvConfPath(r.netns);
  if (existsSync(resolv)) mounts.push({ destination: '/etc/resolv.conf', type: 'bind', source: resolv, options: ['rbind', 'ro'] });
  const resources: Record<string, unknown> = { devices: [{ allow: false, access: 'rwm' }], pids: { limit: r.pidsMax } };
  if (r.memory > 0) resources.memory = { limit: r.memory * 1024 * 1024 };
  if (r.vcpus > 0) resources.cpu = { quota: Math.max(1000, Math.round(r.vcpus * 100_000)), period: 100_000 };
  return {
    ociVersion: '1.0.2-dev',
    process: {
      user: parseUser(image.config.User),
      args: processArgs(image.config, r.cmd, r.args),
      env: mergeEnv(image.config.Env ?? [], r.environment),
      cwd: image.config.WorkingDir || '/',
      capabilities: { bounding: CAPS, effective: CAPS, permitted: CAPS },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs' },
    hostname: r.hostname,
    mounts,
    linux: {
      resources,
      cgroupsPath: `/${r.cgroupRel}`,
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network', path: `/run/netns/${r.netns}` }],
      maskedPaths: ['/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats',
        '/proc/sched_debug', '/sys/firmware', '/proc/scsi'],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}
