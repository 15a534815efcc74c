// Compiles the `canopy` command (orchestrator/cli.ts and everything it loads) to JavaScript in dist/,
// so that the CLI and the daemons it starts run without the TypeScript loader (tsx and esbuild cost a
// daemon ~25 MB and its start-up time). One ES module bundle with split chunks: what a subcommand
// imports lazily (`await import(…)`) stays in its own chunk and is loaded only by that subcommand.
// npm packages stay outside the bundle (native addons cannot be bundled; node_modules is there anyway).
// Run by scripts/install-deps.sh and `npm run build`; bin/canopy.js runs dist/ when it is newer than
// the sources, the sources through tsx otherwise. Usage: node --import tsx scripts/build.ts [outdir]
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { createRequire, isBuiltin } from 'node:module';
import { pathToFileURL } from 'node:url';
import { build, type Plugin } from 'esbuild';
import { writeValidators } from './gen-validators.ts';

export const REPO = resolve(import.meta.dirname, '..');
export const DIST = join(REPO, 'dist');
/** The directories whose TypeScript the command is built from (bin/canopy.js checks their dates). */
export const SOURCE_DIRS = ['orchestrator', 'proxy', 'netstack', 'native', 'dns', 'lab'];

/**
 * In the bundle, `import.meta.url` and `import.meta.dirname` would name the chunk in dist/; the code
 * uses them to find files beside its source (gRPC protos, the demo SLA, bin/canopy.js, the dashboard,
 * the lab's relay script). This keeps their meaning: the source file's own location, found relative
 * to the chunk, so a checkout that moves keeps working.
 */
function sourceLocation(outdir: string): Plugin {
  return {
    name: 'canopy-source-location',
    setup(b) {
      b.onLoad({ filter: /\.ts$/ }, (args) => {
        if (args.path.includes(`${sep}node_modules${sep}`)) return undefined;
        const text = readFileSync(args.path, 'utf8');
        if (!text.includes('import.meta.')) return { contents: text, loader: 'ts' };
        const rel = relative(outdir, args.path).split(sep).join('/');
        const url = `new URL(${JSON.stringify(rel)}, import.meta.url).href`;
        // One pass: the URL put in for `import.meta.dirname` holds an `import.meta.url` of its own, which
        // a second replacement would wrap again (the path then resolved twice, off the checkout).
        const contents = text
          .replace(/import\.meta\.(dirname|url)/g, (_, k: string) => (k === 'dirname' ? `__canopyDirname(${url})` : url))
          .replace(/^/, 'import { fileURLToPath as __canopyToPath } from "node:url";\n'
            + 'const __canopyDirname = (u: string): string => __canopyToPath(new URL(".", u)).replace(/\\/$/, "");\n');
        return { contents, loader: 'ts' };
      });
    },
  };
}

/**
 * npm packages that can be required are loaded with require() rather than import: Node's import of a
 * CommonJS module first scans it for its export names with a WebAssembly lexer, whose compilation
 * costs each daemon 3–8 MB of memory that never comes back (measured: mqtt through import +11–16 MB,
 * through require +8 MB; issue 16). A package only for ES modules keeps its import.
 */
function cjsByRequire(): Plugin {
  const req = createRequire(join(REPO, 'package.json'));
  const isEsm = (file: string): boolean => {
    if (file.endsWith('.mjs')) return true;
    if (file.endsWith('.cjs')) return false;
    for (let dir = dirname(file); dir !== dirname(dir); dir = dirname(dir)) {
      const pj = join(dir, 'package.json');
      if (existsSync(pj)) return (JSON.parse(readFileSync(pj, 'utf8')) as { type?: string }).type === 'module';
    }
    return false;
  };
  return {
    name: 'canopy-cjs-require',
    setup(b) {
      b.onResolve({ filter: /^[^./]/ }, (args) => {
        if (isBuiltin(args.path) || (args.kind !== 'import-statement' && args.kind !== 'dynamic-import')) return undefined;
        let file: string;
        try {
          file = req.resolve(args.path);
        } catch {
          return undefined;
        }
        return isEsm(file) ? undefined : { path: args.path, namespace: 'canopy-cjs' };
      });
      b.onLoad({ filter: /.*/, namespace: 'canopy-cjs' }, (args) => ({
        contents: `module.exports = __canopyRequire(${JSON.stringify(args.path)});`,
        loader: 'js',
      }));
    },
  };
}

/** Builds the command into `outdir` (default dist/); returns the files written. */
export async function buildCanopy(outdir = DIST): Promise<string[]> {
  // The MQTT payload validators, compiled from their schemas (a no-op when they are current).
  writeValidators();
  rmSync(outdir, { recursive: true, force: true });
  mkdirSync(outdir, { recursive: true });
  const r = await build({
    entryPoints: { canopy: join(REPO, 'orchestrator/cli.ts') },
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    // Readable stack traces in the daemons' logs; the map is there for `node --enable-source-maps`.
    sourcemap: 'linked',
    metafile: true,
    logLevel: 'warning',
    plugins: [sourceLocation(outdir), cjsByRequire()],
    // Every chunk has its own require() for the packages above (resolved from dist/, as an import is).
    banner: { js: 'import { createRequire as __canopyCreateRequire } from "node:module"; const __canopyRequire = __canopyCreateRequire(import.meta.url);' },
  });
  writeFileSync(join(outdir, 'meta.json'), JSON.stringify(r.metafile));
  return Object.keys(r.metafile.outputs);
}

/** The newest modification time (ms) of the command's TypeScript sources. */
export function newestSource(): number {
  let newest = 0;
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
    }
  };
  for (const d of SOURCE_DIRS) if (existsSync(join(REPO, d))) walk(join(REPO, d));
  return newest;
}

/** Whether dist/ holds a build of the current sources. */
export function buildIsFresh(outdir = DIST): boolean {
  const entry = join(outdir, 'canopy.js');
  return existsSync(entry) && statSync(entry).mtimeMs >= newestSource();
}

/** Builds unless dist/ is already a build of the current sources (the benchmarks measure the built code). */
export async function ensureBuilt(): Promise<void> {
  if (!buildIsFresh()) await buildCanopy();
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const outdir = resolve(process.argv[2] ?? DIST);
  const files = await buildCanopy(outdir);
  const size = files.reduce((n, f) => n + statSync(resolve(REPO, f)).size, 0);
  process.stdout.write(`built ${relative(REPO, outdir) || '.'}${sep}canopy.js (${files.filter((f) => f.endsWith('.js')).length} chunks, ${Math.round(size / 1024)} kB with maps) from ${dirname('orchestrator/cli.ts')}/cli.ts\n`);
}
