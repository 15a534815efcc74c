// Lint: typescript-eslint's recommended rules; `any` is an error in our own code.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Orchestrator layering (docs/layering.md): protocol/ at the bottom, imported by every tier; the tiers
// (root, cluster, worker) never import each other; nothing outside test/ imports test/. ESLint's
// no-restricted-imports does not merge across config objects, so every block repeats the test/ rule.
const noTestImports = { regex: '(^|/)test/', message: 'product code must not import test/ (move what it needs into the product)' };
const tierRule = (forbidden, why) => ({
  'no-restricted-imports': ['error', { patterns: [noTestImports, ...forbidden.map((t) => ({ regex: `^(\\.\\./)+(orchestrator/)?${t}/`, message: why }))] }],
});
const orchestratorLayers = [
  // perf/ is test tooling too (it drives test/'s harnesses); see docs/layering.md.
  { files: ['**/*.ts'], ignores: ['test/**', 'perf/**'], rules: { 'no-restricted-imports': ['error', { patterns: [noTestImports] }] } },
  {
    files: ['orchestrator/protocol/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [noTestImports, { regex: '^\\.\\./', message: 'orchestrator/protocol is below every tier: it imports only its own files' }],
      }],
    },
  },
  { files: ['orchestrator/worker/**/*.ts'], rules: tierRule(['root', 'cluster'], 'the worker talks to its cluster over MQTT only: shared types live in orchestrator/protocol') },
  { files: ['orchestrator/cluster/**/*.ts'], rules: tierRule(['root', 'worker'], 'the cluster talks to root over HTTP and to workers over MQTT: shared types live in orchestrator/protocol') },
  { files: ['orchestrator/root/**/*.ts'], rules: tierRule(['cluster', 'worker'], 'root talks to clusters through its ClusterLink: shared types live in orchestrator/protocol') },
  { files: ['orchestrator/mqtt/**/*.ts'], rules: tierRule(['root', 'cluster', 'worker'], 'mqtt/ is below the tiers that use it') },
  { files: ['orchestrator/client/**/*.ts'], rules: tierRule(['deployment', 'commands'], 'client/ is below deployment/ and commands/') },
];

export default tseslint.config(
  { ignores: ['node_modules/**', 'perf/out/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  ...orchestratorLayers,
);
