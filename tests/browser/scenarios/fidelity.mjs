// Terminal fidelity on every re-attach (issue: replayed output typed garbage into the shell).
//
// `queries`: a program asks the terminal what vim asks (device attributes, cursor position,
// colours, a mode) and reads the answers itself, as vim does. Then the page is reloaded, a second
// window takes the session over, and the connection is cut: after each, the prompt line is clean
// and a typed command runs once. Without the fix, each re-attach replayed the queries and the
// browser's answers landed on the prompt line (`2RR0;276;0c10;rgb:…`).
//
// `full_screen`: a full-screen program (alternate screen, application keys, bracketed paste)
// keeps updating while the scrollback ring (4k here) wraps many times; after a reload its screen
// and modes are back, and quitting it restores the shell's normal screen with what was on it.

import { startProxy } from '../proxy.mjs';
import {
  check, countLines, logPageProblems, openTerminal, run, runAndWait, termText, waitFor,
  waitForKterm, waitForPrompt, waitState,
} from '../lib.mjs';

/** Asks what vim asks, in raw mode, and swallows the answers (vim reads them). */
const ASK = String.raw`stty -echo -icanon; printf '\033[c\033[>c\033[6n\033]10;?\033\\\033]11;?\007\033[?2004$p\033[>0q'; ` +
  String.raw`while read -r -s -t 0.5 -n 1 _; do :; done; stty sane; echo asked-$((2+3))`;

/** Waits until tab `tab`'s replay is written (its terminal may send input again). */
async function waitReplayed(page) {
  await waitFor(page, 'the replay to be written',
    () => window.kterm.tabs()[window.kterm.active()]?.replaying === false);
}

/** After a re-attach: the prompt line is exactly the prompt, and a command runs once. */
async function promptIsClean(page, label, n) {
  await waitState(page, 'connected', 30_000);
  await waitReplayed(page);
  await waitForPrompt(page);
  let text = await termText(page);
  const last = text.split('\n').filter((l) => l !== '').pop();
  check(last === '$', `${label}: the prompt line is clean, got ${JSON.stringify(last)}`);
  const marker = `once-${label}-${n * 7}`;
  text = await runAndWait(page, `echo once-${label}-$((${n}*7))`, marker);
  check(countLines(text, marker) === 1, `${label}: the command ran once:\n${text}`);
  const typed = text.split('\n').filter((l) => l.includes(`echo once-${label}-`));
  check(typed.length === 1 && typed[0] === `$ echo once-${label}-$((${n}*7))`,
    `${label}: the command line holds only what was typed: ${JSON.stringify(typed)}`);
}

export async function queries(t) {
  const { page, log } = t;
  const proxy = await startProxy(t.base);
  t.cleanups.push(() => proxy.close());
  await openTerminal(page, `${proxy.url}/`);
  await runAndWait(page, ASK, 'asked-5');
  await promptIsClean(page, 'live', 1);
  log('the program asked and read its answers');

  await page.reload();
  await waitForKterm(page);
  await promptIsClean(page, 'reload', 2);
  log('after a reload the prompt is clean');
  await t.snap('after-reload');

  // A second window takes the session over; it must not type anything either.
  const second = await t.context.newPage();
  logPageProblems(second, 'second window');
  await second.goto(`${proxy.url}/`);
  await waitForKterm(second);
  await waitState(page, 'taken_over');
  await promptIsClean(second, 'takeover', 3);
  await second.close();
  log('after a takeover the prompt is clean');

  // Take it back, then cut the connection: the reconnect replays again.
  await page.reload();
  await waitForKterm(page);
  await promptIsClean(page, 'back', 4);
  check(proxy.cut() > 0, 'connections to cut');
  await waitFor(page, 'a reconnect after the cut', () =>
    document.querySelector('#conn-state').getAttribute('data-state') !== 'connected');
  await promptIsClean(page, 'cut', 5);
  log('after a cut connection the prompt is clean');
}

/** A full-screen program: draws, then updates one line many times, and waits for `q`. */
const FULL_SCREEN = String.raw`echo before-full-screen; printf '\033[?1049h\033[?1h\033=\033[?2004h\033]2;clock\007\033[H\033[2J\033[1;1H\033[1mFULL SCREEN TOP\033[m'; ` +
  String.raw`i=0; while [ $i -lt 4000 ]; do i=$((i+1)); printf '\033[3;1Hupdate %05d' $i; done; ` +
  String.raw`printf '\033[5;1Hpress q'; read -r -s -n 1 _; ` +
  String.raw`printf '\033[?2004l\033[?1l\033>\033[?1049l'; echo quit-$((4+4))`;

export async function fullScreen(t) {
  const { page, log } = t;
  await openTerminal(page, `${t.base}/`);
  await run(page, FULL_SCREEN);
  await waitFor(page, 'the full-screen program waiting for q',
    () => window.kterm.text().includes('press q') && window.kterm.text().includes('update 04000'));
  log('the program drew its screen; 4000 updates wrapped the 4k ring many times');

  await page.reload();
  await waitForKterm(page);
  await waitState(page, 'connected');
  await waitReplayed(page);
  const shown = await page.evaluate(() => ({ text: window.kterm.text(), ...window.kterm.screen() }));
  await t.snap('after-reload');
  check(shown.buffer === 'alternate', `the alternate screen is back: ${JSON.stringify(shown)}`);
  for (const line of ['FULL SCREEN TOP', 'update 04000', 'press q']) {
    check(shown.text.split('\n').includes(line), `"${line}" is on the screen again:\n${shown.text}`);
  }
  check(shown.modes.applicationCursorKeysMode && shown.modes.applicationKeypadMode &&
    shown.modes.bracketedPasteMode, `the program's modes are back: ${JSON.stringify(shown.modes)}`);
  const title = await page.evaluate(() => window.kterm.tabs()[0].title);
  check(title === 'clock', `the tab is named by the program's title: ${title}`);
  log('after the reload: its screen, modes and title');

  // Quitting it brings back the shell's screen.
  await page.keyboard.press('q');
  const text = await waitFor(page, 'the program to quit',
    () => window.kterm.text().includes('quit-8') && window.kterm.text());
  const after = await page.evaluate(() => window.kterm.screen());
  check(after.buffer === 'normal', `the normal screen is back: ${JSON.stringify(after)}`);
  check(countLines(text, 'before-full-screen') === 1,
    `the shell's screen from before the program is back:\n${text}`);
  check(!text.includes('update 0'), `nothing of the program's screen is left:\n${text}`);
  await promptIsClean(page, 'quit', 6);
}
