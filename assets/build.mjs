// Builds kterm's web UI into dist/, which the binary embeds (src/http/assets.rs).
//
//   npm run build     rebuild dist/ from src/ and public/
//   npm run check     rebuild into a temporary folder and fail when dist/ differs (CI)
//
// Output: dist/index.html and dist/login.html (served with `no-cache`), and content-hashed
// files under dist/static/ (served as immutable). Every text file gets .gz and .br siblings,
// which the server sends when the browser accepts them. The build is deterministic, so a
// stale committed bundle shows up as a difference.
import { build } from 'esbuild';
import { brotliCompressSync, brotliDecompressSync, constants, gunzipSync, gzipSync } from 'node:zlib';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(fileURLToPath(import.meta.url));
const check = process.argv.includes('--check');
const out = check ? fs.mkdtempSync(path.join(os.tmpdir(), 'kterm-ui-')) : path.join(root, 'dist');
// The initial page (JS + CSS, gzipped) must stay under this; the editor loads on demand.
const INITIAL_BUDGET = 400 * 1024;

fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(path.join(out, 'static'), { recursive: true });

const result = await build({
  absWorkingDir: root,
  entryPoints: { app: 'src/main.js', login: 'src/login.js' },
  outdir: path.join(out, 'static'),
  entryNames: '[name]-[hash]',
  chunkNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  target: ['es2020'],
  minify: true,
  legalComments: 'linked',
  metafile: true,
  logLevel: 'warning',
});

// Entry name -> { js, css } file names under static/.
const entries = {};
for (const [file, info] of Object.entries(result.metafile.outputs)) {
  if (!info.entryPoint || !file.endsWith('.js')) continue;
  const name = path.basename(file).split('-')[0];
  entries[name] = {
    js: path.basename(file),
    css: info.cssBundle ? path.basename(info.cssBundle) : null,
  };
}

for (const [page, entry] of [['index.html', 'app'], ['login.html', 'login']]) {
  const { js, css } = entries[entry];
  let html = fs.readFileSync(path.join(root, 'public', page), 'utf8');
  html = html.replace('{{script}}', `static/${js}`).replace('{{style}}', `static/${css}`);
  fs.writeFileSync(path.join(out, page), html);
}
// Copied as they are: the icon, and the embed script with its example page (not hashed: a
// dashboard includes `embed.js` by that name).
for (const file of ['favicon.svg', 'embed.js', 'embed-example.html', 'embed-example.css']) {
  fs.copyFileSync(path.join(root, 'public', file), path.join(out, file));
}

// Precompressed siblings, and the size of what the first page load fetches.
const compressible = /\.(html|js|css|svg|json)$/;
let initial = 0;
const initialFiles = new Set([entries.app.js, entries.app.css, ...importsOf(entries.app.js)]);
for (const file of walk(out)) {
  if (!compressible.test(file)) continue;
  const data = fs.readFileSync(file);
  const gz = gzipSync(data, { level: 9 });
  fs.writeFileSync(file + '.gz', gz);
  const br = brotliCompressSync(data, {
    params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: data.length },
  });
  fs.writeFileSync(file + '.br', br);
  if (initialFiles.has(path.basename(file))) initial += gz.length;
}
console.log(`initial page: ${(initial / 1024).toFixed(1)} KiB gzipped (budget ${INITIAL_BUDGET / 1024} KiB)`);
if (initial > INITIAL_BUDGET) {
  console.error('the initial page is over its size budget');
  process.exit(1);
}

if (check) {
  const dist = path.join(root, 'dist');
  const rel = (dir) => walk(dir).map((f) => path.relative(dir, f)).sort();
  const want = rel(out);
  const have = fs.existsSync(dist) ? rel(dist) : [];
  const differ = [...new Set([...want, ...have])].filter((f) => {
    const a = path.join(out, f);
    const b = path.join(dist, f);
    return !fs.existsSync(a) || !fs.existsSync(b) || !contents(a).equals(contents(b));
  });
  fs.rmSync(out, { recursive: true, force: true });
  if (differ.length) {
    console.error(`assets/dist is stale (run \`npm --prefix assets run build\`): ${differ.join(', ')}`);
    process.exit(1);
  }
  console.log('assets/dist is up to date');
}

// What a file says: compressed variants are compared decompressed, so another zlib's
// (equally valid) bytes do not count as stale.
function contents(file) {
  const data = fs.readFileSync(file);
  if (file.endsWith('.gz')) return gunzipSync(data);
  if (file.endsWith('.br')) return brotliDecompressSync(data);
  return data;
}

function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? walk(p) : [p];
  });
}

// The chunks an entry imports statically (loaded with it, unlike `import()`).
function importsOf(js) {
  const info = result.metafile.outputs[path.relative(root, path.join(out, 'static', js))];
  return (info?.imports ?? []).filter((i) => i.kind === 'import-statement').map((i) => path.basename(i.path));
}
