// The file tree and the editor: a file made in the shell shows in the tree, a directory expands
// lazily, the editor opens, edits and saves a file that `cat` then prints, and a file changed
// underneath is not overwritten silently.

import {
  activeSession, api, check, focusTerminal, openTerminal, run, runAndWait, waitFor, waitForLine,
  waitHidden,
  waitVisible,
} from '../lib.mjs';

const item = (path, type) => `.tree-item[data-path="${path}"][data-type="${type}"]`;

/** Presses #files-refresh (the tree does not watch the disk) and waits for a tree item. */
async function refreshUntil(page, path, type) {
  await page.locator('#files-refresh').click();
  await waitVisible(page, item(path, type), `the tree item ${path} (${type}) after a refresh`);
}

const editorText = (page) => page.evaluate(() => window.kterm.editorText());

async function waitDirty(page, dirty) {
  await waitFor(page, `#editor-title[data-dirty=${dirty}]`,
    (d) => document.querySelector('#editor-title')?.getAttribute('data-dirty') === String(d),
    dirty);
}

/** Answers the in-page dialog's text question with `text`. */
async function answerWith(page, text) {
  await waitVisible(page, '#dialog-input', 'the dialog asking for a name (#dialog-input)');
  await page.locator('#dialog-input').fill(text);
  await page.locator('#dialog-ok').click();
  await waitHidden(page, '#dialog', '#dialog to close');
}

/** The sidebar's own buttons: hide and show it, a new folder, a new file edited and saved. */
async function sidebarButtons(t) {
  const { page, log } = t;
  await page.locator('#toggle-files').click();
  await waitHidden(page, '#files', '#files after #toggle-files');
  await page.locator('#toggle-files').click();
  await waitVisible(page, '#files', '#files after #toggle-files again');

  await page.locator('#files-new-dir').click();
  await answerWith(page, 'ui-dir');
  await waitVisible(page, item('ui-dir', 'dir'), 'the folder made with #files-new-dir');
  await runAndWait(page, 'test -d ui-dir && echo dir-made-$((2+2))', 'dir-made-4');

  // A new file goes to the folder opened last (ui-dir), and opens in the editor.
  await page.locator('#files-new-file').click();
  await answerWith(page, 'fresh.txt');
  await waitVisible(page, item('ui-dir/fresh.txt', 'file'), 'the file made with #files-new-file');
  await waitFor(page, 'the new file open and empty in the editor',
    (path) => document.querySelector('#editor-title')?.getAttribute('data-path') === path &&
      window.kterm.editorText() === '', 'ui-dir/fresh.txt');
  await page.locator('#editor .cm-content').click();
  await page.keyboard.type('typed in the editor');
  await waitDirty(page, true);
  await page.keyboard.press('Control+S');
  await waitDirty(page, false);
  await page.locator('#editor-close').click();
  await waitHidden(page, '#editor', 'the editor to close');
  await runAndWait(page, 'cat ui-dir/fresh.txt; echo', 'typed in the editor');
  log('new folder and new file from the sidebar');
}

export async function files(t) {
  const { page, log } = t;
  await openTerminal(page, `${t.base}/`);
  await waitVisible(page, '#files', 'the file sidebar #files (open by default on a wide window)');

  await runAndWait(page,
    "mkdir -p sub && printf 'first line\\n' > notes.txt && echo inner > sub/inner.txt" +
      ' && echo made-$((1+1))',
    'made-2');
  await refreshUntil(page, 'notes.txt', 'file');
  await waitVisible(page, item('sub', 'dir'), 'the tree item sub (dir)');
  log('notes.txt and sub/ are in the tree');
  await sidebarButtons(t);

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

// Upload: through the button's file input, and by dropping a file on the page. Both land in the
// folder opened last (here the root, after a refresh resets nothing: notes.txt was opened last).
export async function uploadScenario(t) {
  const { page, log } = t;
  const session = await activeSession(page);
  await page.locator('#files-upload').setInputFiles({
    name: 'picked.txt', mimeType: 'text/plain', buffer: Buffer.from('picked by the button\n'),
  });
  await waitVisible(page, '.tree-item[data-path="picked.txt"][data-type="file"]', 'picked.txt in the tree');
  let got = await api(page, 'GET', `/api/v1/sessions/${session}/files/content?path=picked.txt`);
  check(got.body === 'picked by the button\n', `picked.txt holds what was uploaded: ${JSON.stringify(got.body)}`);
  log('uploaded with the button');

  await page.evaluate(() => {
    const data = new DataTransfer();
    data.items.add(new File(['dropped on the page\n'], 'dropped.txt', { type: 'text/plain' }));
    const target = document.querySelector('#terminals');
    for (const type of ['dragenter', 'dragover', 'drop']) {
      target.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: data }));
    }
  });
  await waitVisible(page, '.tree-item[data-path="dropped.txt"][data-type="file"]', 'dropped.txt in the tree');
  got = await api(page, 'GET', `/api/v1/sessions/${session}/files/content?path=dropped.txt`);
  check(got.body === 'dropped on the page\n', `dropped.txt holds what was dropped: ${JSON.stringify(got.body)}`);
  check(await page.locator('#drop-hint').isHidden(), 'the drop hint is gone after the drop');
  log('uploaded by drag and drop');
}

// What the review of the editor and the keys found: re-opening the open file keeps unsaved
// edits, two quick saves do not conflict with each other, and Alt+B still reaches the shell.
export async function editorAndKeys(t) {
  const { page, log } = t;
  const session = await activeSession(page);
  // The conflict from the files scenario: take the disk's version.
  await page.locator('#editor-reload').click();
  await waitFor(page, 'the editor to hold the version on disk',
    () => window.kterm.editorText() === 'changed underneath\n');
  await waitDirty(page, false);
  check(await page.locator('#editor-conflict').isHidden(), 'the conflict bar is gone after a reload');

  await page.locator('#editor .cm-content').click();
  await page.keyboard.press('Control+End');
  await page.keyboard.type('unsaved');
  await waitDirty(page, true);
  await page.locator(item('notes.txt', 'file')).click();
  check(await page.locator('#dialog').evaluate((d) => !d.open), 'no dialog for the file already open');
  check(await editorText(page) === 'changed underneath\nunsaved',
    `clicking the open file keeps its unsaved edits: ${JSON.stringify(await editorText(page))}`);
  log('re-opening the open file keeps the edit');

  await page.locator('#editor .cm-content').click();
  await page.keyboard.press('Control+S');
  await page.keyboard.press('Control+S');
  await waitDirty(page, false);
  await waitFor(page, 'both saves to finish', () => document.querySelector('#editor-status').textContent === 'saved');
  check(await page.locator('#editor-conflict').isHidden(), 'two quick saves do not conflict with each other');
  const saved = await api(page, 'GET', `/api/v1/sessions/${session}/files/content?path=notes.txt`);
  check(saved.body === 'changed underneath\nunsaved', `the file holds the edit: ${JSON.stringify(saved.body)}`);
  log('two quick Ctrl+S save once each, without a conflict');

  // Alt+B is readline's backward-word, not the page's: the word lands before "def".
  const filesShown = await page.locator('#files').isVisible();
  await focusTerminal(page);
  await page.keyboard.type('echo abc def');
  await page.keyboard.press('Alt+B');
  await page.keyboard.type('Z');
  await page.keyboard.press('Enter');
  await waitForLine(page, 'abc Zdef');
  check(await page.locator('#files').isVisible() === filesShown, 'Alt+B left the file panel alone');
  // Alt+Shift+B is the page's.
  await page.keyboard.press('Alt+Shift+B');
  await waitFor(page, 'Alt+Shift+B to toggle the file panel',
    (shown) => (document.querySelector('#files').offsetParent !== null) !== shown, filesShown);
  log('Alt+B reaches the shell; Alt+Shift+B toggles the files');
}
