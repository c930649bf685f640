// The user's sandbox for the active tab, in the top bar: its namespace and profile, when it
// ends (its maximum lifetime, or, while no tab uses it, when it is removed), and "End
// sandbox". The close-tab dialog asks it what survives closing a tab.

import { api, describe } from './api.js';
import { confirm } from './dialog.js';

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 30_000;

const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

/** "15 min", "2 h", "30 s". */
function span(secs) {
  if (secs >= 3600 && secs % 3600 === 0) return `${secs / 3600} h`;
  if (secs >= 60) return `${Math.round(secs / 60)} min`;
  return `${secs} s`;
}

export class SandboxInfo {
  /**
   * `session()`: the active tab's session id (or null); `ended()`: called after the sandbox was
   * ended; `toast(text)`: shows an error.
   */
  constructor({ session, ended, toast }) {
    this.session = session;
    this.ended = ended;
    this.toast = toast;
    this.current = null; // the active tab's sandbox, as GET /api/v1/sandboxes shows it
    this.sandboxOf = new Map(); // session id -> sandbox id
    $('end-sandbox').addEventListener('click', () => this.end());
    setInterval(() => this.refresh(), REFRESH_MS);
  }

  /** Reads the active tab's sandbox again and shows it. */
  async refresh() {
    const id = this.session();
    if (!id) return this.show(null);
    try {
      let sandboxId = this.sandboxOf.get(id);
      if (!sandboxId) {
        sandboxId = (await api('GET', `api/v1/sessions/${encodeURIComponent(id)}`)).sandbox_id;
        this.sandboxOf.set(id, sandboxId);
      }
      const { sandboxes } = await api('GET', 'api/v1/sandboxes');
      if (this.session() !== id) return undefined; // switched meanwhile; that refresh shows it
      return this.show(sandboxes.find((s) => s.id === sandboxId) ?? null);
    } catch {
      // Shown again at the next refresh; the terminal says what is wrong with the connection.
      return undefined;
    }
  }

  show(sandbox) {
    this.current = sandbox;
    const info = $('sandbox-info');
    $('end-sandbox').hidden = !sandbox;
    info.hidden = !sandbox;
    if (!sandbox) return;
    const ends = sandbox.idle_expires_at
      ? `removed at ${clock(sandbox.idle_expires_at)} unless a tab uses it`
      : `ends at ${clock(sandbox.expires_at)}`;
    info.textContent = `${sandbox.namespace}/${sandbox.profile} · ${ends}`;
    info.dataset.sandbox = sandbox.id;
    info.title = [
      `Sandbox ${sandbox.id.slice(0, 12)} (namespace ${sandbox.namespace}, profile ${sandbox.profile})`,
      `${sandbox.sessions} session(s) in it`,
      `Maximum lifetime until ${new Date(sandbox.expires_at).toLocaleString()}`,
      sandbox.workspace === 'persistent'
        ? 'Its workspace is kept when the sandbox ends.'
        : 'Its workspace is temporary: its files go with the sandbox.',
    ].join('\n');
  }

  /** What closing the active tab leaves behind, for the close-tab dialog. */
  afterClose() {
    const sandbox = this.current;
    if (!sandbox) return '';
    const files = sandbox.workspace === 'persistent'
      ? 'its workspace is kept'
      : 'the files in its workspace go with it';
    if (sandbox.sessions > 1) {
      return ' The sandbox and its files stay: other tabs use it.';
    }
    if (sandbox.idle_timeout_secs > 0) {
      return ` The sandbox stays for ${span(sandbox.idle_timeout_secs)} with its files for a new tab;`
        + ` then it is removed and ${files}.`;
    }
    return ` This is the sandbox's last tab: the sandbox is removed and ${files}.`;
  }

  /** "End sandbox": after asking, ends it (and every tab in it). */
  async end() {
    const sandbox = this.current;
    if (!sandbox) return;
    const files = sandbox.workspace === 'persistent'
      ? 'Its workspace is kept.'
      : 'The files in its workspace are deleted.';
    const text = `End the sandbox ${sandbox.namespace}/${sandbox.profile}? `
      + `Its ${sandbox.sessions} session(s) end and it is removed. ${files}`;
    if (!(await confirm(text, 'End sandbox'))) return;
    try {
      await api('DELETE', `api/v1/sandboxes/${encodeURIComponent(sandbox.id)}`);
    } catch (err) {
      this.toast(`The sandbox could not be ended: ${describe(err)}`);
      return;
    }
    this.show(null);
    this.ended();
  }
}
