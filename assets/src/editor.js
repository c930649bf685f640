// The editor pane: opens a workspace file through the files API in CodeMirror (loaded on first
// use), marks unsaved changes, saves with Ctrl/Cmd-S under `If-Match`, and shows a conflict
// when the file changed underneath instead of overwriting it.
//
// The open file belongs to the session (so the sandbox) it was opened through, whichever tab
// is active when it is saved; one save runs at a time.

import { ApiError, describe, request, sessionUrl } from './api.js';
import { confirm } from './dialog.js';

const $ = (id) => document.getElementById(id);
const query = (path) => `path=${encodeURIComponent(path)}`;

export class EditorPane {
  /** @param {object} host  session() -> id or null, theme() -> name, layout() */
  constructor(host) {
    this.host = host;
    this.editor = null;
    this.session = null;
    this.path = null;
    this.saving = null;
    this.etag = null;
    this.dirty = false;
    $('editor-save').addEventListener('click', () => this.save());
    $('editor-close').addEventListener('click', () => this.close());
    $('editor-overwrite').addEventListener('click', () => this.save({ force: true }));
    $('editor-reload').addEventListener('click', () => this.open(this.path, { force: true }));
  }

  get isOpen() {
    return this.path !== null;
  }

  url(path, session = this.session) {
    return `${sessionUrl(session)}/files/content?${query(path)}`;
  }

  status(text) {
    $('editor-status').textContent = text || '';
  }

  setDirty(dirty) {
    this.dirty = dirty;
    $('editor-title').dataset.dirty = String(dirty);
  }

  /** Opens `path`; asks first when unsaved changes would be lost. */
  async open(path, { force = false } = {}) {
    const session = force ? this.session : this.host.session();
    if (!session) return;
    if (!force && path === this.path && session === this.session) {
      this.editor?.focus();
      return;
    }
    if (!force && this.dirty
      && !(await confirm(`Discard the unsaved changes to ${this.path}?`, 'Discard'))) {
      return;
    }
    let response;
    let bytes;
    try {
      response = await request('GET', this.url(path, session));
      bytes = new Uint8Array(await response.arrayBuffer());
    } catch (err) {
      if (this.path === null) this.show(path);
      this.status(`cannot open ${path}: ${describe(err)}`);
      return;
    }
    let text;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      if (this.path === null) this.show(path);
      this.status(`${path} is a binary file: download it from the tree instead`);
      return;
    }
    const { createEditor } = await import('./codemirror.js');
    this.show(path);
    if (!this.editor) {
      this.editor = createEditor({
        parent: $('editor-host'),
        doc: text,
        path,
        theme: this.host.theme(),
        onChange: () => this.setDirty(true),
        onSave: () => this.save(),
      });
    } else {
      this.editor.load(text, path);
    }
    this.session = session;
    this.path = path;
    this.etag = response.headers.get('ETag');
    this.setDirty(false);
    $('editor-conflict').hidden = true;
    this.status('');
    this.editor.focus();
  }

  show(path) {
    $('editor').hidden = false;
    $('editor-splitter').hidden = false;
    $('editor-title').dataset.path = path;
    $('editor-title').textContent = path;
    $('editor-title').title = path;
    this.host.layout();
  }

  /** Saves the document; unless forced, only over the version that was opened. */
  save(options) {
    // A second Ctrl+S while one is in flight would carry the old ETag: it waits its turn.
    const run = (this.saving ?? Promise.resolve()).then(() => this.saveNow(options));
    const settled = run.catch(() => {});
    this.saving = settled;
    settled.then(() => {
      if (this.saving === settled) this.saving = null;
    });
    return run;
  }

  async saveNow({ force = false } = {}) {
    if (!this.editor || this.path === null) return;
    const { path, session } = this;
    const headers = { 'Content-Type': 'application/octet-stream' };
    if (!force && this.etag) headers['If-Match'] = this.etag;
    const text = this.editor.text();
    this.status('saving…');
    let etag;
    try {
      const response = await request('PUT', this.url(path, session), { body: text, json: false, headers });
      etag = response.headers.get('ETag');
    } catch (err) {
      if (path !== this.path || session !== this.session) return;
      if (err instanceof ApiError && (err.status === 409 || err.status === 412)) {
        $('editor-conflict').hidden = false;
        this.status('not saved');
        return;
      }
      this.status(`not saved: ${describe(err)}`);
      return;
    }
    // Another file was opened meanwhile: this save's results are not its.
    if (path !== this.path || session !== this.session) return;
    this.etag = etag;
    $('editor-conflict').hidden = true;
    // Edits made while the request was in flight are still unsaved.
    this.setDirty(this.editor.text() !== text);
    this.status('saved');
  }

  async close() {
    if (this.dirty && !(await confirm(`Discard the unsaved changes to ${this.path}?`, 'Discard'))) return;
    this.path = null;
    this.session = null;
    this.setDirty(false);
    $('editor').hidden = true;
    $('editor-splitter').hidden = true;
    this.host.layout();
  }

  /** The open file was deleted from the tree. */
  closed(path) {
    if (this.path === path || this.path?.startsWith(`${path}/`)) {
      this.setDirty(false);
      this.close();
    }
  }

  setTheme(name) {
    this.editor?.setTheme(name);
  }

  text() {
    return this.editor && this.path !== null ? this.editor.text() : null;
  }
}
