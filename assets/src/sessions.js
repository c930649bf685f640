// The Sessions panel (▤ in the top bar): the caller's sessions, live and ended (everyone's for
// admins), with "Attach" for a live one of the caller's that no tab shows and "Play" for each
// one with a recording; and, for admins, the audit log, newest first, a page at a time, with
// "Play" on events that name a recorded session. "Play" opens the recording in the asciinema
// player, loaded on first use in its own chunk; closing the player frees it.

import { ApiError, api, describe, request, sessionUrl } from './api.js';

const $ = (id) => document.getElementById(id);
const AUDIT_PAGE = 50;

const when = (iso) => (iso ? new Date(iso).toLocaleString([], {
  year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
}) : '');
const live = (s) => s.status === 'running' || s.status === 'pending';

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text ?? '';
  if (className) td.className = className;
  return td;
}

function button(label, title, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.title = title;
  b.addEventListener('click', onClick);
  return b;
}

/** "exit 0", "exit 130 · deleted", "idle_timeout", or nothing while it runs. */
function ending(s) {
  const parts = [];
  if (s.exit_code !== null && s.exit_code !== undefined) parts.push(`exit ${s.exit_code}`);
  if (s.end_reason && !(s.end_reason === 'exited' && parts.length)) parts.push(s.end_reason);
  return parts.join(' · ');
}

export class SessionsPanel {
  /**
   * `me()`: GET /api/v1/me's answer; `openIds()`: the sessions the tabs show; `attach(session)`:
   * opens a tab on it; `theme()`: 'dark' or 'light'; `toast(text)`; `login()`: on 401.
   */
  constructor(host) {
    this.host = host;
    this.view = 'sessions';
    this.known = new Map(); // session id -> session object, for the audit view's "Play"
    this.auditBefore = null; // the page shown: null for the newest, else its ?before=
    this.auditHistory = []; // the `before` of the pages shown before it (for "Newer")
    this.auditNext = null;
    this.player = null;
    this.playing = 0; // counts "Play" clicks, so a slow load does not open an old one
    $('sessions-open').addEventListener('click', () => this.open());
    $('sessions-close').addEventListener('click', () => $('sessions-dialog').close());
    $('sessions-refresh').addEventListener('click', () => this.refresh());
    $('sessions-view-sessions').addEventListener('click', () => this.show('sessions'));
    $('sessions-view-audit').addEventListener('click', () => this.show('audit'));
    $('audit-older').addEventListener('click', () => this.auditPage(this.auditNext, true));
    $('audit-newer').addEventListener('click', () => this.auditPage(this.auditHistory.pop() ?? null, false));
    $('player-close').addEventListener('click', () => $('player-dialog').close());
    $('player-dialog').addEventListener('close', () => this.stopPlayer());
  }

  get admin() {
    return Boolean(this.host.me()?.admin);
  }

  /** Opens the panel on its sessions view, freshly listed. */
  async open() {
    const dialog = $('sessions-dialog');
    dialog.classList.toggle('admin', this.admin);
    $('sessions-view-audit').hidden = !this.admin;
    if (!this.admin && this.view === 'audit') this.view = 'sessions';
    if (!dialog.open) dialog.showModal();
    await this.show(this.view);
  }

  async show(view) {
    this.view = view === 'audit' && this.admin ? 'audit' : 'sessions';
    for (const [name, panel] of [['sessions', 'sessions-list'], ['audit', 'audit-list']]) {
      $(`sessions-view-${name}`).setAttribute('aria-selected', String(this.view === name));
      $(panel).hidden = this.view !== name;
    }
    $('sessions-heading').textContent = this.view === 'audit' ? 'Audit log' : 'Sessions';
    await this.refresh();
  }

  async refresh() {
    if (this.view === 'audit') {
      await this.listSessions({ render: false });
      await this.auditPage(this.auditBefore, null);
    } else {
      await this.listSessions({ render: true });
    }
  }

  failed(err, message) {
    if (err instanceof ApiError && err.status === 401) {
      this.host.login();
      return;
    }
    message.textContent = `Could not be read: ${describe(err)}`;
    message.hidden = false;
  }

  // --- sessions --------------------------------------------------------------------------

  async listSessions({ render }) {
    const message = $('sessions-message');
    let sessions;
    try {
      sessions = (await api('GET', 'api/v1/sessions?all=true')).sessions;
    } catch (err) {
      if (render) this.failed(err, message);
      return;
    }
    for (const s of sessions) this.known.set(s.id, s);
    if (!render) return;
    message.hidden = sessions.length > 0;
    message.textContent = sessions.length ? '' : 'No sessions yet.';
    const open = new Set(this.host.openIds());
    const me = this.host.me()?.user;
    const rows = sessions.map((s) => {
      const tr = document.createElement('tr');
      tr.dataset.session = s.id;
      tr.dataset.status = s.status;
      const status = document.createElement('span');
      status.className = 'status';
      status.dataset.status = s.status;
      status.textContent = s.status;
      const statusCell = cell('');
      statusCell.append(status);
      const id = cell(s.id.slice(0, 8), 'mono');
      id.title = s.id;
      const actions = cell('', 'actions');
      if (live(s) && s.user === me && !open.has(s.id)) {
        actions.append(button('Attach', 'Open this session in a new tab', () => {
          $('sessions-dialog').close();
          this.host.attach(s);
        }));
      } else if (live(s) && open.has(s.id)) {
        actions.append(Object.assign(document.createElement('span'), { className: 'muted', textContent: 'open in a tab' }));
      }
      if (s.recorded) {
        actions.append(button('Play', 'Play the recording of this session', () => this.play(s.id)));
      }
      const ctx = Object.entries(s.context ?? {}).map(([k, v]) => `${k}=${v}`).join(' ');
      const where = cell(`${s.namespace}/${s.profile}`);
      if (ctx) where.title = ctx;
      tr.append(id, cell(s.user, 'admin-only'), statusCell, where, cell(when(s.created_at)),
        cell(live(s) ? '' : when(s.ended_at)), cell(ending(s)), actions);
      return tr;
    });
    $('sessions-rows').replaceChildren(...rows);
  }

  // --- audit -----------------------------------------------------------------------------

  /**
   * Shows the audit page before event id `before` (null: the newest). `forward`: true when going
   * to older events (the current page is remembered for "Newer"), false going back, null for a
   * refresh of the same page.
   */
  async auditPage(before, forward) {
    const message = $('audit-message');
    const query = new URLSearchParams({ limit: String(AUDIT_PAGE) });
    if (before !== null && before !== undefined) query.set('before', String(before));
    let answer;
    try {
      answer = await api('GET', `api/v1/audit?${query}`);
    } catch (err) {
      this.failed(err, message);
      return;
    }
    if (forward === true) this.auditHistory.push(this.auditBefore);
    if (forward === null && before === null) this.auditHistory = [];
    this.auditBefore = before ?? null;
    this.auditNext = answer.next ?? null;
    const events = answer.events ?? [];
    await this.lookUp(events.map((e) => e.session).filter(Boolean));
    message.hidden = events.length > 0;
    message.textContent = events.length ? '' : 'No events.';
    $('audit-older').disabled = this.auditNext === null;
    $('audit-newer').disabled = this.auditBefore === null;
    const page = this.auditHistory.length + 1;
    $('audit-page').textContent = events.length
      ? `page ${page} · events ${events[events.length - 1].id}–${events[0].id}` : '';
    const rows = events.map((e) => {
      const tr = document.createElement('tr');
      tr.dataset.event = e.id;
      if (e.session) tr.dataset.session = e.session;
      const session = cell(e.session ? e.session.slice(0, 8) : '', 'mono');
      if (e.session) session.title = e.session;
      const actions = cell('', 'actions');
      if (e.session && this.known.get(e.session)?.recorded) {
        actions.append(button('Play', 'Play the recording of this session', () => this.play(e.session)));
      }
      tr.append(cell(when(e.at)), cell(e.action), cell(e.outcome, `outcome-${e.outcome}`),
        cell(e.user), cell(e.client, 'mono'), session, cell(e.detail, 'detail'), actions);
      return tr;
    });
    $('audit-rows').replaceChildren(...rows);
  }

  /** Reads the sessions among `ids` that the list did not have (older ones), a few at a time. */
  async lookUp(ids) {
    const missing = [...new Set(ids)].filter((id) => !this.known.has(id));
    for (let i = 0; i < missing.length; i += 6) {
      await Promise.all(missing.slice(i, i + 6).map(async (id) => {
        try {
          this.known.set(id, await api('GET', sessionUrl(id)));
        } catch {
          // Gone (pruned) or unreadable: no "Play".
          this.known.set(id, { id, recorded: false });
        }
      }));
    }
  }

  // --- the player ------------------------------------------------------------------------

  /** Opens session `id`'s recording in the player. */
  async play(id) {
    const ticket = ++this.playing;
    this.stopPlayer();
    const dialog = $('player-dialog');
    const url = `${sessionUrl(id)}/recording`;
    const message = $('player-message');
    $('player-title').textContent = `Recording of session ${id}`;
    $('player-download').href = url;
    message.hidden = false;
    message.textContent = 'Loading the recording…';
    dialog.dataset.session = id;
    dialog.dataset.state = 'loading';
    if (!dialog.open) dialog.showModal();
    let cast;
    let createPlayer;
    try {
      [cast, { createPlayer }] = await Promise.all([
        request('GET', url).then((response) => response.text()),
        import('./player.js'),
      ]);
    } catch (err) {
      if (ticket !== this.playing) return;
      if (err instanceof ApiError && err.status === 401) return this.host.login();
      message.textContent = err instanceof ApiError && err.status === 404
        ? 'This session has no recording (any more).'
        : `The recording could not be loaded: ${describe(err)}`;
      dialog.dataset.state = 'error';
      return;
    }
    if (ticket !== this.playing || !dialog.open) return;
    message.hidden = true;
    const host = $('player-host');
    host.replaceChildren();
    this.player = createPlayer(host, cast, { theme: this.host.theme() });
    dialog.dataset.state = 'playing';
  }

  /** Frees the player (its terminal, timers and WebAssembly memory). */
  stopPlayer() {
    if (this.player) {
      try {
        this.player.dispose();
      } catch {
        // Already torn down.
      }
      this.player = null;
    }
    $('player-host').replaceChildren();
    delete $('player-dialog').dataset.state;
  }

  /** For the tests and debugging: what the player shows. */
  state() {
    const dialog = $('player-dialog');
    return {
      open: dialog.open,
      state: dialog.dataset.state ?? null,
      session: dialog.dataset.session ?? null,
      player: this.player !== null,
      // innerText: the player's lines as lines; its spaces are no-break ones.
      text: ($('player-host').querySelector('.ap-term-text')?.innerText ?? '').replace(/\u00a0/g, ' '),
    };
  }
}
