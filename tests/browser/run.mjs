// Runs one browser scenario against a running kterm:
//
//   node tests/browser/run.mjs <scenario> <base_url> <screenshot_path>
//
// Exits 0 when every step held, 1 with the reason otherwise, 2 on bad arguments. A screenshot of
// the page as it ended (passed or failed, best effort) is written to <screenshot_path>.
// tests/browser.rs starts the server and calls this; by hand, start `kterm` and point it there.
// KTERM_CHROMIUM overrides /usr/bin/chromium.

import { launch, logPageProblems } from './lib.mjs';
import { SCENARIOS } from './scenarios/index.mjs';

const [name, base, screenshot] = process.argv.slice(2);
const scenario = SCENARIOS[name];
if (!scenario || !base || !screenshot) {
  console.error(`usage: run.mjs <scenario> <base_url> <screenshot_path>\n` +
    `scenarios: ${Object.keys(SCENARIOS).join(', ')}`);
  process.exit(2);
}

const started = Date.now();
const log = (message) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`);

const { context, close } = await launch();
const page = context.pages()[0] ?? await context.newPage();
logPageProblems(page);
// A scenario may replace `t.page` (e.g. a second page); the screenshot is of the current one.
const t = { base: base.replace(/\/$/, ''), screenshot, context, page, log, cleanups: [] };
/** An extra screenshot mid-scenario, `<scenario>-<suffix>.png` (best effort). */
t.snap = (suffix) => t.page.screenshot({ path: screenshot.replace(/\.png$/, `-${suffix}.png`) })
  .catch((e) => log(`(no screenshot ${suffix}: ${e.message.split('\n')[0]})`));

let failure = null;
try {
  await scenario(t);
  log(`scenario ${name} passed`);
} catch (e) {
  failure = e;
}
try {
  await t.page.screenshot({ path: screenshot, timeout: 10_000 });
} catch (e) {
  console.log(`(no screenshot: ${e.message.split('\n')[0]})`);
}
for (const cleanup of t.cleanups.reverse()) {
  await Promise.resolve().then(cleanup).catch(() => {});
}
await close();
if (failure) {
  console.error(`scenario ${name} FAILED: ${failure.stack || failure}`);
  process.exit(1);
}
process.exit(0);
