// One terminal tab: an xterm.js terminal bound to one session over the WebSocket (SPEC.md,
// "The terminal WebSocket"), with reconnect and backoff.
//
// Invariants:
// - Input and resize handlers are registered once per tab, never per connection, so a
//   reconnect cannot duplicate keystrokes; they write to whichever socket is current.
// - Every attach starts with `attached`; the terminal is reset there and the replay that
//   follows redraws it, so a reconnect never shows output twice.
// - Replayed bytes never produce input: from `attached` until xterm.js has written the last
//   replayed byte (its write callback), nothing the terminal emits (answers to queries, focus
//   reports, keys) is sent. The server strips queries from the replay too; this holds anyway.
// - A socket that is no longer current is detached from its handlers before it is closed.

import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { Unicode11Addon } from '@xterm/addon-unicode11';
import { WebLinksAddon } from '@xterm/addon-web-links';
import { WebglAddon } from '@xterm/addon-webgl';
import { SearchAddon } from '@xterm/addon-search';
import { ApiError, describe, fetchSession, isTransient, websocketUrl } from './api.js';
import { terminalTheme } from './theme.js';

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10_000;
const CLOSE_TAKEN_OVER = 4000;
/** The login that opened the connection ended (logout, password change, user disabled). */
const CLOSE_LOGGED_OUT = 4001;

const END_REASONS = {
  deleted: 'the session was closed',
  sandbox_deleted: 'its sandbox was ended',
  server_restart: 'the server restarted (shells without tmux do not survive that)',
  idle_timeout: 'it was idle for too long',
  max_lifetime: 'it reached its maximum lifetime',
  server_shutdown: 'the server shut down',
  backend_error: 'its sandbox failed',
};

const encoder = new TextEncoder();

export class TerminalTab {
  /**
   * @param {object} record  {session, title?, custom?: bool, context?, namespace?}
   * @param {object} host    callbacks into the page: prefs(), changed(tab), warning(tab, msg),
   *                         shortcut(event) -> bool, replace(tab) -> Promise<session>, login()
   */
  constructor(record, host) {
    this.session = record.session;
    this.title = record.title || 'shell';
    this.customTitle = Boolean(record.custom);
    this.context = record.context || {};
    this.namespace = record.namespace || '';
    this.host = host;
    this.state = 'connecting';
    this.status = 'connecting…';
    this.action = null; // {label, run} offered next to the status
    this.warnings = new Map(); // reason -> {reason, at}
    this.ws = null;
    this.generation = 0;
    this.backoff = BACKOFF_MIN_MS;
    this.retryTimer = null;
    this.replaying = false; // between `attached` and the last replayed byte written
    this.replayToken = null;
    this.pane = document.createElement('div');
    this.pane.className = 'term-pane';
    this.pane.hidden = true;
    this.term = this.createTerminal();
  }

  createTerminal() {
    const prefs = this.host.prefs();
    const term = new Terminal({
      allowProposedApi: true, // the unicode11 addon
      cursorBlink: true,
      fontFamily: 'ui-monospace, "Cascadia Mono", "SF Mono", Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace',
      fontSize: prefs.fontSize,
      scrollback: 10_000,
      theme: terminalTheme(prefs.theme),
    });
    this.fit = new FitAddon();
    term.loadAddon(this.fit);
    this.search = new SearchAddon();
    term.loadAddon(this.search);
    term.loadAddon(new WebLinksAddon((event, uri) => window.open(uri, '_blank', 'noopener')));
    const unicode = new Unicode11Addon();
    term.loadAddon(unicode);
    term.unicode.activeVersion = '11';
    term.open(this.pane);
    this.loadWebgl(term);

    term.onData((data) => this.send(encoder.encode(data)));
    term.onBinary((data) => this.send(Uint8Array.from(data, (c) => c.charCodeAt(0))));
    term.onResize(({ cols, rows }) => this.sendControl({ type: 'resize', cols, rows }));
    // A title the program sets (OSC 0/2, as a shell's prompt or vim does) names the tab, unless
    // the user renamed it.
    term.onTitleChange((title) => {
      const clean = title.replace(/\s+/g, ' ').trim();
      if (!this.customTitle && clean) {
        this.title = clean.slice(0, 60);
        this.fromTerminal = true;
        this.host.changed(this);
      }
    });
    term.onSelectionChange(() => {
      const text = term.getSelection();
      if (text && this.host.prefs().copyOnSelect) copy(text);
    });
    term.attachCustomKeyEventHandler((event) => this.onKey(event));
    new ResizeObserver(() => this.scheduleFit()).observe(this.pane);
    return term;
  }

  /** The WebGL renderer when the browser has it; xterm's DOM renderer otherwise. */
  loadWebgl(term) {
    try {
      const webgl = new WebglAddon();
      webgl.onContextLoss(() => webgl.dispose());
      term.loadAddon(webgl);
      this.renderer = 'webgl';
    } catch {
      this.renderer = 'dom';
    }
  }

  /** Terminal keys: copy and paste the usual ways, and the page's shortcuts. */
  onKey(event) {
    if (event.type !== 'keydown') return true;
    if (this.host.shortcut(event)) return false;
    const ctrl = event.ctrlKey && !event.altKey && !event.metaKey;
    const key = event.key.toLowerCase();
    if (ctrl && event.shiftKey && key === 'c') {
      copy(this.term.getSelection());
      event.preventDefault();
      return false;
    }
    // Ctrl+Shift+V: the browser's own paste event, which xterm turns into input.
    if (ctrl && event.shiftKey && key === 'v') return false;
    // Ctrl+C with a selection copies (as in IDE terminals); without one it is ^C.
    if (ctrl && !event.shiftKey && key === 'c' && this.term.hasSelection()) {
      copy(this.term.getSelection());
      this.term.clearSelection();
      event.preventDefault();
      return false;
    }
    return true;
  }

  scheduleFit() {
    if (this.fitQueued) return;
    this.fitQueued = true;
    requestAnimationFrame(() => {
      this.fitQueued = false;
      if (this.pane.hidden || this.pane.clientWidth === 0) return;
      try {
        this.fit.fit();
      } catch {
        // Not measurable yet; the next resize fits.
      }
    });
  }

  show() {
    this.pane.hidden = false;
    this.scheduleFit();
    this.term.focus();
  }

  hide() {
    this.pane.hidden = true;
  }

  applyPrefs(prefs) {
    this.term.options.fontSize = prefs.fontSize;
    this.term.options.theme = terminalTheme(prefs.theme);
    this.scheduleFit();
  }

  setState(state, status, action = null) {
    this.state = state;
    this.status = status;
    this.action = action;
    this.host.changed(this);
  }

  // --- connection --------------------------------------------------------------------------

  /** (Re)attaches to the session, after checking it still runs. */
  async connect() {
    this.dropSocket();
    const generation = this.generation;
    if (this.state !== 'reconnecting') this.setState('connecting', 'connecting…');
    try {
      const session = await fetchSession(this.session);
      if (generation !== this.generation) return;
      if (!session) {
        this.ended('the session no longer exists');
        return;
      }
      this.context = session.context || {};
      this.namespace = session.namespace || '';
      if (session.status === 'terminated' || session.status === 'failed') {
        this.ended(endText(session.exit_code, session.end_reason));
        return;
      }
      const url = await websocketUrl(this.session);
      if (generation !== this.generation) return;
      this.open(url, generation);
    } catch (err) {
      if (generation !== this.generation) return;
      this.failed(err);
    }
  }

  failed(err) {
    if (err instanceof ApiError && err.status === 401) {
      this.setState('login', 'please log in again');
      this.host.login();
    } else if (isTransient(err)) {
      this.retry(describe(err));
    } else {
      this.setState('error', describe(err), { label: 'Retry', run: () => this.retryNow() });
    }
  }

  open(url, generation) {
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    const seen = { attached: false, exited: false, takenOver: false, loggedOut: false, replayLeft: 0 };
    ws.onmessage = (event) => {
      if (typeof event.data === 'string') {
        this.onControl(event.data, seen);
        return;
      }
      const data = new Uint8Array(event.data);
      if (seen.replayLeft > 0) {
        // The server never puts replay and live output in one frame.
        seen.replayLeft -= data.length;
        if (seen.replayLeft <= 0) {
          this.term.write(data, () => this.replayWritten(seen.token));
          return;
        }
      }
      this.term.write(data);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws || generation !== this.generation) return;
      this.ws = null;
      if (seen.exited) return;
      if (seen.loggedOut || event.code === CLOSE_LOGGED_OUT) {
        this.setState('login', 'please log in again');
        this.host.login();
        return;
      }
      if (seen.takenOver || event.code === CLOSE_TAKEN_OVER) {
        this.setState('taken_over', 'opened in another window', {
          label: 'Take back',
          run: () => this.retryNow(),
        });
        return;
      }
      this.retry(event.code === 1001 ? 'the server is restarting' : 'the connection dropped');
    };
  }

  onControl(text, seen) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    switch (message.type) {
      case 'attached':
        seen.attached = true;
        this.phase = null;
        this.backoff = BACKOFF_MIN_MS;
        // The replay that follows redraws the screen; until it is written, the terminal's
        // answers to what it replays must not reach the shell.
        this.term.reset();
        seen.replayLeft = Number(message.replay_bytes) || 0;
        seen.token = {};
        this.replayToken = seen.token;
        this.replaying = seen.replayLeft > 0;
        this.sendControl({ type: 'resize', cols: this.term.cols, rows: this.term.rows });
        this.setState('connected', 'connected');
        break;
      case 'status': {
        // A cold sandbox is starting (a pod being scheduled, its image pulled): say where.
        const phase = String(message.phase ?? 'starting');
        const detail = message.detail ? ` (${message.detail})` : '';
        this.phase = phase;
        this.term.write(`\r\x1b[2K\x1b[2m[starting the sandbox: ${phase}${detail}…]\x1b[0m`);
        this.setState('starting', `starting the sandbox: ${phase}${detail}`);
        break;
      }
      case 'exit':
        seen.exited = true;
        this.ended(endText(message.code, message.reason));
        break;
      case 'detached':
        if (message.reason === 'logged_out') seen.loggedOut = true;
        else seen.takenOver = true;
        break;
      case 'warning':
        // Counted down from what the server says is left, not from its clock.
        message.deadline = Date.now() + Number(message.in_secs ?? 0) * 1000;
        this.warnings.set(message.reason, message);
        this.host.warning(this, message);
        break;
      case 'error':
        console.warn('kterm: the server refused a message:', message.message);
        break;
      default:
        break;
    }
  }

  /** The last replayed byte of the attach that `token` names is written: input may flow. */
  replayWritten(token) {
    if (this.replayToken !== token) return;
    this.replaying = false;
    this.host.changed(this);
  }

  ended(text) {
    this.dropSocket();
    this.warnings.clear();
    this.host.warning(this, null);
    this.term.write(`\r\n\x1b[2m[${text}]\x1b[0m\r\n`);
    this.setState('ended', text, { label: 'New session', run: () => this.restart() });
  }

  /** A fresh session in this tab, after the old one ended. */
  async restart() {
    if (this.restarting) return;
    this.restarting = true;
    this.setState('connecting', 'starting a new session…');
    try {
      const session = await this.host.replace(this);
      this.session = session.id;
      this.context = session.context || {};
      this.term.reset();
      this.retryNow();
    } catch (err) {
      this.failed(err);
    } finally {
      this.restarting = false;
    }
  }

  retry(reason) {
    this.dropSocket();
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    this.setState('reconnecting', `reconnecting… (${reason})`, {
      label: 'Retry now',
      run: () => this.retryNow(),
    });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  retryNow() {
    this.backoff = BACKOFF_MIN_MS;
    this.connect();
  }

  /** Forgets the current socket and any pending retry; late events of it are ignored. */
  dropSocket() {
    this.generation += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onmessage = ws.onclose = null;
      ws.close(1000);
    }
  }

  send(bytes) {
    if (this.replaying) return;
    if (this.ws?.readyState === WebSocket.OPEN && this.state === 'connected') {
      this.ws.send(bytes);
      // Typing is activity: an idle warning no longer holds.
      if (this.warnings.delete('idle_timeout')) this.host.warning(this, null);
    }
  }

  sendControl(message) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  keepAlive() {
    this.sendControl({ type: 'keep_alive' });
    this.warnings.delete('idle_timeout');
  }

  dispose() {
    this.dropSocket();
    this.term.dispose();
    this.pane.remove();
  }

  /** Downloads the buffer (scrollback and screen) as a text file. */
  download() {
    const blob = new Blob([`${this.text()}\n`], { type: 'text/plain;charset=utf-8' });
    const link = document.createElement('a');
    const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-');
    const name = this.title.replace(/[^\w.-]+/g, '_').replace(/^_+|_+$/g, '') || 'terminal';
    link.href = URL.createObjectURL(blob);
    link.download = `${name}-${stamp}.txt`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  }

  /** The buffer as text: one line per row (wrapped rows joined), right-trimmed. */
  text() {
    const buffer = this.term.buffer.active;
    const lines = [];
    for (let i = 0; i < buffer.length; i++) {
      const line = buffer.getLine(i);
      if (!line) continue;
      const text = line.translateToString(true);
      if (line.isWrapped && lines.length) lines[lines.length - 1] += text;
      else lines.push(text);
    }
    return lines.map((l) => l.trimEnd()).join('\n').trimEnd();
  }
}

function endText(code, reason) {
  if (reason && END_REASONS[reason]) return `session ended: ${END_REASONS[reason]}`;
  // `sandbox_lost: why` (its pod or container went), or why a pending session did not start.
  const lost = /^sandbox_lost: (.*)$/s.exec(reason ?? '');
  if (lost) return `session ended: its sandbox is gone (${lost[1]})`;
  if (reason && !/^[a-z_]+$/.test(reason)) return `session ended: ${reason}`;
  if (code === null || code === undefined) return 'session ended';
  return `session ended with exit code ${code}`;
}

function copy(text) {
  if (text) navigator.clipboard?.writeText(text).catch(() => {});
}
