// Find in the terminal: Ctrl+Shift+F (or the 🔍 button) opens a small bar over the active tab;
// Enter finds the next match upwards from the newest output, Shift+Enter the one below, Escape
// closes. Matches are found in the whole buffer (scrollback included) by xterm's search addon.

const $ = (id) => document.getElementById(id);

export class SearchBar {
  /** @param {function} activeTab  () -> the active TerminalTab or undefined */
  constructor(activeTab) {
    this.activeTab = activeTab;
    this.tab = null;
    this.bar = $('search');
    this.input = $('search-input');
    this.status = $('search-status');
    this.input.addEventListener('input', () => this.find('previous', true));
    this.input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') {
        event.preventDefault();
        this.find(event.shiftKey ? 'next' : 'previous');
      } else if (event.key === 'Escape') {
        event.preventDefault();
        this.close();
      }
    });
    $('search-prev').addEventListener('click', () => this.find('previous'));
    $('search-next').addEventListener('click', () => this.find('next'));
    $('search-close').addEventListener('click', () => this.close());
  }

  get isOpen() {
    return !this.bar.hidden;
  }

  open(tab) {
    this.tab = tab;
    this.bar.hidden = false;
    const selected = tab.term.getSelection();
    if (selected && !selected.includes('\n')) this.input.value = selected;
    this.input.select();
    this.input.focus();
    if (this.input.value) this.find('previous', true);
  }

  close() {
    if (!this.isOpen) return;
    this.bar.hidden = true;
    this.status.textContent = '';
    this.tab?.search.clearDecorations();
    this.tab?.term.clearSelection();
    this.tab?.term.focus();
    this.tab = null;
  }

  /** Finds `direction` ('previous' is upwards, where older output is); `incremental` while typing. */
  find(direction, incremental = false) {
    const tab = this.tab ?? this.activeTab();
    const text = this.input.value;
    if (!tab || !text) {
      this.status.textContent = '';
      tab?.term.clearSelection();
      return;
    }
    const options = { incremental, caseSensitive: false };
    const found = direction === 'next'
      ? tab.search.findNext(text, options)
      : tab.search.findPrevious(text, options);
    this.status.textContent = found ? '' : 'no match';
    this.bar.dataset.found = String(found);
  }
}
