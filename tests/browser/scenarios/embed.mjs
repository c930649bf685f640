// Embedding in a dashboard, as Kubeflow would: the example dashboard page (embed-example.html)
// is served from another origin, which kterm lists in `server.frame_ancestors`, and reaches kterm
// through an authenticating proxy that adds `kubeflow-userid` (auth mode "proxy"). The page
// fetches nothing of kterm but embed.js until the Terminal button is pressed; then the panel
// opens with kterm in its compact layout, launched with the page's namespace and context; it
// resizes, collapses, remembers both across a reload, and re-attaches the same session. A page
// from an origin kterm does not list cannot frame it.

import { startAuthProxy, startDashboard } from '../dashboard.mjs';
import {
  check, logPageProblems, waitFor, waitForKterm, waitForPrompt, waitHidden, waitState,
  waitVisible,
} from '../lib.mjs';

/** The frame of the open panel, once kterm's page in it is connected with a prompt. */
async function panelFrame(page) {
  const handle = await page.locator('kterm-panel iframe').elementHandle();
  const frame = await handle.contentFrame();
  check(frame, 'the panel has a frame');
  await waitForKterm(frame);
  await waitState(frame, 'connected');
  await waitForPrompt(frame);
  return frame;
}

/** Types `command` into the terminal in `frame` and waits for an output line `expect`. */
async function runIn(page, frame, command, expect) {
  await frame.locator('.xterm:visible').first().click();
  await page.keyboard.type(command);
  await page.keyboard.press('Enter');
  return waitFor(frame, `the line "${expect}" in the panel's terminal`,
    (line) => window.kterm.text().split('\n').includes(line) && window.kterm.text(), expect);
}

export async function embed(t) {
  const { page, log } = t;
  const user = process.env.KTERM_TEST_PROXY_USER;
  const header = process.env.KTERM_TEST_PROXY_HEADER;
  const port = Number(process.env.KTERM_TEST_DASHBOARD_PORT);
  check(user && header && port, 'KTERM_TEST_PROXY_USER, _HEADER and KTERM_TEST_DASHBOARD_PORT');
  const proxy = await startAuthProxy(t.base, header, user);
  t.cleanups.push(() => proxy.close());
  const dashboard = await startDashboard(proxy.url, port);
  t.cleanups.push(() => dashboard.close());

  const fetched = [];
  page.on('request', (r) => { if (r.url().startsWith(proxy.url)) fetched.push(r.url()); });
  await page.goto(`${dashboard.url}/`);
  await waitVisible(page, 'kterm-panel .button', 'the Terminal button');
  check(JSON.stringify(fetched) === JSON.stringify([`${proxy.url}/embed.js`]),
    `before the first open, only embed.js comes from kterm: ${JSON.stringify(fetched)}`);
  check(await page.locator('kterm-panel iframe').count() === 0, 'no frame before the first open');
  log(`the dashboard on ${dashboard.url} shows the Terminal button; kterm is at ${proxy.url}`);

  await page.locator('kterm-panel .button').click();
  let frame = await panelFrame(page);
  check(new URL(frame.url()).searchParams.get('layout') === 'compact', `compact: ${frame.url()}`);
  const text = await runIn(page, frame, 'echo "who=$KTERM_USER run=$KTERM_CTX_RUN_ID"',
    `who=${user} run=demo-42`);
  check(text.includes(`who=${user} run=demo-42`), 'the proxy\'s user and the page\'s context');
  const layout = await frame.evaluate(() => ({
    files: getComputedStyle(document.querySelector('#files')).display,
    bar: document.querySelector('#topbar').getBoundingClientRect().height,
  }));
  check(layout.files === 'none' && layout.bar <= 28, `compact layout: ${JSON.stringify(layout)}`);
  const session = await frame.evaluate(() => window.kterm.tabs()[0].session);
  log(`the panel runs session ${session} as ${user} with the page's context`);
  await runIn(page, frame, 'ls -la / | head -3; echo "ready for the screenshot"',
    'ready for the screenshot');
  await t.snap('panel');

  // Resize by dragging the grip up 120 px.
  const panel = page.locator('kterm-panel .panel');
  const before = (await panel.boundingBox()).height;
  const grip = await page.locator('kterm-panel .grip').boundingBox();
  await page.mouse.move(grip.x + grip.width / 2, grip.y + 2);
  await page.mouse.down();
  await page.mouse.move(grip.x + grip.width / 2, grip.y - 118, { steps: 5 });
  await page.mouse.up();
  const after = (await panel.boundingBox()).height;
  check(Math.abs(after - before - 120) <= 4, `dragged 120 px higher: ${before} -> ${after}`);
  const stored = await page.evaluate(() => localStorage.getItem('kterm-panel:height'));
  check(Math.abs(Number(stored) - after) <= 2, `the height is kept: ${stored} (${after})`);

  // Collapse; a reload keeps it collapsed (and fetches nothing of kterm but the script).
  await page.locator('kterm-panel .collapse').click();
  await waitHidden(page, 'kterm-panel .panel', 'the collapsed panel');
  fetched.length = 0;
  await page.reload();
  await waitVisible(page, 'kterm-panel .button', 'the Terminal button after the reload');
  check(await page.locator('kterm-panel iframe').count() === 0, 'still collapsed: no frame');
  check(fetched.every((u) => u === `${proxy.url}/embed.js`), `collapsed: ${JSON.stringify(fetched)}`);

  // Opening it again re-attaches the same session, at the kept height.
  await page.locator('kterm-panel .button').click();
  frame = await panelFrame(page);
  const tabs = await frame.evaluate(() => window.kterm.tabs().map((tab) => tab.session));
  check(JSON.stringify(tabs) === JSON.stringify([session]), `the same session: ${tabs}`);
  check(Math.abs((await panel.boundingBox()).height - after) <= 2, 'the kept height');
  await waitFor(frame, 'the earlier output, replayed',
    (u) => window.kterm.text().includes(`who=${u} run=demo-42`), user);
  // Opened again, the panel stays open across a reload.
  await page.reload();
  frame = await panelFrame(page);
  log('collapse, reload and open: the same session at the kept height');

  // A page from an origin kterm does not list may not frame it.
  const stranger = await startDashboard(proxy.url, 0);
  t.cleanups.push(() => stranger.close());
  const other = await t.context.newPage();
  logPageProblems(other, 'unlisted origin');
  const refused = other.waitForEvent('console', {
    predicate: (m) => m.text().includes('frame-ancestors'),
    timeout: 15_000,
  });
  await other.goto(`${stranger.url}/`);
  await other.evaluate(() => localStorage.clear());
  await other.locator('kterm-panel .button').click();
  await refused;
  await other.close();
  log('an unlisted origin is refused by frame-ancestors');
}
