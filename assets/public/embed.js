// kterm's embed script: a terminal panel for another web page (a dashboard), served by kterm at
// `/embed.js`. Include it and put a panel on the page, declaratively or with one call:
//
//   <script src="https://kterm.example.com/embed.js" defer></script>
//   <kterm-panel namespace="team-a" context='{"run_id": "42"}'></kterm-panel>
//
//   KTerm.panel({ namespace: 'team-a', profile: 'gpu', context: { run_id: '42' } });
//
// The panel is a collapsible, resizable strip at the bottom of the page with kterm in an iframe
// (its compact layout: no file tree, a slim tab bar), and a "Terminal" button that opens it.
// Nothing of kterm is fetched before the panel first opens. Whether it is open and its height are
// kept in localStorage. namespace, profile and context reach kterm's contextual launch
// (`?namespace=&profile=&ctx.KEY=`): the first open makes a session with them (or re-attaches the
// tab that has them), and the shell sees KTERM_CTX_<KEY>.
//
// Attributes of <kterm-panel> (and options of KTerm.panel): src (kterm's URL; default: where this
// script came from), namespace, profile, context (a JSON object), height (px, default 320),
// open ("" to start open), storage-key (default "kterm-panel"), label (default "Terminal").
// Methods: open(), close(), toggle(), launch({namespace, profile, context}). Events: "toggle"
// (detail: {open}).
//
// kterm must allow the page to frame it: list the page's origin in `server.frame_ancestors`.
(function () {
  'use strict';
  if (window.customElements.get('kterm-panel')) return;

  const scriptUrl = document.currentScript ? document.currentScript.src : '';
  const MIN_HEIGHT = 120;
  const DEFAULT_HEIGHT = 320;

  const STYLE = `
    :host { all: initial; font: 13px system-ui, -apple-system, "Segoe UI", sans-serif; }
    .button {
      position: fixed; right: 16px; bottom: 16px; z-index: 2147483000;
      display: flex; align-items: center; gap: 6px; padding: 7px 14px;
      border: 1px solid #3a4048; border-radius: 18px; background: #1e2228; color: #e6e6e6;
      box-shadow: 0 4px 16px rgb(0 0 0 / 30%); cursor: pointer; font: inherit;
    }
    .button:hover { background: #2a2f37; }
    .button[hidden], .panel[hidden] { display: none; }
    .panel {
      position: fixed; left: 0; right: 0; bottom: 0; z-index: 2147483000;
      display: flex; flex-direction: column; background: #1e2228;
      border-top: 1px solid #3a4048; box-shadow: 0 -6px 24px rgb(0 0 0 / 25%);
    }
    .grip { height: 5px; cursor: ns-resize; flex: none; touch-action: none; }
    .grip:hover, .grip.dragging { background: #3b82f6; }
    .head {
      display: flex; align-items: center; gap: 6px; height: 26px; padding: 0 6px 0 12px;
      color: #c8c8c8; flex: none; user-select: none;
    }
    .title { flex: 1; font-weight: 600; }
    .head a, .head button {
      color: #c8c8c8; background: none; border: none; cursor: pointer; font: inherit;
      padding: 2px 6px; border-radius: 4px; text-decoration: none;
    }
    .head a:hover, .head button:hover { background: #2a2f37; color: #fff; }
    iframe { flex: 1; width: 100%; border: 0; background: #1e2228; }
    .dragging-cover { position: fixed; inset: 0; z-index: 2147483001; cursor: ns-resize; }
  `;

  class KtermPanel extends HTMLElement {
    constructor() {
      super();
      this.frame = null;
      const root = this.attachShadow({ mode: 'open' });
      root.innerHTML = `
        <style>${STYLE}</style>
        <button class="button" part="button" type="button" aria-expanded="false">
          <span aria-hidden="true">&gt;_</span><span class="label">Terminal</span></button>
        <section class="panel" part="panel" hidden aria-label="Terminal">
          <div class="grip" role="separator" aria-orientation="horizontal" title="Drag to resize"></div>
          <div class="head">
            <span class="title">Terminal</span>
            <a class="window" target="_blank" rel="noopener" title="Open in a new window">↗</a>
            <button class="collapse" type="button" title="Hide the terminal" aria-label="hide the terminal">▾</button>
          </div>
        </section>`;
      this.button = root.querySelector('.button');
      this.panel = root.querySelector('.panel');
      this.button.addEventListener('click', () => this.open());
      root.querySelector('.collapse').addEventListener('click', () => this.close());
      this.grip = root.querySelector('.grip');
      this.grip.addEventListener('pointerdown', (event) => this.drag(event));
    }

    connectedCallback() {
      const label = this.getAttribute('label') || 'Terminal';
      this.shadowRoot.querySelector('.label').textContent = label;
      this.shadowRoot.querySelector('.title').textContent = label;
      this.setHeight(Number(this.load('height')) || Number(this.getAttribute('height')) || DEFAULT_HEIGHT);
      const saved = this.load('open');
      if (saved === 'true' || (saved === null && this.hasAttribute('open'))) this.open();
    }

    disconnectedCallback() {
      document.body.style.paddingBottom = this.savedPadding ?? '';
    }

    get isOpen() {
      return !this.panel.hidden;
    }

    /** kterm's page URL with the compact layout and the launch parameters. */
    pageUrl(forWindow = false) {
      const base = this.getAttribute('src') || new URL('.', scriptUrl || window.location.href).href;
      const url = new URL(base, window.location.href);
      if (!url.pathname.endsWith('/')) url.pathname += '/';
      if (!forWindow) url.searchParams.set('layout', 'compact');
      const namespace = this.getAttribute('namespace');
      const profile = this.getAttribute('profile');
      if (namespace) url.searchParams.set('namespace', namespace);
      if (profile) url.searchParams.set('profile', profile);
      for (const [key, value] of Object.entries(this.context())) {
        url.searchParams.set(`ctx.${key}`, String(value));
      }
      return url.href;
    }

    context() {
      const raw = this.getAttribute('context');
      if (!raw) return {};
      try {
        const value = JSON.parse(raw);
        return value && typeof value === 'object' && !Array.isArray(value) ? value : {};
      } catch {
        console.warn('kterm-panel: the context attribute is not a JSON object:', raw);
        return {};
      }
    }

    open() {
      if (!this.frame) {
        // The first open: only now is anything of kterm fetched.
        this.frame = document.createElement('iframe');
        this.frame.title = 'kterm terminal';
        this.frame.allow = 'clipboard-read; clipboard-write';
        this.frame.src = this.pageUrl();
        this.panel.append(this.frame);
      }
      this.shadowRoot.querySelector('.window').href = this.pageUrl(true);
      this.panel.hidden = false;
      this.button.hidden = true;
      this.button.setAttribute('aria-expanded', 'true');
      this.pad(true);
      this.store('open', 'true');
      this.frame.focus();
      this.dispatchEvent(new CustomEvent('toggle', { detail: { open: true } }));
    }

    close() {
      this.panel.hidden = true;
      this.button.hidden = false;
      this.button.setAttribute('aria-expanded', 'false');
      this.pad(false);
      this.store('open', 'false');
      this.dispatchEvent(new CustomEvent('toggle', { detail: { open: false } }));
    }

    toggle() {
      if (this.isOpen) this.close();
      else this.open();
    }

    /** A new launch context (the host page moved to another run): kterm opens it in a tab. */
    launch({ namespace, profile, context } = {}) {
      for (const [name, value] of [['namespace', namespace], ['profile', profile]]) {
        if (value) this.setAttribute(name, value);
        else this.removeAttribute(name);
      }
      if (context) this.setAttribute('context', JSON.stringify(context));
      else this.removeAttribute('context');
      if (this.frame) this.frame.src = this.pageUrl();
      this.open();
    }

    /** Keeps the page's own content clear of the open panel. */
    pad(open) {
      if (this.hasAttribute('overlay')) return;
      if (this.savedPadding === undefined) this.savedPadding = document.body.style.paddingBottom;
      document.body.style.paddingBottom = open ? `${this.height}px` : this.savedPadding;
    }

    setHeight(px) {
      const max = Math.max(MIN_HEIGHT, window.innerHeight * 0.9);
      this.height = Math.round(Math.min(max, Math.max(MIN_HEIGHT, px)));
      this.panel.style.height = `${this.height}px`;
      if (this.isOpen) this.pad(true);
    }

    drag(event) {
      event.preventDefault();
      // A cover over the page (and the iframe) keeps the pointer events while dragging.
      const cover = document.createElement('div');
      cover.className = 'dragging-cover';
      this.shadowRoot.append(cover);
      this.grip.classList.add('dragging');
      const move = (e) => this.setHeight(window.innerHeight - e.clientY);
      const up = () => {
        cover.remove();
        this.grip.classList.remove('dragging');
        window.removeEventListener('pointermove', move);
        window.removeEventListener('pointerup', up);
        this.store('height', String(this.height));
      };
      window.addEventListener('pointermove', move);
      window.addEventListener('pointerup', up);
    }

    key(name) {
      return `${this.getAttribute('storage-key') || 'kterm-panel'}:${name}`;
    }

    load(name) {
      try {
        return window.localStorage.getItem(this.key(name));
      } catch {
        return null;
      }
    }

    store(name, value) {
      try {
        window.localStorage.setItem(this.key(name), value);
      } catch {
        // Storage may be off (private mode); the panel works without it.
      }
    }
  }

  window.customElements.define('kterm-panel', KtermPanel);

  window.KTerm = {
    /** Adds a panel to the page (see the top of this file for the options); returns it. */
    panel(options = {}) {
      const panel = document.createElement('kterm-panel');
      for (const name of ['src', 'namespace', 'profile', 'height', 'label', 'storage-key']) {
        const value = options[name] ?? options[name.replace(/-(\w)/g, (_, c) => c.toUpperCase())];
        if (value !== undefined && value !== null) panel.setAttribute(name, String(value));
      }
      if (options.context) panel.setAttribute('context', JSON.stringify(options.context));
      if (options.open) panel.setAttribute('open', '');
      if (options.overlay) panel.setAttribute('overlay', '');
      (options.parent || document.body).append(panel);
      return panel;
    },
  };
})();
