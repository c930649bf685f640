// The workspace file tree: lazy-loaded directories, refresh, new file and folder, rename,
// delete, upload (button or drag and drop) and download, all through the files API of the
// active tab's session. Paths are workspace-relative (`dir/name`), as the API takes them.
//
// Files made in the shell show up on their own: the open folders are listed again when the page
// or the tree regains focus, and every AUTO_REFRESH_MS while the page is visible and the tree
// shows (one listing at a time, none while hidden). A listing that did not change leaves the
// tree's DOM (and keyboard focus in it) alone.

import { ApiError, api, describe, request, sessionUrl } from './api.js';
import { ask, confirm } from './dialog.js';

const join = (dir, name) => (dir ? `${dir}/${name}` : name);
const parentOf = (path) => (path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '');
const query = (path) => `path=${encodeURIComponent(path)}`;
const AUTO_REFRESH_MS = 5000;
/** A focus or visibility change sooner than this after the last listing lists nothing. */
const MIN_GAP_MS = 1000;

export class FileTree {
  /**
   * @param {object} host  session() -> id or null, open(path), closed(path), visible() -> bool
   */
  constructor(host) {
    this.host = host;
    this.signatures = new Map(); // folder -> what its last listing said
    this.listing = null; // the refresh under way
    this.lastListed = 0;
    this.timer = null;
    this.root = document.getElementById('tree');
    this.message = document.getElementById('files-message');
    this.expanded = new Set(['']);
    this.target = ''; // the folder new files and uploads go to
    this.loadedFor = null;

    const on = (id, fn) => document.getElementById(id).addEventListener('click', fn);
    on('files-refresh', () => this.refresh());
    on('files-new-file', () => this.newFile());
    on('files-new-dir', () => this.newFolder());
    on('files-download', () => this.download('', 'dir'));
    document.getElementById('files-upload').addEventListener('change', (event) => {
      this.upload(event.target.files);
      event.target.value = '';
    });
    window.addEventListener('focus', () => this.autoRefresh());
    document.getElementById('files').addEventListener('pointerenter', () => this.autoRefresh());
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') this.autoRefresh();
      this.schedule();
    });
    this.schedule();
  }

  /** The next periodic refresh, while the page is visible; none while hidden. */
  schedule() {
    clearTimeout(this.timer);
    this.timer = null;
    if (document.visibilityState !== 'visible') return;
    this.timer = setTimeout(() => {
      this.autoRefresh();
      this.schedule();
    }, AUTO_REFRESH_MS);
  }

  /** Lists the open folders again unless the tree is hidden, one is under way, or one just was. */
  autoRefresh() {
    if (document.visibilityState !== 'visible' || !this.host.visible() || !this.base()) return;
    if (this.listing || Date.now() - this.lastListed < MIN_GAP_MS) return;
    this.refresh();
  }

  base() {
    const session = this.host.session();
    return session ? `${sessionUrl(session)}/files` : null;
  }

  /** Shows the tree of `key`'s sandbox (tabs in one sandbox share one tree). */
  async showFor(key) {
    if (key === this.loadedFor) return;
    this.loadedFor = key;
    this.signatures.clear();
    this.expanded = new Set(['']);
    this.target = '';
    await this.refresh();
  }

  say(text) {
    this.message.textContent = text || '';
    this.message.hidden = !text;
  }

  /** Re-lists the root and every expanded folder. */
  async refresh() {
    if (!this.base()) {
      this.root.replaceChildren();
      this.signatures.clear();
      this.say('Open a terminal to see its workspace.');
      return;
    }
    if (this.listing) {
      // One listing at a time; a second request waits for it and lists again after.
      await this.listing.catch(() => {});
      if (this.listing) return this.listing;
    }
    this.listing = this.fill(this.root, '', 0);
    try {
      await this.listing;
    } finally {
      this.listing = null;
      this.lastListed = Date.now();
    }
  }

  async fill(list, dir, depth) {
    let entries;
    try {
      entries = (await api('GET', `${this.base()}?${query(dir)}`)).entries;
    } catch (err) {
      if (dir === '') this.say(`The workspace cannot be listed: ${describe(err)}`);
      else this.expanded.delete(dir);
      return;
    }
    if (dir === '') this.say('');
    entries.sort((a, b) => (a.type === 'dir') !== (b.type === 'dir')
      ? (a.type === 'dir' ? -1 : 1)
      : a.name.localeCompare(b.name));
    const signature = JSON.stringify(entries.map((e) =>
      [e.name, e.type, e.size, e.mtime, this.expanded.has(join(dir, e.name))]));
    if (this.signatures.get(dir) === signature && list.childElementCount === entries.length) {
      // Unchanged: keep these rows; only the open folders below may have changed.
      for (const li of list.children) {
        const row = li.firstElementChild;
        const children = li.querySelector(':scope > ul');
        if (children && this.expanded.has(row.dataset.path)) {
          await this.fill(children, row.dataset.path, depth + 1);
        }
      }
      return;
    }
    this.signatures.set(dir, signature);
    const items = [];
    for (const entry of entries) {
      const path = join(dir, entry.name);
      const node = this.node(entry, path, depth);
      items.push(node);
      if (entry.type === 'dir' && this.expanded.has(path)) {
        const children = document.createElement('ul');
        children.setAttribute('role', 'group');
        node.append(children);
        await this.fill(children, path, depth + 1);
      }
    }
    list.replaceChildren(...items);
  }

  node(entry, path, depth) {
    const li = document.createElement('li');
    li.setAttribute('role', 'treeitem');
    const row = document.createElement('div');
    row.className = 'tree-item';
    row.dataset.path = path;
    row.dataset.type = entry.type;
    row.style.paddingLeft = `${6 + depth * 14}px`;
    row.tabIndex = 0;
    row.title = entry.type === 'file' ? `${path} (${formatSize(entry.size)})` : path;
    const isDir = entry.type === 'dir';
    if (isDir) li.setAttribute('aria-expanded', String(this.expanded.has(path)));

    const icon = document.createElement('span');
    icon.className = 'tree-icon';
    icon.textContent = isDir ? (this.expanded.has(path) ? '▾' : '▸') : entry.type === 'symlink' ? '↪' : '·';
    const name = document.createElement('span');
    name.className = 'tree-name';
    name.textContent = entry.name;
    const actions = document.createElement('span');
    actions.className = 'tree-actions';
    for (const [cls, label, fn] of [
      ['tree-download', '⇩', () => this.download(path, entry.type)],
      ['tree-rename', '✎', () => this.rename(path)],
      ['tree-delete', '🗑', () => this.remove(path, entry.type)],
    ]) {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = `icon ${cls}`;
      button.textContent = label;
      button.title = cls.slice(5);
      button.addEventListener('click', (event) => {
        event.stopPropagation();
        fn();
      });
      actions.append(button);
    }
    row.append(icon, name, actions);
    const activate = () => (isDir ? this.toggle(li, path, depth) : this.openFile(path));
    row.addEventListener('click', activate);
    row.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') activate();
      if (event.key === 'Delete') this.remove(path, entry.type);
      if (event.key === 'F2') this.rename(path);
    });
    li.append(row);
    return li;
  }

  openFile(path) {
    this.target = parentOf(path);
    this.host.open(path);
  }

  async toggle(li, path, depth) {
    this.target = path;
    const row = li.firstChild;
    if (this.expanded.has(path)) {
      this.expanded.delete(path);
      li.querySelector('ul')?.remove();
      li.setAttribute('aria-expanded', 'false');
      row.querySelector('.tree-icon').textContent = '▸';
      return;
    }
    this.expanded.add(path);
    li.setAttribute('aria-expanded', 'true');
    row.querySelector('.tree-icon').textContent = '▾';
    const children = document.createElement('ul');
    children.setAttribute('role', 'group');
    li.append(children);
    await this.fill(children, path, depth + 1);
  }

  // Each action takes the session's files URL when it starts: switching tabs while its dialog
  // is open does not send it to another sandbox.

  async run(what, action) {
    try {
      await action();
    } catch (err) {
      this.say(`${what}: ${describe(err)}`);
      return false;
    }
    this.say('');
    await this.refresh();
    return true;
  }

  async newFile() {
    const base = this.base();
    if (!base) return;
    const name = await ask(`New file in /${this.target}`, { ok: 'Create' });
    if (!name) return;
    const path = join(this.target, name);
    const done = await this.run(`Cannot create ${path}`, () =>
      request('PUT', `${base}/content?${query(path)}`, {
        body: '', json: false, headers: { 'If-None-Match': '*' },
      }));
    if (done) this.host.open(path);
  }

  async newFolder() {
    const base = this.base();
    if (!base) return;
    const name = await ask(`New folder in /${this.target}`, { ok: 'Create' });
    if (!name) return;
    const path = join(this.target, name);
    await this.run(`Cannot create ${path}`, () => api('POST', `${base}/mkdir?${query(path)}&parents=1`));
    this.expanded.add(path);
    this.target = path;
    await this.refresh();
  }

  async rename(path) {
    const base = this.base();
    if (!base) return;
    const to = await ask(`Rename /${path} to`, { value: path, ok: 'Rename' });
    if (!to || to === path) return;
    await this.run(`Cannot rename ${path}`, () => api('POST', `${base}/rename`, { from: path, to }));
  }

  async remove(path, type) {
    const base = this.base();
    if (!base) return;
    const what = type === 'dir' ? 'folder and everything in it' : 'file';
    if (!(await confirm(`Delete the ${what} /${path}?`, 'Delete'))) return;
    const recursive = type === 'dir' ? '&recursive=1' : '';
    const done = await this.run(`Cannot delete ${path}`, () => api('DELETE', `${base}?${query(path)}${recursive}`));
    if (done) this.host.closed(path);
  }

  download(path, type) {
    if (!this.base()) return;
    const link = document.createElement('a');
    link.href = type === 'dir'
      ? `${this.base()}/archive?${query(path)}`
      : `${this.base()}/content?${query(path)}&download=1`;
    link.download = '';
    document.body.append(link);
    link.click();
    link.remove();
  }

  /** Uploads browser files into the target folder; an existing file is replaced. */
  async upload(files) {
    const base = this.base();
    if (!base || !files?.length) return;
    for (const file of files) {
      const path = join(this.target, file.name);
      this.say(`Uploading ${path}…`);
      try {
        await request('PUT', `${base}/content?${query(path)}`, { body: file, json: false });
      } catch (err) {
        const why = err instanceof ApiError && err.status === 413 ? 'the file is too large' : describe(err);
        this.say(`Cannot upload ${path}: ${why}`);
        return;
      }
    }
    this.say('');
    await this.refresh();
  }
}

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
