// kterm's page: tabs of terminals, the workspace tree and editor, the connection state, the
// lifecycle banner, and the user. Tabs and panel sizes are remembered in localStorage, so a
// reload re-attaches every tab to its session (the server replays its recent output).

import '@xterm/xterm/css/xterm.css';
import './style.css';
import { ApiError, api, describe, sessionUrl, toLogin } from './api.js';
import { confirm, ask } from './dialog.js';
import { EditorPane } from './editor.js';
import { FileTree } from './files.js';
import { Banner } from './banner.js';
import { Layout } from './layout.js';
import { load, save } from './storage.js';
import { SearchBar } from './search.js';
import { SandboxInfo } from './sandbox.js';
import { SessionsPanel } from './sessions.js';
import { TerminalTab } from './terminal.js';
import { applyPageTheme, initialTheme } from './theme.js';

const $ = (id) => document.getElementById(id);
const FONT_MIN = 8;
const FONT_MAX = 32;

const prefs = load('prefs', { theme: null, fontSize: 14, copyOnSelect: true });
prefs.theme = initialTheme(prefs.theme);
applyPageTheme(prefs.theme);

const tabs = [];
let active = -1;
let me = null;

const tabHost = {
  prefs: () => prefs,
  changed: (tab) => {
    renderTabs();
    if (tab === tabs[active]) renderState();
    persist();
  },
  warning: () => banner.update(tabs),
  shortcut: (event) => shortcut(event, true),
  replace: (tab) => createSession({ namespace: tab.namespace || undefined, context: tab.context }),
  login: () => toLogin(),
};

// `?layout=compact` (a small panel, e.g. embedded in a dashboard): no file tree, a slim tab bar.
const compact = new URLSearchParams(window.location.search).get('layout') === 'compact';
if (compact) document.body.classList.add('compact');
const layout = new Layout(() => tabs[active]?.scheduleFit(), { compact });
const search = new SearchBar(() => tabs[active]);
const banner = new Banner((tab) => tab.keepAlive(), () => banner.update(tabs));
const files = new FileTree({
  session: () => liveSession(),
  open: (path) => editor.open(path),
  closed: (path) => editor.closed(path),
  visible: () => layout.filesOpen,
});
const sandbox = new SandboxInfo({
  session: () => tabs[active]?.session ?? null,
  ended: () => renderState(),
  toast: (text) => toast(text),
});
const sessions = new SessionsPanel({
  me: () => me,
  openIds: () => tabs.map((t) => t.session),
  attach: (session) => attachTab(session),
  theme: () => prefs.theme,
  toast: (text) => toast(text),
  login: () => toLogin(),
});
const editor = new EditorPane({
  session: () => liveSession(),
  theme: () => prefs.theme,
  layout: () => layout.apply(),
});

/** The active tab's session while it runs: the files API works through it. */
function liveSession() {
  const tab = tabs[active];
  return tab && tab.state !== 'ended' ? tab.session : null;
}

// --- tabs ----------------------------------------------------------------------------------

function persist() {
  save('tabs', {
    tabs: tabs.map((t) => ({ session: t.session, title: t.title, custom: t.customTitle })),
    active,
  });
}

function renderTabs() {
  const bar = $('tabs');
  const buttons = tabs.map((tab, i) => {
    const el = document.createElement('div');
    el.className = `tab${i === active ? ' active' : ''}`;
    el.dataset.session = tab.session;
    el.dataset.state = tab.state;
    el.setAttribute('role', 'tab');
    el.setAttribute('aria-selected', String(i === active));
    el.title = `${tab.title} (${tab.status})${i < 9 ? `  Alt+Shift+${i + 1}` : ''}`;
    const dot = document.createElement('span');
    dot.className = 'tab-dot';
    const title = document.createElement('span');
    title.className = 'tab-title';
    title.textContent = tab.title;
    title.addEventListener('dblclick', () => renameTab(tab));
    const close = document.createElement('button');
    close.type = 'button';
    close.className = 'tab-close icon';
    close.textContent = '×';
    close.title = 'Close (Alt+Shift+W)';
    close.setAttribute('aria-label', `close ${tab.title}`);
    close.addEventListener('click', (event) => {
      event.stopPropagation();
      closeTab(tab);
    });
    el.append(dot, title);
    if (tab.state === 'starting' && tab.phase) {
      const phase = document.createElement('span');
      phase.className = 'tab-phase';
      phase.textContent = tab.phase;
      el.append(phase);
    }
    el.append(close);
    el.addEventListener('click', () => activate(tabs.indexOf(tab)));
    el.addEventListener('auxclick', (event) => event.button === 1 && closeTab(tab));
    return el;
  });
  bar.replaceChildren(...buttons);
}

function renderState() {
  const tab = tabs[active];
  const state = $('conn-state');
  state.dataset.state = tab ? tab.state : 'idle';
  $('conn-text').textContent = tab ? tab.status : 'no terminal';
  state.title = tab ? `${tab.title}: ${tab.status}` : '';
  const action = $('conn-action');
  action.hidden = !tab?.action;
  action.textContent = tab?.action?.label ?? '';
  const context = $('context');
  const items = Object.entries(tab?.context ?? {}).map(([k, v]) => `${k}=${v}`);
  if (tab?.namespace && tab.namespace !== 'default') items.unshift(`namespace=${tab.namespace}`);
  context.replaceChildren(...items.map((text) => {
    const item = document.createElement('span');
    item.className = 'context-item';
    item.textContent = text;
    return item;
  }));
  context.title = items.join('\n');
  context.hidden = items.length === 0;
  document.title = tab ? `${tab.title} · kterm` : 'kterm';
}

function activate(index) {
  if (!Number.isInteger(index) || index < 0 || index >= tabs.length) return;
  search.close();
  tabs[active]?.hide();
  active = index;
  tabs[active].show();
  $('empty')?.remove();
  renderTabs();
  renderState();
  persist();
  files.showFor(tabs[active].namespace || 'default');
  sandbox.refresh();
}

function addTab(record) {
  const tab = new TerminalTab(record, tabHost);
  tabs.push(tab);
  $('terminals').append(tab.pane);
  tab.connect();
  return tab;
}

async function createSession(launch = {}) {
  const size = tabs[active]?.term;
  const body = { cols: size?.cols ?? 120, rows: size?.rows ?? 32 };
  if (launch.namespace) body.namespace = launch.namespace;
  if (launch.profile) body.profile = launch.profile;
  if (launch.context && Object.keys(launch.context).length) body.context = launch.context;
  return api('POST', 'api/v1/sessions', body);
}

/** "shell N" with the lowest N no open tab uses. */
function freeTitle(taken = tabs.map((t) => t.title)) {
  const used = new Set(taken.map((t) => /^shell (\d+)$/.exec(t)?.[1]).filter(Boolean).map(Number));
  let n = 1;
  while (used.has(n)) n += 1;
  return `shell ${n}`;
}

/** What to tell the user when a new session is refused. */
function whyNoNewTab(err) {
  if (err instanceof ApiError && err.status === 429 && /max_per_user/.test(err.message)) {
    const limit = /is (\d+)/.exec(err.message)?.[1];
    return `You have ${limit ?? 'the most'} terminals open, the limit (sessions.max_per_user). ` +
      'Close a tab (×, or Alt+Shift+W) to open another.';
  }
  if (err instanceof ApiError && err.status === 429) {
    return `Too many new terminals right now: ${describe(err)}. Try again in a moment.`;
  }
  return `A new terminal could not be opened: ${describe(err)}`;
}

async function newTab(launch = {}) {
  let session;
  try {
    session = await createSession(launch);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return toLogin();
    toast(whyNoNewTab(err));
    return;
  }
  addTab({
    session: session.id,
    title: freeTitle(),
    context: session.context,
    namespace: session.namespace,
  });
  activate(tabs.length - 1);
}

/** A tab on a running session of the user's (from the Sessions panel), or the one showing it. */
function attachTab(session) {
  const open = tabs.findIndex((t) => t.session === session.id);
  if (open >= 0) return activate(open);
  addTab({ session: session.id, title: freeTitle(), context: session.context, namespace: session.namespace });
  return activate(tabs.length - 1);
}

async function closeTab(tab) {
  if (tab === tabs[active] && tab.state !== 'ended') await sandbox.refresh();
  if (tab.state !== 'ended'
    && !(await confirm(`End "${tab.title}"? Its shell and everything running in it stop.${tab === tabs[active] ? sandbox.afterClose() : ''}`, 'End session'))) {
    return;
  }
  if (tab.state !== 'ended') {
    try {
      await api('DELETE', sessionUrl(tab.session));
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) {
        toast(`The session could not be ended: ${describe(err)}`);
        return;
      }
    }
  }
  const index = tabs.indexOf(tab);
  if (index < 0) return;
  tabs.splice(index, 1);
  tab.dispose();
  const next = index < active || active >= tabs.length ? active - 1 : active;
  active = -1;
  banner.update(tabs);
  if (tabs.length === 0) {
    showEmpty();
    renderTabs();
    renderState();
    persist();
  } else {
    activate(next);
  }
}

async function renameTab(tab) {
  const title = await ask('Rename the tab', { value: tab.title, ok: 'Rename' });
  if (title === null) return;
  tab.title = title.trim() || tab.title;
  tab.customTitle = Boolean(title.trim());
  tabHost.changed(tab);
}

function showEmpty() {
  const empty = document.createElement('div');
  empty.id = 'empty';
  const text = document.createElement('p');
  text.textContent = 'No terminal is open.';
  const button = document.createElement('button');
  button.type = 'button';
  button.textContent = 'New terminal';
  button.addEventListener('click', () => newTab());
  empty.append(text, button);
  $('terminals').append(empty);
  files.showFor(null);
}

/**
 * A message of its own, below the top bar, until dismissed (or after a while): errors of
 * actions (a refused new tab) never replace a tab's connection state.
 */
function toast(text, { timeout = 30_000 } = {}) {
  const box = document.createElement('div');
  box.className = 'toast';
  box.setAttribute('role', 'alert');
  const message = document.createElement('span');
  message.className = 'toast-text';
  message.textContent = text;
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'icon toast-close';
  close.textContent = '×';
  close.title = 'Dismiss';
  close.setAttribute('aria-label', 'dismiss');
  const dismiss = () => box.remove();
  close.addEventListener('click', dismiss);
  box.append(message, close);
  const area = $('toasts');
  // The newest on top; at most three.
  area.prepend(box);
  while (area.children.length > 3) area.lastElementChild.remove();
  setTimeout(dismiss, timeout);
}

/** The page cannot reach kterm at all (before any tab): the connection state says so. */
function showUnreachable(text) {
  const state = $('conn-state');
  state.dataset.state = 'error';
  $('conn-text').textContent = text;
}

// --- keys ----------------------------------------------------------------------------------

/**
 * The page's shortcuts; true when the key was one (the terminal then ignores it). Tab and panel
 * keys are Alt+Shift ones, which shells and editors leave alone (Alt+B, Alt+T, Ctrl+S, Ctrl+-
 * are theirs); the font and save keys only count outside the terminal.
 */
function shortcut(event, inTerminal) {
  const altShift = event.altKey && event.shiftKey && !event.ctrlKey && !event.metaKey;
  const ctrlShift = event.ctrlKey && event.shiftKey && !event.altKey && !event.metaKey;
  const mod = (event.ctrlKey || event.metaKey) && !event.altKey && !event.shiftKey;
  const digit = /^Digit([1-9])$/.exec(event.code);
  let done = true;
  if (altShift && event.code === 'KeyT') newTab();
  else if (altShift && event.code === 'KeyW' && tabs[active]) closeTab(tabs[active]);
  else if (altShift && digit && tabs.length) activate(Math.min(Number(digit[1]), tabs.length) - 1);
  else if (altShift && event.key === 'ArrowRight' && tabs.length) activate((active + 1) % tabs.length);
  else if (altShift && event.key === 'ArrowLeft' && tabs.length) activate((active - 1 + tabs.length) % tabs.length);
  else if (altShift && event.code === 'KeyB' && !compact) layout.toggleFiles();
  else if (ctrlShift && event.code === 'KeyF' && tabs[active]) search.open(tabs[active]);
  else if (inTerminal) done = false;
  else if (mod && (event.key === '=' || event.key === '+')) setFont(prefs.fontSize + 1);
  else if (mod && event.key === '-') setFont(prefs.fontSize - 1);
  else if (mod && event.key === '0') setFont(14);
  else if (mod && event.key.toLowerCase() === 's' && editor.isOpen) editor.save();
  else done = false;
  if (done) event.preventDefault();
  return done;
}

document.addEventListener('keydown', (event) => {
  // Keys typed into the terminal went through its own handler already; keys the editor
  // handled (its Ctrl+S) are done too.
  if (event.defaultPrevented || event.target.closest?.('.xterm, dialog, #search')) return;
  shortcut(event, false);
});

// --- preferences ---------------------------------------------------------------------------

function setFont(size) {
  prefs.fontSize = Math.max(FONT_MIN, Math.min(FONT_MAX, size));
  savePrefs();
}

function savePrefs() {
  applyPageTheme(prefs.theme);
  for (const tab of tabs) tab.applyPrefs(prefs);
  editor.setTheme(prefs.theme);
  save('prefs', prefs);
}

// --- start ---------------------------------------------------------------------------------

/** `?namespace=NS&ctx.KEY=VALUE`: a new tab with that namespace and context (SPEC.md). */
function takeLaunchParameters() {
  const url = new URL(window.location.href);
  const launch = { context: {} };
  for (const [key, value] of [...url.searchParams]) {
    if (key === 'namespace') launch.namespace = value;
    else if (key === 'profile') launch.profile = value;
    else if (key.startsWith('ctx.') && key.length > 4) launch.context[key.slice(4)] = value;
    else continue;
    url.searchParams.delete(key);
  }
  if (!launch.namespace && !launch.profile && !Object.keys(launch.context).length) return null;
  // A reload re-attaches the launched tab instead of launching another one.
  window.history.replaceState(null, '', url.pathname + url.search + url.hash);
  return launch;
}

/** Whether `tab`'s session was made by `launch` (same namespace and context; some context). */
function sameLaunch(tab, launch) {
  const key = (context) => JSON.stringify(Object.entries(context ?? {}).sort());
  if (!Object.keys(launch.context).length) return false;
  return (!launch.namespace || tab.namespace === launch.namespace) && key(tab.context) === key(launch.context);
}

async function showUser() {
  $('user-name').textContent = me.user;
  $('user-name').title = me.admin ? `${me.user} (admin)` : me.user;
  try {
    const login = await api('GET', 'api/v1/auth/login');
    $('logout').hidden = !(login.fields?.length);
  } catch {
    // Without it the page just has no logout button.
  }
}

async function start() {
  try {
    me = await api('GET', 'api/v1/me');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return toLogin();
    showUnreachable(`kterm cannot be reached: ${describe(err)}`);
    setTimeout(start, 3000);
    return;
  }
  showUser();
  const launch = takeLaunchParameters();
  const saved = load('tabs', { tabs: [], active: 0 });
  let live = null;
  try {
    live = (await api('GET', 'api/v1/sessions')).sessions
      .filter((s) => s.user === me.user && (s.status === 'running' || s.status === 'pending'));
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return toLogin();
  }
  let records;
  if (live === null) {
    // The list is unavailable (a restart under way): keep the saved tabs, which check their
    // own sessions as they connect, rather than starting new sessions.
    records = saved.tabs;
  } else {
    const byId = new Map(live.map((s) => [s.id, s]));
    // The tabs this browser had, while their sessions run; a new browser gets the user's
    // running sessions instead of new ones (which would soon reach sessions.max_per_user).
    records = saved.tabs.filter((t) => byId.has(t.session))
      .map((t) => ({ ...t, context: byId.get(t.session).context, namespace: byId.get(t.session).namespace }));
    if (saved.tabs.length === 0) {
      records = live.map((s, i) => ({ session: s.id, title: `shell ${i + 1}`, context: s.context, namespace: s.namespace }));
    }
    // Titles saved before numbers were unique: give repeated ones a free number.
    const seen = [];
    for (const record of records) {
      if (!record.custom && /^shell \d+$/.test(record.title ?? '') && seen.includes(record.title)) {
        record.title = freeTitle([...seen, ...records.map((r) => r.title)]);
      }
      seen.push(record.title);
    }
  }
  for (const record of records) addTab(record);
  const launched = launch && tabs.findIndex((tab) => sameLaunch(tab, launch));
  if (launch && launched >= 0) {
    // The same launch again (an embedding page reloaded): its tab, not a new session.
    activate(launched);
  } else if (launch) {
    await newTab(launch);
  } else if (tabs.length === 0) {
    await newTab();
  } else {
    activate(Math.min(Math.max(saved.active, 0), tabs.length - 1));
  }
}

$('new-tab').addEventListener('click', () => newTab());
$('save-output').addEventListener('click', () => tabs[active]?.download());
$('find').addEventListener('click', () => tabs[active] && search.open(tabs[active]));
$('conn-action').addEventListener('click', () => tabs[active]?.action?.run());
$('font-smaller').addEventListener('click', () => setFont(prefs.fontSize - 1));
$('font-larger').addEventListener('click', () => setFont(prefs.fontSize + 1));
$('theme-toggle').addEventListener('click', () => {
  prefs.theme = prefs.theme === 'dark' ? 'light' : 'dark';
  savePrefs();
});
$('toggle-files').addEventListener('click', () => layout.toggleFiles());
$('logout').addEventListener('click', async () => {
  try {
    await api('POST', 'api/v1/auth/logout');
  } finally {
    window.location.assign('login.html');
  }
});
window.addEventListener('online', () => {
  for (const tab of tabs) if (tab.state === 'reconnecting') tab.retryNow();
});

// Drag and drop anywhere uploads into the workspace.
let dragDepth = 0;
window.addEventListener('dragenter', (event) => {
  if (!event.dataTransfer?.types.includes('Files')) return;
  dragDepth += 1;
  $('drop-hint').hidden = false;
});
window.addEventListener('dragleave', () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) $('drop-hint').hidden = true;
});
window.addEventListener('dragover', (event) => event.preventDefault());
window.addEventListener('drop', (event) => {
  event.preventDefault();
  dragDepth = 0;
  $('drop-hint').hidden = true;
  if (event.dataTransfer?.files.length) files.upload(event.dataTransfer.files);
});

// A handle for people debugging in the console, and for the browser tests.
window.kterm = {
  tabs: () => tabs.map((t) => ({
    session: t.session, title: t.title, state: t.state, phase: t.phase, renderer: t.renderer, replaying: t.replaying,
  })),
  active: () => active,
  text: (i = active) => tabs[i]?.text() ?? '',
  selection: () => tabs[active]?.term.getSelection() ?? '',
  /** Which buffer shows ('normal' or 'alternate') and the modes of tab `i`'s terminal. */
  screen: (i = active) => tabs[i] && ({ buffer: tabs[i].term.buffer.active.type, modes: { ...tabs[i].term.modes } }),
  editorText: () => editor.text(),
  /** The recording player: {open, state, session, player, text}. */
  player: () => sessions.state(),
};

layout.apply();
start();
