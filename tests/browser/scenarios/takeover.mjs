// Two windows on one session: the newest attach wins. The older window says `taken_over` (and
// types nothing into the shell); reloading it takes the session back.

import {
  activeSession, check, countLines, logPageProblems, openTerminal, runAndWait, termText,
  waitForKterm, waitForLine, waitState,
} from '../lib.mjs';

export async function takeover(t) {
  const { page: first, log } = t;
  await openTerminal(first, `${t.base}/`);
  await runAndWait(first, 'echo first-window-$((1+1))', 'first-window-2');
  const session = await activeSession(first);

  // A second window of the same browser re-attaches the same tab.
  const second = await t.context.newPage();
  logPageProblems(second, 'second window');
  await openTerminal(second, `${t.base}/`);
  check(await activeSession(second) === session,
    `the second window shows the same session: ${await activeSession(second)} vs ${session}`);
  await waitForLine(second, 'first-window-2');
  await waitState(first, 'taken_over');
  log('the first window says taken_over');
  t.page = first;
  await t.snap('taken-over');

  // Keys pressed in the older window go nowhere.
  await first.locator('.xterm:visible').first().click();
  await first.keyboard.type('echo stray-$((3+3))\n');
  await runAndWait(second, 'echo second-window-$((4+4))', 'second-window-8');
  check(countLines(await termText(second), 'stray-6') === 0,
    `the taken-over window's typing did not reach the shell:\n${await termText(second)}`);

  // Reloading the first window takes the session back; the second one now says taken_over.
  await first.reload();
  await waitForKterm(first);
  await waitState(first, 'connected');
  await waitState(second, 'taken_over');
  const text = await waitForLine(first, 'second-window-8');
  check(countLines(text, 'first-window-2') === 1, `output once after taking back:\n${text}`);
  await runAndWait(first, 'echo back-$((5+5))', 'back-10');
  log('reloading the first window took the session back');
  await second.close();
}
