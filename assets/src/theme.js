// Dark and light themes: the page's colours come from CSS (`html[data-theme]`), the terminal's
// from these palettes, which match them.

const DARK = {
  background: '#101418',
  foreground: '#d8dee9',
  cursor: '#d8dee9',
  cursorAccent: '#101418',
  selectionBackground: '#3a4a5c',
  black: '#1d2128', red: '#e0605b', green: '#8fbf6f', yellow: '#e0b341',
  blue: '#6c9ee0', magenta: '#c594c5', cyan: '#5fb3b3', white: '#d8dee9',
  brightBlack: '#5c6773', brightRed: '#ff7b72', brightGreen: '#a6da95', brightYellow: '#f2cc60',
  brightBlue: '#8ab4f8', brightMagenta: '#d2a8ff', brightCyan: '#76e3ea', brightWhite: '#ffffff',
};

const LIGHT = {
  background: '#fbfbfa',
  foreground: '#24292f',
  cursor: '#24292f',
  cursorAccent: '#fbfbfa',
  selectionBackground: '#b6d3f5',
  black: '#24292f', red: '#cf222e', green: '#1a7f37', yellow: '#9a6700',
  blue: '#0969da', magenta: '#8250df', cyan: '#1b7c83', white: '#6e7781',
  brightBlack: '#57606a', brightRed: '#a40e26', brightGreen: '#116329', brightYellow: '#7d4e00',
  brightBlue: '#0550ae', brightMagenta: '#6639ba', brightCyan: '#3192aa', brightWhite: '#8c959f',
};

export function terminalTheme(name) {
  return name === 'light' ? LIGHT : DARK;
}

/** The theme to start with: the saved one, else the system's preference. */
export function initialTheme(saved) {
  if (saved === 'light' || saved === 'dark') return saved;
  return window.matchMedia?.('(prefers-color-scheme: light)').matches ? 'light' : 'dark';
}

export function applyPageTheme(name) {
  document.documentElement.dataset.theme = name;
}
