// No test may reach a real registry. containerd tries a registry's own address after its mirrors (even
// after a mirror's "not found"), so every worker a test starts pulls only through mirrors
// (--registry-mirrors-only, which also refuses registries that have no mirror) and docker.io, the
// registry of bare names, gets a mirror on a closed loopback port unless the test brings its own.
export const CLOSED_MIRROR = 'http://127.0.0.1:9';

/** Worker arguments that keep every pull on the machine; `args` are the test's own worker arguments. */
export function registryGuardArgs(args: readonly string[] = []): string[] {
  const hasDockerMirror = args.some((a, i) => (args[i - 1] === '--registry-mirror' && a.startsWith('docker.io=')) || a.startsWith('--registry-mirror=docker.io='));
  return [...(hasDockerMirror ? [] : ['--registry-mirror', `docker.io=${CLOSED_MIRROR}`]), '--registry-mirrors-only'];
}
