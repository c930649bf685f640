/*
 * kterm login page. Asks the server which fields its auth mode needs
 * (GET api/v1/auth/login), posts them to api/v1/auth/login, and on success
 * goes back to the terminal page with the same query string (contextual
 * launch parameters survive the detour). The session cookie is HttpOnly: this
 * script never sees it. Relative URLs only; no inline script (CSP).
 */
import './login.css';
import { load } from './storage.js';
import { applyPageTheme, initialTheme } from './theme.js';

applyPageTheme(initialTheme(load('prefs', { theme: null }).theme));

(function () {
  'use strict';

  const LOGIN_URL = 'api/v1/auth/login';
  const form = document.getElementById('login');
  const message = document.getElementById('message');
  const button = form.querySelector('button');
  const inputs = {
    username: document.getElementById('username'),
    password: document.getElementById('password'),
    token: document.getElementById('token'),
  };
  let fields = [];

  function say(text) {
    message.textContent = text;
  }

  function backToTerminal() {
    window.location.assign('./' + window.location.search);
  }

  async function start() {
    let info;
    try {
      const res = await fetch(LOGIN_URL, { credentials: 'same-origin', cache: 'no-store' });
      info = await res.json();
    } catch (err) {
      say('The server cannot be reached.');
      return;
    }
    fields = info.fields || [];
    if (fields.length === 0) {
      // Modes "none" and "proxy" need no form: identity comes with the request.
      say(info.mode === 'proxy'
        ? 'Sign in through your organisation\'s login page, then reload.'
        : 'No login is needed here.');
      return;
    }
    fields.forEach(function (name) {
      document.getElementById(name + '-row').hidden = false;
    });
    form.hidden = false;
    inputs[fields[0]].focus();
  }

  form.addEventListener('submit', async function (event) {
    event.preventDefault();
    const body = {};
    fields.forEach(function (name) {
      body[name] = inputs[name].value;
    });
    button.disabled = true;
    say('');
    try {
      const res = await fetch(LOGIN_URL, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
      if (res.ok) {
        backToTerminal();
        return;
      }
      let text = 'Login failed (HTTP ' + res.status + ').';
      try {
        const data = await res.json();
        if (data && data.error && data.error.message) {
          text = data.error.message;
        }
      } catch (err) {
        /* not JSON: keep the generic text */
      }
      if (res.status === 429) {
        const wait = res.headers.get('Retry-After');
        text = 'Too many failed logins.' + (wait ? ' Try again in ' + wait + ' s.' : '');
      }
      say(text);
      if (inputs.password.value) {
        inputs.password.value = '';
      }
    } catch (err) {
      say('The server cannot be reached.');
    } finally {
      button.disabled = false;
    }
  });

  start();
})();
