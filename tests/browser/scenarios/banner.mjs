// The lifecycle banner: the server warns (`{"type":"warning",...}`) before a session's
// max_lifetime or idle_timeout ends it; the page shows #banner with the reason. Keep-alive sends
// `{"type":"keep_alive"}`, which pushes the idle deadline back.

import {
  activeSession, api, check, elapse, openTerminal, runAndWait, waitFor, waitHidden, waitState,
  waitVisible,
} from '../lib.mjs';

async function waitBanner(page, reason, timeout) {
  await waitFor(page, `#banner[data-reason=${reason}] to show`, (r) => {
    const banner = document.querySelector('#banner');
    return banner && !banner.hidden && banner.getAttribute('data-reason') === r;
  }, reason, timeout);
  await waitVisible(page, '#banner', `#banner (${reason}) to be visible`);
}

async function sessionStatus(page) {
  const session = await activeSession(page);
  const { status, body } = await api(page, 'GET', `/api/v1/sessions/${session}`);
  check(status === 200, `GET the session: ${status} ${JSON.stringify(body)}`);
  return body.status;
}

/** max_lifetime 30s, warn_before 25s: the banner shows within seconds; dismiss hides it. */
export async function bannerLifetime(t) {
  const { page, log } = t;
  await openTerminal(page, `${t.base}/`);
  await waitBanner(page, 'max_lifetime', 20_000);
  log(`banner: ${(await page.locator('#banner').textContent()).trim()}`);
  await t.snap('shown');
  await page.locator('#banner-dismiss').click();
  await waitHidden(page, '#banner', '#banner after dismiss');
  await waitState(page, 'connected');
  await runAndWait(page, 'echo alive-$((1+1))', 'alive-2');
  log('dismissed; the session goes on');
}

/**
 * idle_when_attached, idle_timeout 8s, warn_before 6s: the banner shows after 2s of quiet;
 * keep-alive hides it and the session outlives its original deadline; left alone, it ends.
 */
export async function bannerIdle(t) {
  const { page, log } = t;
  await openTerminal(page, `${t.base}/`);
  await waitBanner(page, 'idle_timeout', 15_000);
  const shown = Date.now();
  log('idle banner shown');
  await t.snap('shown');
  await page.locator('#banner-keepalive').click();
  await waitHidden(page, '#banner', '#banner after keep-alive');
  log('keep-alive clicked; banner hidden');

  // The original deadline is at most 6s after the banner; keep the session alive past it the
  // way a user would, pressing keep-alive whenever the banner comes back.
  let presses = 1;
  while (Date.now() < shown + 9_000) {
    const pressed = await page.evaluate(() => {
      const banner = document.querySelector('#banner');
      if (!banner || banner.hidden || banner.getAttribute('data-reason') !== 'idle_timeout') {
        return false;
      }
      document.querySelector('#banner-keepalive').click();
      return true;
    });
    if (pressed) presses += 1;
    await elapse(200);
  }
  const after = ((Date.now() - shown) / 1000).toFixed(1);
  log(`${presses} keep-alive press(es); ${after}s after the banner`);
  const state = await page.locator('#conn-state').getAttribute('data-state');
  check(state === 'connected', `still connected after the original deadline, got ${state}`);
  const status = await sessionStatus(page);
  check(status === 'running', `the session still runs after the original deadline: ${status}`);
  await runAndWait(page, 'echo kept-$((3+4))', 'kept-7');

  // Left alone, the banner comes back and the session ends.
  await waitBanner(page, 'idle_timeout', 15_000);
  await waitState(page, 'ended', 20_000);
  await waitHidden(page, '#banner', '#banner once the session has ended');
  log('left alone, the session ended; the banner went with it');
}
