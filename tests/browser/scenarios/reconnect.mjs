// Reconnect: the browser talks to kterm through a proxy; every connection is cut and refused for
// a while. The page must say it is reconnecting, then connect again on its own, show the output
// from before the cut exactly once (no duplicated replay) and take input exactly once (no
// duplicated input handlers).

import { startProxy } from '../proxy.mjs';
import {
  check, countLines, openTerminal, runAndWait, termText, waitFor, waitState,
} from '../lib.mjs';

export async function reconnect(t) {
  const { page, log } = t;
  const proxy = await startProxy(t.base);
  t.cleanups.push(() => proxy.close());
  await openTerminal(page, `${proxy.url}/`);
  await runAndWait(page, 'echo before-cut-$((20+1))', 'before-cut-21');

  proxy.hold();
  const cut = proxy.cut();
  check(cut > 0, 'the page had connections through the proxy to cut');
  log(`cut ${cut} sockets; refusing new connections`);
  await waitState(page, 'reconnecting');
  log('the page shows reconnecting');
  await t.snap('reconnecting');

  proxy.release();
  await waitState(page, 'connected', 30_000);
  log('connected again');

  let text = await termText(page);
  check(countLines(text, 'before-cut-21') === 1,
    `the output from before the cut shows exactly once after reconnecting:\n${text}`);

  for (let n = 1; n <= 2; n += 1) {
    text = await runAndWait(page, 'echo $((6*7))', '42');
    check(countLines(text, '42') === n, `after command ${n}, "42" shows ${n} time(s):\n${text}`);
    check(text.split('\n').filter((l) => /\$ echo \$\(\(6\*7\)\)$/.test(l)).length === n,
      `the command line shows ${n} time(s), typed once each:\n${text}`);
  }
  check(countLines(text, 'before-cut-21') === 1, `still once:\n${text}`);
  log('typing works once per keystroke after the reconnect');

  // A second cut, this time with the server reachable at once: the page may pass through
  // `reconnecting` too fast to poll, so the states it went through are recorded.
  await page.evaluate(() => {
    const conn = document.querySelector('#conn-state');
    window.connStates = [];
    new MutationObserver(() => window.connStates.push(conn.getAttribute('data-state')))
      .observe(conn, { attributes: true, attributeFilter: ['data-state'] });
  });
  check(proxy.cut() > 0, 'connections to cut the second time');
  await waitFor(page, 'reconnecting, then connected again after the second cut',
    () => window.connStates.includes('reconnecting') &&
      document.querySelector('#conn-state').getAttribute('data-state') === 'connected');
  text = await runAndWait(page, 'echo $((6*7))', '42');
  check(countLines(text, '42') === 3 && countLines(text, 'before-cut-21') === 1,
    `after the second reconnect, every line still shows once:\n${text}`);
  log(`second cut: states ${JSON.stringify(await page.evaluate(() => window.connStates))}`);
}
