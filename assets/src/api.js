// The REST API as the page uses it. Every URL is relative to the page, so kterm works under a
// base path behind a reverse proxy; the session cookie rides along (same origin).

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/** Sends the user to the login form; the query string (contextual launch) survives. */
export function toLogin() {
  window.location.assign('login.html' + window.location.search);
}

/**
 * Calls the API. `body` is JSON unless it is a Blob/ArrayBuffer/string (sent raw). Resolves to
 * the Response for 2xx; rejects with ApiError (the server's `{"error":{code,message}}`) or with
 * a TypeError when the network failed.
 */
export async function request(method, url, { body, headers = {}, json = true } = {}) {
  const init = { method, headers: { ...headers }, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    if (json) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    } else {
      init.body = body;
    }
  }
  const response = await fetch(url, init);
  if (!response.ok) {
    let error = {};
    try {
      error = (await response.json()).error || {};
    } catch {
      // Not JSON (a proxy's error page): keep the status line.
    }
    throw new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || response.statusText || `HTTP ${response.status}`,
    );
  }
  return response;
}

/** GET/POST/DELETE with a JSON answer (or null for 204). */
export async function api(method, url, body) {
  const response = await request(method, url, { body });
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

export const sessionUrl = (id) => `api/v1/sessions/${encodeURIComponent(id)}`;

/** The session, or null when the server no longer knows it. */
export async function fetchSession(id) {
  try {
    return await api('GET', sessionUrl(id));
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

/**
 * The WebSocket address, built from the page's own location (not `websocket_url`) so it
 * follows whatever base path the page was reached under. A single-use ticket is added when the
 * server gives one: browsers that send no cookie on a WebSocket still get in.
 */
export async function websocketUrl(id) {
  let ticket = null;
  try {
    ticket = (await api('POST', `${sessionUrl(id)}/ticket`, {}))?.ticket ?? null;
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 404)) throw err;
  }
  const url = new URL(`${sessionUrl(id)}/ws`, document.baseURI);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.hash = '';
  url.search = ticket ? `?ticket=${encodeURIComponent(ticket)}` : '';
  return url.href;
}

/** A short text for an error, for the status line. */
export function describe(err) {
  if (err instanceof ApiError) return err.message;
  if (err instanceof TypeError) return 'the server cannot be reached';
  return String(err?.message ?? err);
}

/** Errors worth retrying on their own: the network, a proxy, overload, a backend restart. */
export function isTransient(err) {
  return !(err instanceof ApiError) || err.status >= 500 || err.status === 408 || err.status === 429;
}
