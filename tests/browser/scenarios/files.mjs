// The file tree and the editor: a file made in the shell shows in the tree, a directory expands
// lazily, the editor opens, edits and saves a file that `cat` then prints, and a file changed
// underneath is not overwritten silently.

import {
  activeSession, api, check, openTerminal, run, runAndWait, waitFor, waitForLine, waitHidden,
  waitVisible,
} from '../lib.mjs';

const item = (path, type) => `.tree-item[data-path="${path}"][data-type="${type}"]`;

/** Waits for a tree item, pressing #files-refresh once if it does not show by itself. */
async function waitForItem(page, path, type) {
  try {
    await page.locator(item(path, type)).first().waitFor({ state: 'visible', timeout: 3_000 });
  } catch {
    await page.locator('#files-refresh').click();
    await waitVisible(page, item(path, type), `the tree item ${path} (${type})`);
  }
}

const editorText = (page) => page.evaluate(() => window.kterm.editorText());

async function waitDirty(page, dirty) {
  await waitFor(page, `#editor-title[data-dirty=${dirty}]`,
    (d) => document.querySelector('#editor-title')?.getAttribute('data-dirty') === String(d),
    dirty);
}

export async function files(t) {
  const { page, log } = t;
  await openTerminal(page, `${t.base}/`);
  await waitVisible(page, '#files', 'the file sidebar #files (open by default on a wide window)');

  await runAndWait(page,
    "mkdir -p sub && printf 'first line\\n' > notes.txt && echo inner > sub/inner.txt" +
      ' && echo made-$((1+1))',
    'made-2');
  await waitForItem(page, 'notes.txt', 'file');
  await waitForItem(page, 'sub', 'dir');
  log('notes.txt and sub/ are in the tree');

  await page.locator(item('sub', 'dir')).click();
  await waitVisible(page, item('sub/inner.txt', 'file'), 'sub/inner.txt after expanding sub');
  log('sub/ expanded');

  // Open, edit, save with Ctrl+S.
  await page.locator(item('notes.txt', 'file')).click();
  await waitVisible(page, '#editor', 'the editor pane #editor');
  await waitFor(page, 'the editor to show notes.txt',
    () => document.querySelector('#editor-title')?.getAttribute('data-path') === 'notes.txt' &&
      window.kterm.editorText() === 'first line\n');
  await waitDirty(page, false);
  await page.locator('#editor .cm-content').click();
  await page.keyboard.press('Control+End');
  await page.keyboard.type('second line');
  await waitDirty(page, true);
  check(await editorText(page) === 'first line\nsecond line',
    `the editor holds the edit: ${JSON.stringify(await editorText(page))}`);
  await page.keyboard.press('Control+S');
  await waitDirty(page, false);
  log('edited and saved with Ctrl+S');

  // Edit again and save with the button; close the editor; `cat` shows the file.
  await page.keyboard.type('!');
  await waitDirty(page, true);
  await page.locator('#editor-save').click();
  await waitDirty(page, false);
  await page.locator('#editor-close').click();
  await waitHidden(page, '#editor', 'the editor to close');
  await run(page, 'cat notes.txt; echo; echo cat-done-$((1+2))');
  const text = await waitForLine(page, 'cat-done-3');
  const lines = text.split('\n');
  const at = lines.lastIndexOf('second line!');
  check(at > 0 && lines[at - 1] === 'first line', `cat prints the saved file:\n${text}`);
  log('cat shows the saved file');

  // A change underneath: saving must not overwrite it silently.
  await page.locator(item('notes.txt', 'file')).click();
  await waitFor(page, 'the editor to reopen notes.txt',
    () => window.kterm.editorText() === 'first line\nsecond line!');
  const session = await activeSession(page);
  const put = await page.evaluate(async (session) => {
    const res = await fetch(`/api/v1/sessions/${session}/files/content?path=notes.txt`,
      { method: 'PUT', body: 'changed underneath\n' });
    return res.status;
  }, session);
  check(put === 204, `PUT notes.txt from outside: ${put}`);
  await page.locator('#editor .cm-content').click();
  await page.keyboard.press('Control+End');
  await page.keyboard.type(' edited');
  await page.keyboard.press('Control+S');
  await waitVisible(page, '#editor-conflict', 'the conflict bar #editor-conflict');
  const now = await api(page, 'GET', `/api/v1/sessions/${session}/files/content?path=notes.txt`);
  check(now.body === 'changed underneath\n',
    `the change underneath was not overwritten: ${JSON.stringify(now.body)}`);
  log('a change underneath shows the conflict bar and is kept');
}
