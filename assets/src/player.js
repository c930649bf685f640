// The asciinema player with its stylesheet, in its own chunk: the page loads it the first time a
// recording is played. The stylesheet comes as text and goes into one <style> element (the CSP
// allows inline styles, not inline scripts), so the initial page carries none of it. The
// player's terminal emulator is WebAssembly, which the CSP allows ('wasm-unsafe-eval').

import { create } from 'asciinema-player';
import css from 'asciinema-player/dist/bundle/asciinema-player.css' with { type: 'text' };

function addStyle() {
  if (document.getElementById('asciinema-player-style')) return;
  const style = document.createElement('style');
  style.id = 'asciinema-player-style';
  style.textContent = css;
  document.head.append(style);
}

/**
 * Plays the asciicast v2 text `cast` in `host`; returns the player (`dispose()` frees it).
 * `theme` is the page's ('dark' or 'light').
 */
export function createPlayer(host, cast, { theme = 'dark' } = {}) {
  addStyle();
  return create({ data: cast }, host, {
    autoPlay: true,
    preload: true,
    fit: 'both',
    idleTimeLimit: 2,
    theme: theme === 'light' ? 'solarized-light' : 'asciinema',
    terminalFontFamily: 'ui-monospace, "Cascadia Mono", Menlo, Consolas, "DejaVu Sans Mono", monospace',
  });
}
