// Lint: typescript-eslint's recommended rules; `any` is an error in our own code; and the layering of
// the project's folders (README, "Layout"), enforced with ESLint's own no-restricted-imports.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Top-level folders of the project an import can reach (anything else is a package or node:). */
const FOLDERS = ['native', 'netstack', 'proxy', 'dns', 'orchestrator', 'lab', 'perf', 'scripts', 'bin', 'test', 'harness'];

/** The packet side, lowest first: each folder may import only the folders named for it. */
export const LAYERS = {
  native: [],
  netstack: ['native'],
  proxy: ['netstack', 'native'],
  dns: ['proxy', 'netstack', 'native'],
};

/** What a file of `folder` must not import: every other project folder it is not allowed. */
function forbidden(folder, allowed) {
  return FOLDERS.filter((f) => f !== folder && !allowed.includes(f)).map((f) => ({
    group: [`**/${f}/**`],
    message: allowed.length === 0
      ? `${folder}/ imports no other folder of the project (README, "Layout").`
      : `${folder}/ may import only ${allowed.join(', ')} (README, "Layout").`,
  }));
}

const fromTest = {
  group: ['**/test/**'],
  message: 'Only test/ imports from test/: move what shipped code needs out of test/ (harness/ holds what tests and benchmarks share).',
};
const fromHarness = {
  group: ['**/harness/**'],
  message: 'harness/ serves tests and benchmarks only: shipped code must not import it.',
};

// Orchestrator layering (docs/layering.md): protocol/ at the bottom, imported by every tier; the tiers
// (root, cluster, worker) never import each other. ESLint's no-restricted-imports does not merge across
// config objects, so every block repeats the rule that shipped code imports neither test/ nor harness/.
const noTestImports = { regex: '(^|/)(test|harness)/', message: 'product code must not import test/ or harness/ (move what it needs into the product)' };
const tierRule = (forbidden, why) => ({
  'no-restricted-imports': ['error', { patterns: [noTestImports, ...forbidden.map((t) => ({ regex: `^(\\.\\./)+(orchestrator/)?${t}/`, message: why }))] }],
});
/** What uses the tiers (the CLI's commands, local deployments, the CLI's client): never imported by a tier. */
const ABOVE_TIERS = ['commands', 'deployment', 'client'];
const orchestratorLayers = [
  {
    files: ['orchestrator/protocol/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [noTestImports, { regex: '^\\.\\./', message: 'orchestrator/protocol is below every tier: it imports only its own files' }],
      }],
    },
  },
  { files: ['orchestrator/worker/**/*.ts'], rules: tierRule(['root', 'cluster', ...ABOVE_TIERS], 'the worker talks to its cluster over MQTT only, and is below the CLI: shared code lives in orchestrator/protocol') },
  { files: ['orchestrator/cluster/**/*.ts'], rules: tierRule(['root', 'worker', ...ABOVE_TIERS], 'the cluster talks to root over HTTP and to workers over MQTT, and is below the CLI: shared code lives in orchestrator/protocol') },
  { files: ['orchestrator/root/**/*.ts'], rules: tierRule(['cluster', 'worker', ...ABOVE_TIERS], 'root talks to clusters through its ClusterLink, and is below the CLI: shared code lives in orchestrator/protocol') },
  { files: ['orchestrator/mqtt/**/*.ts'], rules: tierRule(['root', 'cluster', 'worker', ...ABOVE_TIERS], 'mqtt/ is below the tiers that use it') },
  { files: ['orchestrator/client/**/*.ts'], rules: tierRule(['deployment', 'commands'], 'client/ is below deployment/ and commands/') },
];

export default tseslint.config(
  { ignores: ['node_modules/**', 'perf/out/**', 'dashboard/dist/**', 'dist/**', 'test/output/**', 'orchestrator/**/*.generated.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  // Nothing outside test/ imports from test/. What tests and benchmarks share (lab deployments, packet
  // builders, loopback helpers) lives in harness/, which only test/ and perf/ may import.
  {
    files: ['**/*.ts', '**/*.js'],
    ignores: ['test/**'],
    rules: { 'no-restricted-imports': ['error', { patterns: [fromTest, fromHarness] }] },
  },
  {
    files: ['perf/**/*.ts', 'harness/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [fromTest] }] },
  },
  ...Object.entries(LAYERS).map(([folder, allowed]) => ({
    files: [`${folder}/**/*.ts`],
    rules: { 'no-restricted-imports': ['error', { patterns: forbidden(folder, allowed) }] },
  })),
  ...orchestratorLayers,
);
