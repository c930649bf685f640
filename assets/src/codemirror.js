// CodeMirror 6, in its own chunk: the page loads it the first time a file is opened.

import { EditorView, basicSetup } from 'codemirror';
import { Compartment, EditorState } from '@codemirror/state';
import { keymap } from '@codemirror/view';
import { indentWithTab } from '@codemirror/commands';
import { StreamLanguage } from '@codemirror/language';
import { shell } from '@codemirror/legacy-modes/mode/shell';
import { python } from '@codemirror/lang-python';
import { yaml } from '@codemirror/lang-yaml';
import { json } from '@codemirror/lang-json';
import { markdown } from '@codemirror/lang-markdown';
import { oneDark } from '@codemirror/theme-one-dark';

function language(path) {
  const name = path.split('/').pop().toLowerCase();
  const ext = name.includes('.') ? name.slice(name.lastIndexOf('.') + 1) : '';
  if (ext === 'py' || ext === 'pyi') return python();
  if (ext === 'yaml' || ext === 'yml') return yaml();
  if (ext === 'json' || ext === 'ipynb') return json();
  if (ext === 'md' || ext === 'markdown') return markdown();
  if (['sh', 'bash', 'zsh', 'ksh'].includes(ext) || /^\.(bash|zsh)?(rc|_profile|profile)$/.test(name)) {
    return StreamLanguage.define(shell);
  }
  return [];
}

const themeFor = (name) => (name === 'light' ? [] : oneDark);

/**
 * An editor in `parent` for `doc`. `onChange()` runs on every edit and `onSave()` on
 * Ctrl/Cmd-S. Returns a small handle the page drives.
 */
export function createEditor({ parent, doc, path, theme, onChange, onSave }) {
  const themeSlot = new Compartment();
  const languageSlot = new Compartment();
  const extensions = () => [
    basicSetup,
    keymap.of([{ key: 'Mod-s', preventDefault: true, run: () => (onSave(), true) }, indentWithTab]),
    languageSlot.of(language(path)),
    themeSlot.of(themeFor(theme)),
    EditorView.updateListener.of((update) => update.docChanged && onChange()),
  ];
  const view = new EditorView({ parent, state: EditorState.create({ doc, extensions: extensions() }) });
  return {
    text: () => view.state.doc.toString(),
    /** Replaces the whole document (a new file, or a reload from disk). */
    load(newDoc, newPath) {
      path = newPath;
      view.setState(EditorState.create({ doc: newDoc, extensions: extensions() }));
    },
    setTheme(name) {
      theme = name;
      view.dispatch({ effects: themeSlot.reconfigure(themeFor(name)) });
    },
    focus: () => view.focus(),
  };
}
