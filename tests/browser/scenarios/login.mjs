// Auth mode `local`: the page sends a user without a session cookie to the login form; a wrong
// password keeps them there; the right one brings them back to a terminal that shows their name;
// logout ends the cookie, and the page goes back to the form.

import {
  check, describePage, runAndWait, waitFor, waitForKterm, waitState, waitVisible,
} from '../lib.mjs';

const onLoginForm = (page) => new URL(page.url()).pathname.endsWith('/login.html');

async function waitForLoginForm(page, what) {
  try {
    await page.waitForURL((url) => url.pathname.endsWith('/login.html'), { timeout: 15_000 });
  } catch {
    throw new Error(`timed out waiting for the login form (${what})` + (await describePage(page)));
  }
  await waitVisible(page, '#username', 'the login form\'s #username');
}

async function submit(page, user, password) {
  await page.locator('#username').fill(user);
  await page.locator('#password').fill(password);
  const answer = page.waitForResponse((r) => r.url().includes('/api/v1/auth/login'));
  await page.locator('#login-submit').click();
  return (await answer).status();
}

export async function login(t) {
  const { page, log } = t;
  const user = process.env.KTERM_TEST_USER;
  const password = process.env.KTERM_TEST_PASSWORD;
  check(user && password, 'KTERM_TEST_USER and KTERM_TEST_PASSWORD name the user to log in as');

  await page.goto(`${t.base}/`);
  await waitForLoginForm(page, 'a visit without a cookie');
  log(`sent to ${page.url()}`);
  await t.snap('form');

  const refused = await submit(page, user, `${password}-wrong`);
  check(refused === 401, `a wrong password is refused with 401, got ${refused}`);
  check(onLoginForm(page), `a wrong password stays on the form: ${page.url()}`);

  const accepted = await submit(page, user, password);
  check(accepted === 204, `the right password logs in (204), got ${accepted}`);
  try {
    await page.waitForURL((url) => !url.pathname.endsWith('/login.html'), { timeout: 15_000 });
  } catch {
    throw new Error('the login form did not return to the page' + (await describePage(page)));
  }
  await waitForKterm(page);
  await waitState(page, 'connected');
  log(`logged in, back at ${page.url()}`);
  await waitFor(page, `#user-name to say ${user}`,
    (u) => document.querySelector('#user-name')?.textContent.trim() === u, user);
  await waitVisible(page, '#logout', 'the #logout button');
  await runAndWait(page, 'echo "me=$KTERM_USER"', `me=${user}`);

  await page.locator('#logout').click();
  await waitForLoginForm(page, 'after logout');
  const cookies = await t.context.cookies();
  check(!cookies.some((c) => c.name === 'kterm_session' && c.value !== ''),
    `logout clears the session cookie: ${JSON.stringify(cookies)}`);
  await page.goto(`${t.base}/`);
  await waitForLoginForm(page, 'a visit after logout');
  log('logged out; the page asks for a login again');

  // Logging in again gets a terminal again.
  check(await submit(page, user, password) === 204, 'a second login');
  await page.waitForURL((url) => !url.pathname.endsWith('/login.html'));
  await waitForKterm(page);
  await waitState(page, 'connected');
  await runAndWait(page, 'echo again-$((7+7))', 'again-14');
}
