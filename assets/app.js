/*
 * kterm browser client.
 *
 * Plain ES2017, no build step. Loaded with `defer` after the vendored UMD
 * builds of xterm.js (global `Terminal`) and the fit addon (global
 * `FitAddon.FitAddon`).
 *
 * Rules this file keeps, because of how the page is served:
 *   - every URL is RELATIVE to the page (it may live under a proxy base path);
 *   - no inline scripts or style attributes (strict CSP `script-src 'self'`).
 *
 * Flow:
 *   1. Pick a session: with `?namespace=..&ctx.KEY=..` in the page URL always
 *      create a new one (contextual launch); otherwise reuse the id stored in
 *      localStorage when the server says it is still pending/running, else
 *      create a new one.
 *   2. Attach over the WebSocket `api/v1/sessions/{id}/ws`. The server starts
 *      every attach with {"type":"attached","replay_bytes":N}; we reset the
 *      terminal, then replay + live output arrive as binary frames.
 *   3. On an unexpected close, reconnect with exponential backoff
 *      (0.5 s doubling up to 10 s); if the session is gone, create a new one.
 *      On exit or on takeover by another tab, stop and offer a button (or Enter).
 */
(function () {
  'use strict';

  // ---------------------------------------------------------------------------
  // Constants
  // ---------------------------------------------------------------------------

  const STORAGE_KEY = 'kterm.session';
  const SESSIONS_URL = 'api/v1/sessions'; // relative on purpose
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const RESIZE_DEBOUNCE_MS = 50;
  const CLOSE_TAKEN_OVER = 4000;

  // ---------------------------------------------------------------------------
  // DOM
  // ---------------------------------------------------------------------------

  const els = {
    terminal: document.getElementById('terminal'),
    bar: document.getElementById('statusbar'),
    text: document.getElementById('status-text'),
    action: document.getElementById('status-action'),
    context: document.getElementById('status-context'),
  };

  document.title = 'kterm';

  // ---------------------------------------------------------------------------
  // Contextual launch: ?namespace=NS&ctx.run_id=VALUE&ctx.other=...
  // ---------------------------------------------------------------------------

  /**
   * Parse the page's query string. Returns null when it carries no launch
   * parameters, else {namespace?: string, context?: {KEY: VALUE}}.
   */
  function parseLaunchParams(search) {
    const params = new URLSearchParams(search);
    const launch = {};
    const ns = params.get('namespace');
    if (ns) {
      launch.namespace = ns;
    }
    const context = {};
    let hasContext = false;
    params.forEach(function (value, key) {
      if (key.startsWith('ctx.') && key.length > 4) {
        context[key.slice(4)] = value; // a repeated key: the last one wins
        hasContext = true;
      }
    });
    if (hasContext) {
      launch.context = context;
    }
    return launch.namespace || launch.context ? launch : null;
  }

  const launch = parseLaunchParams(window.location.search);

  /** Show the launch namespace/context as key=value pairs in the status line. */
  function renderLaunchContext() {
    if (!launch) {
      return;
    }
    const parts = [];
    if (launch.namespace) {
      parts.push('namespace=' + launch.namespace);
    }
    if (launch.context) {
      Object.keys(launch.context).forEach(function (k) {
        parts.push(k + '=' + launch.context[k]);
      });
    }
    els.context.textContent = parts.join('  ');
    els.context.title = parts.join('\n');
    els.context.hidden = false;
  }

  // ---------------------------------------------------------------------------
  // Terminal
  // ---------------------------------------------------------------------------

  const term = new Terminal({
    cursorBlink: true,
    fontFamily:
      'ui-monospace, "Cascadia Mono", "SF Mono", Menlo, Consolas, ' +
      '"DejaVu Sans Mono", "Liberation Mono", monospace',
    fontSize: 14,
    scrollback: 5000,
    allowProposedApi: false,
    theme: {
      // Keep in sync with --bg / --fg in style.css.
      background: '#101418',
      foreground: '#d8dee9',
      cursor: '#d8dee9',
      selectionBackground: '#3a4a5c',
    },
  });
  const fitAddon = new FitAddon.FitAddon();
  term.loadAddon(fitAddon);
  term.open(els.terminal);

  const encoder = new TextEncoder();

  /** Fit the terminal to its container; harmless if it is not measurable yet. */
  function safeFit() {
    try {
      fitAddon.fit();
    } catch (err) {
      console.warn('kterm: fit failed', err);
    }
  }

  // ---------------------------------------------------------------------------
  // Status line
  // ---------------------------------------------------------------------------

  // One of: connecting, connected, reconnecting, ended, taken_over, error.
  let mode = 'connecting';
  // The action offered by the status button (also triggered by Enter in the
  // terminal while no socket is open), or null.
  let currentAction = null;

  /**
   * Update the status line.
   * @param {string} newMode  state name (drives the CSS class)
   * @param {string} text     human-readable status
   * @param {{label: string, run: function}|null} action  optional button
   */
  function setStatus(newMode, text, action) {
    mode = newMode;
    els.bar.className = 'state-' + newMode.replace('_', '-');
    els.text.textContent = text;
    els.text.title = text;
    currentAction = action || null;
    if (currentAction) {
      els.action.textContent = currentAction.label;
      els.action.hidden = false;
    } else {
      els.action.hidden = true;
    }
  }

  els.action.addEventListener('click', function () {
    runAction();
    term.focus();
  });

  function runAction() {
    if (currentAction) {
      const action = currentAction;
      currentAction = null;
      els.action.hidden = true;
      action.run();
    }
  }

  /** Print a dim one-line notice into the terminal itself. */
  function notice(text) {
    term.write('\r\n\x1b[2m[' + text + ']\x1b[0m\r\n');
  }

  // ---------------------------------------------------------------------------
  // Session id persistence (localStorage may be unavailable: ignore failures)
  // ---------------------------------------------------------------------------

  function loadStoredId() {
    try {
      return window.localStorage.getItem(STORAGE_KEY);
    } catch (err) {
      return null;
    }
  }

  function storeId(id) {
    try {
      window.localStorage.setItem(STORAGE_KEY, id);
    } catch (err) {
      /* ignore */
    }
  }

  function forgetStoredId() {
    try {
      window.localStorage.removeItem(STORAGE_KEY);
    } catch (err) {
      /* ignore */
    }
  }

  // ---------------------------------------------------------------------------
  // HTTP API
  // ---------------------------------------------------------------------------

  /** Error from the JSON API: HTTP status plus the server's error code/message. */
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.name = 'ApiError';
      this.status = status;
      this.code = code;
    }
  }

  /**
   * Call the JSON API. Resolves to the parsed body for 2xx, rejects with
   * ApiError otherwise (using `{"error":{"code","message"}}` when present), or
   * with a TypeError when the network request itself fails.
   */
  async function api(method, url, body) {
    const opts = {
      method: method,
      headers: { Accept: 'application/json' },
      credentials: 'same-origin',
      cache: 'no-store',
    };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(url, opts);
    let data = null;
    try {
      data = await res.json();
    } catch (err) {
      data = null; // empty or non-JSON body (e.g. a proxy error page)
    }
    if (!res.ok) {
      const e = data && data.error ? data.error : {};
      throw new ApiError(
        res.status,
        e.code || 'http_' + res.status,
        e.message || res.statusText || 'HTTP ' + res.status
      );
    }
    return data;
  }

  function sessionUrl(id) {
    return SESSIONS_URL + '/' + encodeURIComponent(id);
  }

  /** GET a session; resolves to null when the server does not know it. */
  async function fetchSession(id) {
    try {
      return await api('GET', sessionUrl(id));
    } catch (err) {
      // 404: unknown/expired. 403: not ours (e.g. a different user logged in).
      if (err instanceof ApiError && (err.status === 404 || err.status === 403)) {
        return null;
      }
      throw err;
    }
  }

  /** POST a new session sized like the terminal, with the launch context. */
  function createSession() {
    const body = { cols: term.cols, rows: term.rows };
    if (launch && launch.namespace) {
      body.namespace = launch.namespace;
    }
    if (launch && launch.context) {
      body.context = launch.context;
    }
    return api('POST', SESSIONS_URL, body);
  }

  /**
   * WebSocket URL built from the page location plus the relative path (not
   * from the server's websocket_url), so it works behind a proxy/base path.
   */
  function wsUrl(id, ticket) {
    const u = new URL(sessionUrl(id) + '/ws', document.baseURI);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    u.hash = '';
    u.search = ticket ? '?ticket=' + encodeURIComponent(ticket) : '';
    return u.href;
  }

  /**
   * A single-use ticket for the WebSocket: browsers that send no cookie or
   * proxy header on a WebSocket (Safari behind basic auth, some iframes)
   * still get in. Resolves to null if none can be had (then cookies it is).
   */
  async function fetchTicket(id) {
    try {
      const t = await api('POST', sessionUrl(id) + '/ticket', {});
      return t && t.ticket ? t.ticket : null;
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        throw err;
      }
      return null;
    }
  }

  /** No or expired credentials: go to the login page, keeping the launch parameters. */
  function toLogin() {
    window.location.assign('login.html' + window.location.search);
  }

  /** Short, readable description of an error for the status line. */
  function describeError(err) {
    if (err instanceof ApiError) {
      return err.message + ' (' + err.code + ')';
    }
    if (err instanceof TypeError) {
      return 'server unreachable';
    }
    return String((err && err.message) || err);
  }

  /** Errors worth retrying automatically (network, proxy, overload). */
  function isTransient(err) {
    if (!(err instanceof ApiError)) {
      return true; // network failure
    }
    return err.status >= 500 || err.status === 408 || err.status === 429;
  }

  // ---------------------------------------------------------------------------
  // Connection management
  // ---------------------------------------------------------------------------

  let sessionId = null;   // the session we are (re)attaching to
  let ws = null;          // the current WebSocket, or null
  let generation = 0;     // bumped on every new connect attempt; stale async work bails out
  let backoffMs = BACKOFF_MIN_MS;
  let retryTimer = null;
  let lastError = '';     // last error text, shown while reconnecting

  /** Cancel any pending retry and drop the current socket (without reacting to its close). */
  function resetConnection() {
    generation += 1;
    if (retryTimer !== null) {
      clearTimeout(retryTimer);
      retryTimer = null;
    }
    if (ws) {
      const old = ws;
      ws = null;
      old.onopen = old.onmessage = old.onerror = old.onclose = null;
      try {
        old.close(1000);
      } catch (err) {
        /* ignore */
      }
    }
  }

  /**
   * Make sure there is a usable session (reuse sessionId if it is still
   * pending/running, else create one) and open the WebSocket to it.
   */
  async function connect() {
    resetConnection();
    const gen = generation;
    if (mode !== 'reconnecting') {
      setStatus('connecting', sessionId ? 'attaching…' : 'creating session…');
    }
    try {
      if (sessionId) {
        const s = await fetchSession(sessionId);
        if (gen !== generation) {
          return;
        }
        if (!s || s.status === 'terminated' || s.status === 'failed') {
          if (!launch) {
            forgetStoredId();
          }
          sessionId = null;
        }
      }
      if (!sessionId) {
        if (mode !== 'reconnecting') {
          setStatus('connecting', 'creating session…');
        }
        const s = await createSession();
        if (gen !== generation) {
          return;
        }
        sessionId = s.id;
        // A contextual session is tied to its launch URL: do not let it
        // replace the plain page's remembered session.
        if (!launch) {
          storeId(sessionId);
        }
      }
      const ticket = await fetchTicket(sessionId);
      if (gen !== generation) {
        return;
      }
      openSocket(gen, ticket);
    } catch (err) {
      if (gen !== generation) {
        return;
      }
      if (err instanceof ApiError && err.status === 401) {
        toLogin();
        return;
      }
      console.warn('kterm: connect failed', err);
      lastError = describeError(err);
      if (isTransient(err)) {
        scheduleReconnect();
      } else {
        setStatus('error', lastError, { label: 'retry', run: retryNow });
      }
    }
  }

  /** Retry at once, with a fresh backoff. */
  function retryNow() {
    backoffMs = BACKOFF_MIN_MS;
    connect();
  }

  /** Reconnect after the current backoff delay, then double the delay. */
  function scheduleReconnect() {
    resetConnection();
    const delay = backoffMs;
    backoffMs = Math.min(backoffMs * 2, BACKOFF_MAX_MS);
    const text = 'reconnecting…' + (lastError ? ' (' + lastError + ')' : '');
    setStatus('reconnecting', text, { label: 'retry now', run: retryNow });
    retryTimer = setTimeout(function () {
      retryTimer = null;
      connect();
    }, delay);
  }

  /** Open the WebSocket for sessionId and wire its events. */
  function openSocket(gen, ticket) {
    let sock;
    try {
      sock = new WebSocket(wsUrl(sessionId, ticket));
    } catch (err) {
      lastError = describeError(err);
      scheduleReconnect();
      return;
    }
    sock.binaryType = 'arraybuffer';
    ws = sock;

    // What this particular socket told us before closing.
    const seen = { exited: false, takenOver: false };

    sock.onmessage = function (ev) {
      if (ws !== sock || gen !== generation) {
        return;
      }
      if (typeof ev.data === 'string') {
        handleControl(ev.data, seen);
      } else {
        // Replay and live output: raw bytes, xterm decodes UTF-8 itself.
        term.write(new Uint8Array(ev.data));
      }
    };

    sock.onerror = function () {
      // Always followed by a close event, which does the real handling.
    };

    sock.onclose = function (ev) {
      if (ws !== sock || gen !== generation) {
        return;
      }
      ws = null;
      if (seen.exited) {
        return; // status already shows "session ended"
      }
      if (seen.takenOver || ev.code === CLOSE_TAKEN_OVER) {
        showTakenOver();
        return;
      }
      // Anything else (network drop, server restart 1001, abnormal 1006...):
      // reconnect; connect() creates a new session if this one is gone.
      if (!lastError && ev.code !== 1000 && ev.code !== 1001) {
        lastError = 'connection closed (' + ev.code + ')';
      }
      scheduleReconnect();
    };
  }

  /** Handle a JSON text frame from the server. */
  function handleControl(text, seen) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (err) {
      console.warn('kterm: unparsable control message', text);
      return;
    }
    switch (msg.type) {
      case 'attached':
        // Start of a (re)attach: clear the screen so the replay that follows
        // does not duplicate what is already shown.
        backoffMs = BACKOFF_MIN_MS;
        lastError = '';
        term.reset();
        setStatus('connected', 'connected · session ' + shortId(msg.session || sessionId));
        safeFit();
        sendResize();
        break;

      case 'exit':
        seen.exited = true;
        showEnded(msg.code);
        break;

      case 'detached':
        if (msg.reason === 'taken_over') {
          seen.takenOver = true;
          showTakenOver();
        } else {
          lastError = 'detached' + (msg.reason ? ' (' + msg.reason + ')' : '');
        }
        break;

      case 'error':
        lastError = (msg.message || 'error') + (msg.code ? ' (' + msg.code + ')' : '');
        setStatus('error', lastError, currentAction);
        break;

      default:
        console.debug('kterm: ignoring control message', msg);
    }
  }

  function shortId(id) {
    return id ? String(id).slice(0, 8) : '?';
  }

  /** The shell exited: stop, offer a fresh session. */
  function showEnded(code) {
    const text =
      code === undefined || code === null
        ? 'session ended'
        : 'session ended (exit code ' + code + ')';
    setStatus('ended', text, { label: 'new session', run: newSession });
    notice(text + ' — press Enter for a new session');
  }

  /** Another tab attached to this session: stop, offer to take it back. */
  function showTakenOver() {
    resetConnection(); // no auto-reconnect
    setStatus('taken_over', 'taken over by another tab', { label: 'reattach', run: retryNow });
    notice('taken over by another tab — press Enter to reattach');
  }

  /** Forget the old session and start a fresh one. */
  function newSession() {
    if (!launch) {
      forgetStoredId();
    }
    sessionId = null;
    retryNow();
  }

  // ---------------------------------------------------------------------------
  // Terminal <-> socket
  // ---------------------------------------------------------------------------

  function socketOpen() {
    return ws !== null && ws.readyState === WebSocket.OPEN;
  }

  function sendResize() {
    if (socketOpen()) {
      ws.send(JSON.stringify({ type: 'resize', cols: term.cols, rows: term.rows }));
    }
  }

  // Keyboard input / paste: UTF-8 bytes in a binary frame.
  term.onData(function (data) {
    const isEnter = data === '\r' || data === '\n';
    if (mode === 'ended' || mode === 'taken_over') {
      // The shell is gone or another tab owns it: Enter does what the
      // status button offers, other keys go nowhere.
      if (isEnter) {
        runAction();
      }
    } else if (socketOpen()) {
      ws.send(encoder.encode(data));
    } else if (isEnter && currentAction) {
      // Disconnected (reconnecting / error): Enter retries at once.
      runAction();
    }
  });

  // Binary input (some legacy mouse reports): one byte per char code.
  term.onBinary(function (data) {
    if (socketOpen()) {
      const bytes = new Uint8Array(data.length);
      for (let i = 0; i < data.length; i++) {
        bytes[i] = data.charCodeAt(i) & 0xff;
      }
      ws.send(bytes);
    }
  });

  // Refit on window resize (debounced), then tell the server.
  let resizeTimer = null;
  window.addEventListener('resize', function () {
    if (resizeTimer !== null) {
      clearTimeout(resizeTimer);
    }
    resizeTimer = setTimeout(function () {
      resizeTimer = null;
      safeFit();
      sendResize();
    }, RESIZE_DEBOUNCE_MS);
  });

  // Web fonts may load after the first fit and change the cell size.
  if (document.fonts && document.fonts.ready) {
    document.fonts.ready.then(function () {
      safeFit();
      sendResize();
    });
  }

  // Back online: do not wait for the rest of the backoff.
  window.addEventListener('online', function () {
    if (mode === 'reconnecting') {
      retryNow();
    }
  });

  // ---------------------------------------------------------------------------
  // Start
  // ---------------------------------------------------------------------------

  renderLaunchContext();
  safeFit();
  term.focus();

  // Contextual launch: always a new session with that namespace/context.
  // Plain page: reattach to the remembered session if it is still alive.
  sessionId = launch ? null : loadStoredId();
  connect();
})();
