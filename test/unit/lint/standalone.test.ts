// scripts/check-standalone.sh (run first by .ci/run): nothing in the repository may reference the
// project's sibling shared/ folder. It passes on this repository and fails on a planted reference,
// in each spelling a test or tool could use. The planted strings are built at run time so that this
// file does not trip the check itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const script = join(root, 'scripts/check-standalone.sh');
const up = '..', dir = 'shared';

function check(repo: string): { status: number | null; out: string } {
  const r = spawnSync('bash', [script, repo], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

function git(repo: string, ...args: string[]): void {
  const r = spawnSync('git', ['-C', repo, ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
}

test('the repository itself references no sibling shared/ folder', () => {
  const r = check(root);
  assert.equal(r.status, 0, r.out);
});

const planted: Array<[file: string, text: string]> = [
  ['test/a.test.ts', `const f = readFileSync(new URL('${up}/${up}/${dir}/fixtures/sla/x.json', import.meta.url));\n`],
  ['perf/b.ts', `const f = join(here, '${up}', '${dir}', 'fixtures');\n`],
  ['scripts/c.sh', `cp "$ROOT/${up}/${dir}/SPEC.md" /tmp\n`],
  ['README.md', `The contract is [SPEC](${up}/${dir}/SPEC.md).\n`],
];

for (const [file, text] of planted) {
  test(`a reference in ${file} fails the check and is named`, (t) => {
    const repo = mkdtempSync(join(tmpdir(), 'canopy-standalone-'));
    t.after(() => rmSync(repo, { recursive: true, force: true }));
    git(repo, 'init', '-q');
    mkdirSync(join(repo, file, '..'), { recursive: true });
    writeFileSync(join(repo, 'ok.ts'), `const shared = '${up}/${dir}ness'; // not the folder\n`);
    writeFileSync(join(repo, file), text);
    git(repo, 'add', '.');
    const r = check(repo);
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, new RegExp(`^${file.replace(/\./g, '\\.')}:1:`, 'm'));
    assert.doesNotMatch(r.out, /^ok\.ts/m);
  });
}
