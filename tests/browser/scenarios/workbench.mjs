// Everyday use of the workbench, as a new user found it:
// - the file tree shows files made in the shell on its own (on focus, and every few seconds while
//   the page is visible; nothing while it is hidden);
// - tab names do not repeat after a close, and a title the shell sets names its tab;
// - the fourth tab with `sessions.max_per_user = 3` is refused in a message of its own that
//   names the limit and what to do, fits at 1280 px and narrower, and leaves the tabs' states;
// - find in the terminal (Ctrl+Shift+F) and saving a tab's output as text.
// It ends on the picture of the workbench the README shows.

import fs from 'node:fs';
import {
  check, elapse, openTerminal, run, runAndWait, waitFor, waitForPrompt, waitHidden, waitState,
  waitVisible,
} from '../lib.mjs';

const item = (path) => `.tree-item[data-path="${path}"]`;
const titles = (page) => page.evaluate(() => window.kterm.tabs().map((t) => t.title));

/** Counts the page's file listings while `during` runs. */
async function listings(page, during) {
  let count = 0;
  const seen = (r) => { if (/\/files\?path=/.test(r.url())) count += 1; };
  page.on('request', seen);
  await during();
  page.off('request', seen);
  return count;
}

async function setVisibility(page, state) {
  await page.evaluate((s) => {
    Object.defineProperty(document, 'visibilityState', { value: s, configurable: true });
    document.dispatchEvent(new Event('visibilitychange'));
  }, state);
}

async function newTabNamed(page, count) {
  await page.locator('#new-tab').click();
  await waitFor(page, `${count} tabs, the newest active and connected`, (n) =>
    window.kterm.tabs().length === n && window.kterm.active() === n - 1 &&
    window.kterm.tabs()[n - 1].state === 'connected', count);
  await waitForPrompt(page);
}

export async function workbench(t) {
  const { page, log } = t;
  await openTerminal(page, `${t.base}/`);

  // Files made in the shell appear without the refresh button.
  await runAndWait(page, 'mkdir -p src && printf \'print("hello")\\n\' > src/app.py && echo made-$((1+1))', 'made-2');
  await waitVisible(page, item('src'), 'the folder made in the shell, without a refresh', 15_000);
  await page.locator(item('src')).click();
  await waitVisible(page, item('src/app.py'), 'src/app.py in the opened folder');
  await run(page, 'touch src/util.py');
  await waitVisible(page, item('src/util.py'), 'a file made later, in an open folder', 15_000);
  const visible = await listings(page, () => elapse(6000));
  check(visible >= 2 && visible <= 6,
    `while visible, the open folders (2) are listed every 5 s, no more: ${visible} listings in 6 s`);
  await setVisibility(page, 'hidden');
  await run(page, 'touch src/while-hidden.py');
  const hidden = await listings(page, () => elapse(6000));
  check(hidden === 0, `nothing is listed while the page is hidden: ${hidden}`);
  await setVisibility(page, 'visible');
  await waitVisible(page, item('src/while-hidden.py'), 'the file, once the page is visible', 5000);
  log(`file tree: ${visible} listings in 6 s visible, ${hidden} hidden`);

  // Tab names: the lowest free number; a title the shell sets.
  await newTabNamed(page, 2);
  await newTabNamed(page, 3);
  check(JSON.stringify(await titles(page)) === '["shell 1","shell 2","shell 3"]',
    `three numbered tabs: ${await titles(page)}`);
  const second = (await page.evaluate(() => window.kterm.tabs()))[1].session;
  await page.locator(`#tabs .tab[data-session="${second}"] .tab-close`).click();
  await page.locator('#dialog-ok').click();
  await waitFor(page, 'the second tab closed', () => window.kterm.tabs().length === 2);
  await newTabNamed(page, 3);
  check(JSON.stringify(await titles(page)) === '["shell 1","shell 3","shell 2"]',
    `the new tab takes the free number: ${await titles(page)}`);
  await run(page, 'printf \'\\033]0;build logs\\007\'');
  await waitFor(page, 'the tab named by the title the shell set',
    () => window.kterm.tabs()[2].title === 'build logs');
  log(`tab titles: ${await titles(page)}`);

  // The fourth tab is over the limit: a message of its own; every tab stays connected.
  for (const width of [1280, 900]) {
    await page.setViewportSize({ width, height: 800 });
    await page.locator('#new-tab').click();
    const toast = page.locator('.toast').first();
    await waitVisible(page, '.toast', `the message that the limit is reached (${width} px)`);
    const text = await toast.innerText();
    check(/sessions\.max_per_user/.test(text) && /Close a tab/.test(text) && /\b3\b/.test(text),
      `the message names the limit and what to do: ${text}`);
    const box = await toast.boundingBox();
    check(box.x >= 0 && box.x + box.width <= width && box.y + box.height <= 800,
      `the message fits in ${width} px: ${JSON.stringify(box)}`);
    const states = await page.evaluate(() => ({
      tabs: [...document.querySelectorAll('#tabs .tab')].map((t) => t.dataset.state),
      conn: document.querySelector('#conn-state').dataset.state,
    }));
    check(states.tabs.every((s) => s === 'connected') && states.conn === 'connected',
      `the tabs keep their own state: ${JSON.stringify(states)}`);
    check((await page.evaluate(() => window.kterm.tabs().length)) === 3, 'no fourth tab');
    if (width === 1280) await t.snap('limit');
    await toast.locator('.toast-close').click();
    await waitHidden(page, '.toast', 'the dismissed message');
  }
  await page.setViewportSize({ width: 1280, height: 800 });
  log('the fourth tab: a message that fits, tabs untouched');

  // Find, then save the output.
  await page.locator('#tabs .tab').first().click();
  await waitState(page, 'connected');
  await page.locator('.xterm:visible').first().click();
  await page.keyboard.press('Control+Shift+F');
  await waitVisible(page, '#search-input', 'the find bar');
  await page.keyboard.type('made-2');
  await waitFor(page, 'the match selected', () => window.kterm.selection() === 'made-2');
  await page.keyboard.press('Escape');
  await waitHidden(page, '#search', 'the find bar, closed with Escape');
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.locator('#save-output').click(),
  ]);
  const saved = fs.readFileSync(await download.path(), 'utf8');
  check(saved.includes('made-2') && download.suggestedFilename().endsWith('.txt'),
    `the saved output (${download.suggestedFilename()}) holds the terminal's text`);
  log(`find and save: ${download.suggestedFilename()}`);

  // The README's picture: files, the editor, a terminal with some colour.
  await page.locator(item('src/app.py')).click();
  await waitVisible(page, '#editor-title[data-path="src/app.py"]', 'the editor on src/app.py');
  if ((await page.evaluate(() => document.documentElement.dataset.theme)) !== 'dark') {
    await page.locator('#theme-toggle').click();
  }
  await page.locator('.xterm:visible').first().click();
  await runAndWait(page, 'clear; ls -l src; python3 src/app.py; ' +
    'printf \'\\033[1;32m✔ 42 passed\\033[0m in 0.81s  \\033[33m1 skipped\\033[0m\\n\'; echo ready-$((9*9))',
  'ready-81');
  await t.snap('readme');
}
