// Tabs: a second tab is a second session; input goes to the active tab only; a reload brings
// back both tabs with their output (replayed once); renaming and closing go through the in-page
// dialog.

import {
  api, check, countLines, describePage, openTerminal, runAndWait, termText, waitFor,
  waitForKterm, waitForLine, waitForPrompt, waitHidden, waitState, waitVisible,
} from '../lib.mjs';

const tabs = (page) => page.evaluate(() => window.kterm.tabs());

/** Clicks the tab of `session` and waits until it is the active, connected one. */
async function activate(page, session, index) {
  await page.locator(`#tabs .tab[data-session="${session}"]`).click();
  await waitFor(page, `tab ${index} (${session}) to be active`,
    ({ session, index }) => window.kterm.active() === index &&
      document.querySelector('#tabs .tab.active')?.getAttribute('data-session') === session,
    { session, index });
  await waitState(page, 'connected');
}

/** Clicks `button` in the in-page dialog, which must be open. */
async function answerDialog(page, button) {
  await waitVisible(page, '#dialog', 'the confirmation dialog #dialog');
  await page.locator(button).click();
  await waitHidden(page, '#dialog', '#dialog to close');
}

async function listedSessions(page) {
  const { status, body } = await api(page, 'GET', '/api/v1/sessions');
  check(status === 200, `GET /api/v1/sessions: ${status} ${JSON.stringify(body)}`);
  return body.sessions.map((s) => s.id).sort();
}

export async function tabsScenario(t) {
  const { page, log } = t;
  await openTerminal(page, `${t.base}/`);
  await runAndWait(page, 'echo tab-one-$((1+1))', 'tab-one-2');
  const [first] = await tabs(page);

  await page.locator('#new-tab').click();
  await waitFor(page, 'a second tab, active',
    () => window.kterm.tabs().length === 2 && window.kterm.active() === 1);
  await waitState(page, 'connected');
  await waitForPrompt(page, 1);
  const second = (await tabs(page))[1];
  check(second.session !== first.session, `the new tab has its own session: ${second.session}`);
  await waitVisible(page, `#tabs .tab.active[data-session="${second.session}"]`,
    'the new tab, active');
  log(`two tabs: ${first.session} ${second.session}`);

  await runAndWait(page, 'echo tab-two-$((2+2))', 'tab-two-4', { tab: 1 });
  check(countLines(await termText(page, 0), 'tab-two-4') === 0,
    'input typed in the second tab does not reach the first');

  await activate(page, first.session, 0);
  await runAndWait(page, 'echo back-in-one-$((3+3))', 'back-in-one-6', { tab: 0 });
  check(countLines(await termText(page, 1), 'back-in-one-6') === 0,
    'input typed in the first tab does not reach the second');

  const before = [first.session, second.session];
  check(JSON.stringify(await listedSessions(page)) === JSON.stringify([...before].sort()),
    'the server lists exactly the two sessions');

  // A reload finds both tabs, in order, each with its own output once.
  await page.reload();
  await waitForKterm(page);
  await waitFor(page, 'both tabs back after the reload', (ids) => {
    const now = window.kterm.tabs().map((tab) => tab.session);
    return JSON.stringify(now) === JSON.stringify(ids);
  }, before);
  log('reloaded: both tabs are back');
  const expected = [['tab-one-2', 'back-in-one-6'], ['tab-two-4']];
  for (const [index, session] of before.entries()) {
    await activate(page, session, index);
    for (const marker of expected[index]) {
      const text = await waitForLine(page, marker, { tab: index });
      check(countLines(text, marker) === 1,
        `after the reload, "${marker}" shows once in tab ${index}:\n${text}`);
    }
  }
  check(JSON.stringify(await listedSessions(page)) === JSON.stringify([...before].sort()),
    'the reload made no new session');
  await runAndWait(page, 'echo after-reload-$((4+4))', 'after-reload-8', { tab: 1 });

  // Rename the first tab through the dialog.
  await activate(page, first.session, 0);
  await page.locator(`#tabs .tab[data-session="${first.session}"] .tab-title`).dblclick();
  await waitVisible(page, '#dialog-input', 'the rename dialog\'s #dialog-input');
  await page.locator('#dialog-input').fill('build box');
  await answerDialog(page, '#dialog-ok');
  await waitFor(page, 'the first tab to be titled "build box"', (session) =>
    window.kterm.tabs()[0].title === 'build box' && document
      .querySelector(`#tabs .tab[data-session="${session}"] .tab-title`)
      ?.textContent.trim() === 'build box', first.session);
  log('renamed the first tab');

  // Closing asks first; cancel keeps the tab, ok ends its session.
  const close = `#tabs .tab[data-session="${second.session}"] .tab-close`;
  await page.locator(close).click();
  await answerDialog(page, '#dialog-cancel');
  check((await tabs(page)).length === 2, 'cancel keeps the tab' + (await describePage(page)));
  await page.locator(close).click();
  await answerDialog(page, '#dialog-ok');
  await waitFor(page, 'the second tab to close', (session) => {
    const now = window.kterm.tabs();
    return now.length === 1 && now[0].session === session && window.kterm.active() === 0;
  }, first.session);
  await waitFor(page, 'the closed tab\'s session to end on the server', async (session) => {
    const res = await fetch('/api/v1/sessions');
    const body = await res.json();
    return !body.sessions.some((s) => s.id === session);
  }, second.session);
  await waitState(page, 'connected');
  await runAndWait(page, 'echo still-here-$((5+5))', 'still-here-10', { tab: 0 });
  log('closed the second tab; the first one still works');
}
