// The Sessions panel, the audit view and recording playback. The server records sessions
// (recording.enabled) and authenticates with tokens: alice is an admin, bob is not.
//
// alice runs a command that prints a known token in a recorded session and ends it; the panel
// lists it (ended, exit 0) with "Play", and a live session of hers that no tab shows with
// "Attach" (which opens a tab on it); "Play" shows the asciinema player, whose terminal shows
// the token; closing the player frees it. The audit view pages through the log and plays the
// same recording from its session_create event. bob sees his own sessions only and no audit view.

import {
  api, check, openTerminal, run, runAndWait, waitFor, waitHidden, waitState, waitVisible,
} from '../lib.mjs';

const TOKEN_LINE = 'rec-token-42';

async function logIn(t, token) {
  const { page } = t;
  await page.goto(`${t.base}/login.html`);
  const { status } = await api(page, 'POST', '/api/v1/auth/login', { token });
  check(status === 204, `the token logs in (204), got ${status}`);
  await openTerminal(page, `${t.base}/`);
}

async function openPanel(page) {
  await page.locator('#sessions-open').click();
  await waitVisible(page, '#sessions-dialog', 'the Sessions panel');
}

/**
 * Waits until the row of session `id` in the sessions view satisfies `pred`, a page function of
 * {row, cells, buttons} (cell texts and button labels); returns {cells, buttons}.
 */
async function waitForRow(page, id, what, pred) {
  return waitFor(page, what, ({ id, pred }) => {
    const row = document.querySelector(`#sessions-rows tr[data-session="${id}"]`);
    if (!row) return false;
    const cells = [...row.cells].map((c) => c.textContent.trim());
    const buttons = [...row.querySelectorAll('button')].map((b) => b.textContent);
    return window.__rowCheck[pred]({ row, cells, buttons }) && { cells, buttons };
  }, { id, pred });
}

/** The row conditions, installed in the page (its CSP allows no `new Function`). */
async function installRowChecks(page) {
  await page.evaluate(() => {
    window.__rowCheck = {
      ended: ({ row, cells, buttons }) => row.dataset.status === 'terminated'
        && cells.includes('exit 0') && cells[5] !== '' && buttons.includes('Play')
        && !buttons.includes('Attach'),
      attachable: ({ row, buttons }) => row.dataset.status === 'running' && buttons.includes('Attach'),
      attached: ({ row, cells, buttons }) => row.dataset.status === 'running'
        && !buttons.includes('Attach') && cells.join(' ').includes('open in a tab'),
    };
  });
}

/** Waits until the player plays session `id` and its terminal shows the token. */
async function waitForPlayback(t, id, label) {
  const { page, log } = t;
  await waitVisible(page, '#player-dialog', 'the player dialog');
  const state = await waitFor(page, `the player (${label}) to show ${TOKEN_LINE}`,
    ({ id, line }) => {
      const p = window.kterm.player();
      return p.open && p.session === id && p.state === 'playing' && p.player
        && p.text.includes(line) && p;
    }, { id, line: TOKEN_LINE }, 30_000);
  log(`player (${label}): ${JSON.stringify({ ...state, text: state.text.trim().split('\n').slice(-3) })}`);
  await waitVisible(page, '#player-host .ap-player', 'the asciinema player element');
}

async function closePlayer(page) {
  await page.locator('#player-close').click();
  await waitHidden(page, '#player-dialog', 'the player dialog to close');
  await waitFor(page, 'the player to be freed', () => {
    const p = window.kterm.player();
    return !p.open && !p.player && document.querySelector('#player-host').childElementCount === 0;
  });
}

export async function recordings(t) {
  const { page, log } = t;
  const alice = process.env.KTERM_TEST_ADMIN_TOKEN;
  const bob = process.env.KTERM_TEST_USER_TOKEN;
  check(alice && bob, 'KTERM_TEST_ADMIN_TOKEN and KTERM_TEST_USER_TOKEN are the tokens to use');

  // --- alice: a recorded session that prints the token and ends --------------------------
  await logIn(t, alice);
  const id = await page.evaluate(() => window.kterm.tabs()[window.kterm.active()].session);
  await runAndWait(page, 'echo rec-token-$((6*7))', TOKEN_LINE);
  await run(page, 'exit');
  await waitState(page, 'ended');
  await waitFor(page, 'the recording to hold the token', async ({ id, line }) => {
    const res = await fetch(`api/v1/sessions/${id}/recording`, { cache: 'no-store' });
    return res.ok && (await res.text()).includes(line);
  }, { id, line: TOKEN_LINE });
  // A live session of hers that no tab shows (made by the API, as another browser would).
  const other = await api(page, 'POST', '/api/v1/sessions', { cols: 80, rows: 24 });
  check(other.status === 201, `a second session: ${JSON.stringify(other)}`);
  const otherId = other.body.id;

  // --- the Sessions panel ------------------------------------------------------------------
  await installRowChecks(page);
  await openPanel(page);
  await waitVisible(page, '#sessions-view-audit', 'the Audit view button (alice is an admin)');
  const ended = await waitForRow(page, id, 'the ended session with exit 0, an end time and Play',
    'ended');
  log(`ended row: ${JSON.stringify(ended)}`);
  const liveRow = await waitForRow(page, otherId, 'the live session with Attach', 'attachable');
  log(`live row: ${JSON.stringify(liveRow)}`);
  await t.snap('sessions');

  // Play, from the sessions view.
  await page.locator(`#sessions-rows tr[data-session="${id}"] button`, { hasText: 'Play' }).click();
  await waitForPlayback(t, id, 'sessions view');
  await t.snap('player');
  await closePlayer(page);

  // Attach: a new tab on the live session, and the panel closes.
  await page.locator(`#sessions-rows tr[data-session="${otherId}"] button`, { hasText: 'Attach' }).click();
  await waitHidden(page, '#sessions-dialog', 'the panel to close on Attach');
  await waitFor(page, 'a tab on the attached session, active',
    (s) => window.kterm.tabs()[window.kterm.active()]?.session === s, otherId);
  await waitState(page, 'connected');
  await runAndWait(page, 'echo attached-$((1+1))', 'attached-2');
  await openPanel(page);
  await waitForRow(page, otherId, 'the attached session without Attach now', 'attached');

  // --- the audit view: paging, and Play from an event ----------------------------------------
  // 60 file writes make sure the log has more than one page (50 events).
  const writes = await page.evaluate(async (s) => {
    const codes = [];
    for (let i = 0; i < 60; i += 1) {
      const res = await fetch(`api/v1/sessions/${s}/files/content?path=audit-${i}.txt`, {
        method: 'PUT',
        body: new Blob([`${i}\n`], { type: 'application/octet-stream' }),
      });
      codes.push(res.status);
    }
    return codes;
  }, otherId);
  check(writes.every((c) => c >= 200 && c < 300), `the writes: ${writes}`);
  await page.locator('#sessions-view-audit').click();
  await waitVisible(page, '#audit-list', 'the audit view');
  await waitFor(page, 'the newest page of events (file writes on top)', () => {
    const rows = document.querySelectorAll('#audit-rows tr');
    return rows.length === 50 && rows[0].cells[1].textContent === 'file_write'
      && !document.querySelector('#audit-older').disabled
      && document.querySelector('#audit-newer').disabled;
  });
  const newest = await page.evaluate(() => document.querySelector('#audit-rows tr').dataset.event);
  await page.locator('#audit-older').click();
  await waitFor(page, 'the next page, older events', (top) => {
    const first = document.querySelector('#audit-rows tr');
    return first && Number(first.dataset.event) < Number(top) - 49
      && !document.querySelector('#audit-newer').disabled;
  }, newest);
  // Older pages until the session_create event of the recorded session shows with Play.
  const row = `#audit-rows tr[data-session="${id}"]`;
  for (let i = 0; i < 5; i += 1) {
    const found = await page.evaluate((sel) => [...document.querySelectorAll(sel)]
      .some((r) => r.cells[1].textContent === 'session_create'), row);
    if (found) break;
    check(!(await page.locator('#audit-older').isDisabled()), 'the session_create event is in the log');
    const top = await page.evaluate(() => document.querySelector('#audit-rows tr').dataset.event);
    await page.locator('#audit-older').click();
    await waitFor(page, 'an older page', (top) =>
      Number(document.querySelector('#audit-rows tr')?.dataset.event) < Number(top), top);
  }
  const event = page.locator(row).filter({ hasText: 'session_create' }).first();
  await event.waitFor({ state: 'visible' });
  log(`audit row: ${(await event.textContent()).trim()}`);
  await t.snap('audit');
  await event.locator('button', { hasText: 'Play' }).click();
  await waitForPlayback(t, id, 'audit view');
  await closePlayer(page);
  await page.locator('#audit-newer').click();
  await waitFor(page, 'back to a newer page', () => document.querySelectorAll('#audit-rows tr').length > 0);
  await page.locator('#sessions-close').click();
  await waitHidden(page, '#sessions-dialog', 'the panel to close');

  // --- bob: his own sessions, no audit view ----------------------------------------------
  const out = await api(page, 'POST', '/api/v1/auth/logout');
  check(out.status === 204, `alice logs out: ${out.status}`);
  await page.evaluate(() => localStorage.clear());
  await logIn(t, bob);
  await openPanel(page);
  await waitFor(page, 'bob\'s sessions listed', () => document.querySelectorAll('#sessions-rows tr').length > 0);
  const seen = await page.evaluate(() => ({
    audit: !document.querySelector('#sessions-view-audit').hidden,
    users: [...document.querySelectorAll('#sessions-rows tr')].map((r) => r.dataset.session),
    adminColumn: getComputedStyle(document.querySelector('#sessions-list th.admin-only')).display,
  }));
  log(`bob sees: ${JSON.stringify(seen)}`);
  check(!seen.audit, 'no audit view for a non-admin');
  check(!seen.users.includes(id) && !seen.users.includes(otherId), 'none of alice\'s sessions');
  check(seen.adminColumn === 'none', 'no user column for a non-admin');
  const audit = await api(page, 'GET', '/api/v1/audit');
  check(audit.status === 403, `the audit API refuses bob: ${audit.status}`);
  await t.snap('non-admin');
  log('sessions, playback and the audit view work; a non-admin has no audit view');
}
