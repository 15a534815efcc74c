// Lint: typescript-eslint's recommended rules; `any` is an error in our own code; and the layering of
// the project's folders (README, "Layout"), enforced with ESLint's own no-restricted-imports.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Top-level folders of the project an import can reach (anything else is a package or node:). */
const FOLDERS = ['native', 'netstack', 'proxy', 'dns', 'orchestrator', 'perf', 'scripts', 'bin', 'test'];

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
  message: 'Only test/ imports from test/: move what shipped code needs out of test/.',
};

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
  // Nothing outside test/ imports from test/. perf/ is excluded: benchmarks are development tooling
  // that drive the test lab and harnesses (test/lab, test/integration), and are not shipped.
  {
    files: ['**/*.ts', '**/*.js'],
    ignores: ['test/**', 'perf/**',
      // moved by the orchestrator half (issue 22: the lab's code leaves test/ for the CLI's sake)
      'orchestrator/commands/lab.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [fromTest] }] },
  },
  ...Object.entries(LAYERS).map(([folder, allowed]) => ({
    files: [`${folder}/**/*.ts`],
    rules: { 'no-restricted-imports': ['error', { patterns: forbidden(folder, allowed) }] },
  })),
);
