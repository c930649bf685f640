// Panel sizes: the file tree's width, the editor's width and whether the tree shows, dragged
// with the splitters and remembered in localStorage. In the compact layout (a small embedded
// panel) the tree never shows, and that is not remembered.

import { load, save } from './storage.js';

const $ = (id) => document.getElementById(id);

export class Layout {
  /**
   * @param {function} resized  called after the terminal's space changed
   * @param {object} options     {compact}: no file tree
   */
  constructor(resized, { compact = false } = {}) {
    this.resized = resized;
    this.compact = compact;
    this.state = load('layout', { filesOpen: window.innerWidth >= 900, filesWidth: 240, editorWidth: 0.45 });
    this.drag($('files-splitter'), (x) => {
      this.state.filesWidth = Math.round(Math.max(140, Math.min(x, window.innerWidth * 0.5)));
    });
    this.drag($('editor-splitter'), (x) => {
      const left = $('editor').getBoundingClientRect().left;
      const width = $('workbench').clientWidth;
      this.state.editorWidth = Math.max(0.15, Math.min(0.85, (x - left) / width));
    });
    window.addEventListener('resize', () => this.resized());
  }

  toggleFiles() {
    if (this.compact) return;
    this.state.filesOpen = !this.state.filesOpen;
    this.apply();
  }

  /** Whether the file tree shows. */
  get filesOpen() {
    return this.state.filesOpen && !this.compact;
  }

  apply() {
    const { filesWidth, editorWidth } = this.state;
    const filesOpen = this.filesOpen;
    $('files').hidden = !filesOpen;
    $('files-splitter').hidden = !filesOpen;
    $('toggle-files').setAttribute('aria-pressed', String(filesOpen));
    $('files').style.width = `${filesWidth}px`;
    $('editor').style.flexBasis = `${(editorWidth * 100).toFixed(1)}%`;
    save('layout', this.state);
    this.resized();
  }

  drag(handle, move) {
    handle.addEventListener('pointerdown', (event) => {
      event.preventDefault();
      handle.setPointerCapture(event.pointerId);
      document.body.classList.add('dragging');
      const onMove = (e) => {
        move(e.clientX);
        this.apply();
      };
      const onUp = () => {
        handle.removeEventListener('pointermove', onMove);
        handle.removeEventListener('pointerup', onUp);
        document.body.classList.remove('dragging');
      };
      handle.addEventListener('pointermove', onMove);
      handle.addEventListener('pointerup', onUp);
    });
  }
}
