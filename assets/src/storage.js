// What the page remembers in localStorage: open tabs, panel sizes, preferences. Storage may be
// unavailable (private mode, a sandboxed iframe); then nothing is remembered and nothing breaks.

const PREFIX = 'kterm.';

export function load(key, fallback) {
  try {
    const raw = window.localStorage.getItem(PREFIX + key);
    return raw === null ? fallback : { ...fallback, ...JSON.parse(raw) };
  } catch {
    return fallback;
  }
}

export function save(key, value) {
  try {
    window.localStorage.setItem(PREFIX + key, JSON.stringify(value));
  } catch {
    // Full or unavailable: the page still works, it just forgets.
  }
}
