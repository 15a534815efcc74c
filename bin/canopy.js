#!/usr/bin/env node
// The `canopy` command. Runs the compiled CLI (dist/canopy.js: `npm run build`, which
// scripts/install-deps.sh runs), so that neither the CLI nor the daemons it starts carry the
// TypeScript loader. The TypeScript sources run through tsx instead when CANOPY_FROM_SOURCE=1 (the
// tests set it), when there is no build, or when a source is newer than the build (a developer's
// edit, a checkout): never a stale build. Checking the dates of ~300 files costs a few milliseconds.
import { existsSync, readdirSync, statSync } from 'node:fs';
import process from 'node:process';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const entry = join(repo, 'dist/canopy.js');
// The same list as scripts/build.ts SOURCE_DIRS.
const SOURCE_DIRS = ['orchestrator', 'proxy', 'netstack', 'native', 'dns', 'lab'];

function newerSource(dir, than) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory() ? newerSource(p, than) : e.name.endsWith('.ts') && statSync(p).mtimeMs > than) return true;
  }
  return false;
}

function buildUsable() {
  if (process.env.CANOPY_FROM_SOURCE === '1' || !existsSync(entry)) return false;
  const built = statSync(entry).mtimeMs;
  if (SOURCE_DIRS.some((d) => existsSync(join(repo, d)) && newerSource(join(repo, d), built))) {
    process.stderr.write('canopy: sources are newer than the build in dist/ (npm run build); running them through tsx\n');
    return false;
  }
  return true;
}

if (buildUsable()) {
  await import(pathToFileURL(entry).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../orchestrator/cli.ts');
}
