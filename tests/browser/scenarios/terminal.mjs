// Scenarios about one terminal: typing and reading back, the window size reaching the PTY, and
// contextual launch (`?ctx.KEY=VALUE&namespace=NS` in the page URL).

import {
  activeSession, api, check, countLines, elapse, openTerminal, run, runAndWait, termText, waitFor,
  waitHidden, waitState, waitVisible,
} from '../lib.mjs';

/** Open the page, type `echo hello`, read `hello` back from the terminal buffer. */
export async function echo(t) {
  const { page, log } = t;
  await openTerminal(page, `${t.base}/`);
  log('connected');
  const tabs = await page.evaluate(() => window.kterm.tabs());
  check(tabs.length === 1, `a fresh page has one tab, got ${JSON.stringify(tabs)}`);
  check(typeof tabs[0].session === 'string' && tabs[0].session.length > 0,
    `the tab names its session: ${JSON.stringify(tabs)}`);
  check(await page.evaluate(() => window.kterm.active()) === 0, 'the only tab is active');
  await waitVisible(page, `#tabs .tab.active[data-session="${tabs[0].session}"]`, 'the active tab');
  await waitHidden(page, '#context', '#context (this session has no context)');
  await waitHidden(page, '#logout', '#logout (auth mode none)');

  const text = await runAndWait(page, 'echo hello', 'hello');
  check(countLines(text, 'hello') === 1, `"hello" printed once:\n${text}`);
  check(text.split('\n').some((l) => /\$ echo hello$/.test(l)), `the command line shows:\n${text}`);
  log('read "hello" back');
}

let sizeProbe = 0;

/** Runs `stty size` in the active terminal; returns {rows, cols}. */
async function sttySize(page) {
  sizeProbe += 1;
  const tag = `size-${sizeProbe}`;
  const re = new RegExp(`^${tag}=(\\d+) (\\d+)$`);
  // The command line holds `$(stty size)`, so only the output line matches `re`.
  await run(page, `echo "${tag}=$(stty size)"`);
  const text = await waitFor(page, `the output of stty size (${tag})`,
    (src) => {
      const re = new RegExp(src);
      const text = window.kterm.text();
      return text.split('\n').some((l) => re.test(l)) && text;
    }, re.source);
  const [, rows, cols] = text.split('\n').find((l) => re.test(l)).match(re);
  return { rows: Number(rows), cols: Number(cols) };
}

/** Runs `stty size` until `accept(size)` holds (the UI resizes asynchronously); returns it. */
async function sttySizeUntil(page, what, accept, timeout = 15_000) {
  const deadline = Date.now() + timeout;
  let size;
  for (;;) {
    size = await sttySize(page);
    if (accept(size)) return size;
    check(Date.now() < deadline, `timed out waiting for ${what}; stty size is still ` +
      `${size.rows} ${size.cols}`);
    await elapse(250);
  }
}

/** Resize the window and see `stty size` follow, smaller and then larger. */
export async function resize(t) {
  const { page, log } = t;
  await openTerminal(page, `${t.base}/`);
  const first = await sttySize(page);
  log(`stty size at 1280x800: ${first.rows} ${first.cols}`);
  check(first.rows >= 10 && first.cols >= 40, `a 1280x800 window gives a usable terminal: ` +
    `${first.rows} ${first.cols}`);

  await page.setViewportSize({ width: 900, height: 500 });
  const smaller = await sttySizeUntil(page, 'a smaller PTY after shrinking the window',
    (s) => s.rows < first.rows && s.cols < first.cols);
  log(`stty size at 900x500: ${smaller.rows} ${smaller.cols}`);

  await page.setViewportSize({ width: 1400, height: 900 });
  const larger = await sttySizeUntil(page, 'a larger PTY after growing the window',
    (s) => s.rows > first.rows && s.cols > first.cols);
  log(`stty size at 1400x900: ${larger.rows} ${larger.cols}`);

  // The terminal still works at its new size.
  await runAndWait(page, 'echo after-resize-$((2+3))', 'after-resize-5');
  const text = await termText(page);
  check(countLines(text, 'after-resize-5') === 1, `output once after resizing:\n${text}`);
}

/** `/?ctx.run_id=r-42&namespace=team-a` makes a session with that context and namespace. */
export async function context(t) {
  const { page, log } = t;
  await openTerminal(page, `${t.base}/?ctx.run_id=r-42&namespace=team-a`);
  await waitVisible(page, '#context', '#context (the session has a context)');
  await waitFor(page, '#context to show run_id=r-42',
    () => document.querySelector('#context')?.textContent.includes('run_id=r-42'));
  log(`#context: ${await page.locator('#context').textContent()}`);

  await runAndWait(page, 'echo "ctx=$KTERM_CTX_RUN_ID"', 'ctx=r-42');
  const session = await activeSession(page);
  const { status, body } = await api(page, 'GET', `/api/v1/sessions/${session}`);
  check(status === 200, `GET the session: ${status} ${JSON.stringify(body)}`);
  check(body.namespace === 'team-a', `the session's namespace is team-a: ${JSON.stringify(body)}`);
  check(body.context?.run_id === 'r-42', `the session's context: ${JSON.stringify(body)}`);
  log('KTERM_CTX_RUN_ID and the namespace reached the session');
}

/**
 * kterm behind a proxy at /tools/kterm (server.public_url has that path): the page under the
 * prefix works, and every request it makes stays under the prefix (its URLs are relative).
 */
export async function basePath(t) {
  const { page, log } = t;
  const origin = new URL(t.base).origin;
  const outside = [];
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.origin === origin && !url.pathname.startsWith('/tools/kterm/')) {
      outside.push(`${request.method()} ${url.pathname}`);
    }
  });
  page.on('websocket', (ws) => {
    const url = new URL(ws.url());
    if (!url.pathname.startsWith('/tools/kterm/')) outside.push(`WebSocket ${url.pathname}`);
  });
  await openTerminal(page, `${t.base}/tools/kterm/`);
  await runAndWait(page, 'echo under-prefix-$((6+6))', 'under-prefix-12');
  await waitVisible(page, '#files', 'the file sidebar');
  await page.reload();
  await waitState(page, 'connected');
  await waitFor(page, 'the output again after a reload',
    () => window.kterm.text().split('\n').includes('under-prefix-12'));
  check(outside.length === 0, `requests outside the prefix: ${outside.join(', ')}`);
  log('the page works under /tools/kterm/ and stays there');
}
