// The user's sandbox in the top bar (namespace, profile, when it ends), what the close-tab
// dialog says survives, and "End sandbox": its tabs end and the API lists no sandbox.
// The server runs with sandboxes.idle_timeout = "10m" on the local backend (whose workspace,
// a directory on the host, is kept).

import { api, check, openTerminal, runAndWait, waitFor, waitState, waitVisible } from '../lib.mjs';

async function dialogText(page) {
  await waitVisible(page, '#dialog', 'the dialog');
  return (await page.locator('#dialog-text').textContent()).trim();
}

export async function sandboxScenario(t) {
  const { page, log } = t;
  await openTerminal(page, `${t.base}/`);
  await runAndWait(page, 'echo here-$((2+2))', 'here-4');
  await waitVisible(page, '#sandbox-info', 'the sandbox in the top bar');
  await waitFor(page, 'the sandbox info to name namespace and profile',
    () => document.querySelector('#sandbox-info').textContent.startsWith('default/default · ends at'));
  const info = (await page.locator('#sandbox-info').textContent()).trim();
  log(`top bar: ${info}`);
  const { body } = await api(page, 'GET', '/api/v1/sandboxes');
  check(body.sandboxes.length === 1, `one sandbox: ${JSON.stringify(body)}`);
  check(await page.locator('#sandbox-info').getAttribute('data-sandbox') === body.sandboxes[0].id,
    'the top bar shows the tab\'s sandbox');

  // Closing the only tab: the dialog says the sandbox stays for 10 min and the workspace is kept.
  await page.locator('.tab-close').first().click();
  const closing = await dialogText(page);
  log(`close dialog: ${closing}`);
  check(closing.includes('stays for 10 min'), `the close dialog says how long: ${closing}`);
  check(closing.includes('workspace is kept'), `the close dialog says the files stay: ${closing}`);
  await t.snap('close-dialog');
  await page.locator('#dialog-cancel').click();
  await waitState(page, 'connected');

  // End sandbox: asked first, then the tab ends with the reason and no sandbox is left.
  await page.locator('#end-sandbox').click();
  const ending = await dialogText(page);
  log(`end dialog: ${ending}`);
  check(ending.startsWith('End the sandbox default/default?'), `the end dialog: ${ending}`);
  await page.locator('#dialog-ok').click();
  await waitState(page, 'ended');
  await waitFor(page, 'the tab to say its sandbox was ended',
    () => document.querySelector('#conn-text').textContent.includes('its sandbox was ended'));
  await waitFor(page, '#end-sandbox hidden', () => document.querySelector('#end-sandbox').hidden);
  const after = await api(page, 'GET', '/api/v1/sandboxes');
  check(after.body.sandboxes.length === 0, `no sandbox left: ${JSON.stringify(after.body)}`);
  await t.snap('ended');
  log('the sandbox ended; its tab says so');
}
