// Small modules (#22, "No non-test source file over 500 lines"): a source file that grows past the
// limit fails here, naming itself, so it is split while its parts are still easy to tell apart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const LIMIT = 500;

test(`no source file outside test/ is over ${LIMIT} lines`, () => {
  const files = execFileSync('git', ['ls-files', '-z', '--', '*.ts', '*.tsx', '*.js', ':!test/**'], { cwd: root, encoding: 'utf8' })
    .split('\0').filter(Boolean);
  assert.ok(files.length > 100, `git ls-files found only ${files.length} source files`);
  const over = files
    .map((f) => ({ f, lines: readFileSync(join(root, f), 'utf8').split('\n').length - 1 }))
    .filter((x) => x.lines > LIMIT)
    .map((x) => `${x.f}: ${x.lines} lines`);
  assert.deepEqual(over, [], 'split these files by responsibility');
});
