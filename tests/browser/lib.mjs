// Helpers the browser scenarios share: launching chromium, waiting on conditions with deadlines,
// and reading and typing into the terminal through the page's test handle `window.kterm`
// (see the UI contract: kterm.tabs(), kterm.active(), kterm.text(i), kterm.editorText()).
// Every wait has a deadline and fails with a message that says what it waited for and what the
// page looked like then; nothing sleeps to synchronise.

import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(new URL('../../assets/package.json', import.meta.url));
const { chromium } = require('playwright-core');

/** The default deadline of a wait, in ms. */
export const WAIT = 15_000;

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/**
 * Starts headless chromium with a fresh profile; returns the context and a function that closes
 * it and removes the profile.
 */
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), 'kterm-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.KTERM_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
    timeout: 30_000,
  });
  context.setDefaultTimeout(WAIT);
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}

/** Prints the page's console errors and uncaught exceptions, which explain most failures. */
export function logPageProblems(page, label = 'page') {
  page.on('pageerror', (e) => console.log(`[${label}] uncaught: ${e.message}`));
  page.on('console', (m) => {
    // Software WebGL's performance notes are noise.
    const noise = m.text().includes('GL Driver Message');
    if ((m.type() === 'error' || m.type() === 'warning') && !noise) {
      console.log(`[${label}] console.${m.type()}: ${m.text()}`);
    }
  });
}

/** Throws `message` unless `cond`. */
export function check(cond, message) {
  if (!cond) throw new Error(message);
}

/** What the page looked like, for failure messages. */
export async function describePage(page) {
  try {
    const state = await page.evaluate(() => {
      const conn = document.querySelector('#conn-state');
      const k = window.kterm;
      let text = null;
      let tabs = null;
      try {
        tabs = k ? JSON.stringify(k.tabs()) : 'window.kterm is missing';
        text = k ? k.text() : null;
      } catch (e) {
        text = `kterm.text() threw: ${e}`;
      }
      return { conn: conn && conn.getAttribute('data-state'), tabs, text };
    });
    const tail = (state.text || '').split('\n').filter((l) => l !== '').slice(-15).join('\n');
    return `\n  url: ${page.url()}\n  #conn-state: ${state.conn}\n  tabs: ${state.tabs}` +
      `\n  terminal (last lines):\n${tail.replace(/^/gm, '    | ')}`;
  } catch (e) {
    return `\n  url: ${page.url()} (page not readable: ${e.message})`;
  }
}

/**
 * Waits until `fn(arg)`, evaluated in the page, is truthy; returns its value. Fails with `what`
 * and a description of the page.
 */
export async function waitFor(page, what, fn, arg, timeout = WAIT) {
  try {
    const handle = await page.waitForFunction(fn, arg, { timeout, polling: 100 });
    return await handle.jsonValue();
  } catch (e) {
    throw new Error(`timed out after ${timeout} ms waiting for ${what}` +
      `${e.message.includes('Timeout') ? '' : ` (${e.message.split('\n')[0]})`}` +
      (await describePage(page)));
  }
}

/** Waits for `selector` to be visible. */
export async function waitVisible(page, selector, what = selector, timeout = WAIT) {
  try {
    await page.locator(selector).first().waitFor({ state: 'visible', timeout });
  } catch (e) {
    throw new Error(`timed out waiting for ${what} to be visible` + (await describePage(page)));
  }
}

/** Waits for `selector` to be hidden or gone. */
export async function waitHidden(page, selector, what = selector, timeout = WAIT) {
  try {
    await page.locator(selector).first().waitFor({ state: 'hidden', timeout });
  } catch (e) {
    throw new Error(`timed out waiting for ${what} to be hidden` + (await describePage(page)));
  }
}

/** Waits for the page's test handle `window.kterm`. */
export async function waitForKterm(page) {
  await waitFor(page, 'the test handle window.kterm (does the page follow the UI contract?)',
    () => typeof window.kterm === 'object' && window.kterm !== null &&
      typeof window.kterm.text === 'function');
}

/** Waits until the active tab's `#conn-state` says `state`. */
export async function waitState(page, state, timeout = WAIT) {
  await waitFor(page, `#conn-state[data-state=${state}]`,
    (s) => document.querySelector('#conn-state')?.getAttribute('data-state') === s, state, timeout);
}

/** Opens `url`, waits for the test handle and a connected terminal with its prompt. */
export async function openTerminal(page, url) {
  await page.goto(url);
  await waitForKterm(page);
  await waitState(page, 'connected');
  await waitForPrompt(page);
}

/** The terminal buffer of tab `tab` (default: the active one). */
export async function termText(page, tab) {
  return page.evaluate((i) => window.kterm.text(i), tab);
}

/** The session id of the active tab. */
export async function activeSession(page) {
  return page.evaluate(() => window.kterm.tabs()[window.kterm.active()].session);
}

/** Lines of `text` equal to `line`. */
export function countLines(text, line) {
  return text.split('\n').filter((l) => l === line).length;
}

/** Waits until the terminal of `tab` shows a prompt (`$ `, the tests' PS1) on its last line. */
export async function waitForPrompt(page, tab) {
  await waitFor(page, `a shell prompt in tab ${tab ?? 'active'}`, (i) => {
    const lines = window.kterm.text(i).split('\n').filter((l) => l !== '');
    return lines.length > 0 && /\$$/.test(lines[lines.length - 1]);
  }, tab);
}

/**
 * Waits until the terminal of `tab` (default: active) has at least `count` lines that are exactly
 * `line`; returns the buffer text.
 */
export async function waitForLine(page, line, { tab, count = 1, timeout = WAIT } = {}) {
  return waitFor(page, `${count} line(s) "${line}" in the terminal of tab ${tab ?? 'active'}`,
    ({ line, tab, count }) => {
      const text = window.kterm.text(tab);
      return text.split('\n').filter((l) => l === line).length >= count && text;
    }, { line, tab, count }, timeout);
}

/** Focuses the active tab's terminal (a click on its visible `.xterm`). */
export async function focusTerminal(page) {
  const term = page.locator('.xterm:visible').first();
  try {
    await term.click({ timeout: WAIT });
  } catch (e) {
    const why = e.message.split('\n')[0];
    throw new Error(`cannot click the active terminal (.xterm:visible): ${why}` +
      (await describePage(page)));
  }
  await waitFor(page, 'keyboard focus inside the terminal',
    () => document.activeElement?.closest('.xterm') !== null);
}

/** Types `command` and Enter into the active terminal. */
export async function run(page, command) {
  await focusTerminal(page);
  await page.keyboard.type(command);
  await page.keyboard.press('Enter');
}

/** Runs `command`, whose output has a line exactly `expect`, and waits for that line. */
export async function runAndWait(page, command, expect, opts = {}) {
  const before = countLines(await termText(page, opts.tab), expect);
  await run(page, command);
  return waitForLine(page, expect, { ...opts, count: before + 1 });
}

/** The page's own fetch of an API path (with its cookies); returns {status, body}. */
export async function api(page, method, path, body) {
  return page.evaluate(async ({ method, path, body }) => {
    const res = await fetch(path, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
    });
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch { json = text; }
    return { status: res.status, body: json };
  }, { method, path, body });
}

/** Resolves after `ms`: only for waiting out a deadline, never to synchronise with the page. */
export function elapse(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
