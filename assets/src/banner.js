// The lifecycle banner: when the server warns that it will end a session (idle timeout or
// maximum lifetime), it says which tab and when, counting down, with "Keep alive" for an idle
// session. The soonest warning of any tab shows; a dismissed one stays dismissed.

const $ = (id) => document.getElementById(id);

export class Banner {
  /**
   * @param {function} keepAlive  (tab) -> void
   * @param {function} refresh    re-evaluates the warnings (after keep alive or dismiss)
   */
  constructor(keepAlive, refresh) {
    this.dismissed = new Set();
    this.current = null;
    this.timer = null;
    $('banner-keepalive').addEventListener('click', () => {
      if (!this.current) return;
      keepAlive(this.current.tab);
      refresh();
    });
    $('banner-dismiss').addEventListener('click', () => {
      if (!this.current) return;
      this.dismissed.add(this.current.key);
      refresh();
    });
  }

  update(tabs) {
    const warnings = [];
    for (const tab of tabs) {
      if (tab.state === 'ended') continue;
      for (const warning of tab.warnings.values()) {
        const key = `${tab.session}:${warning.reason}:${warning.at}`;
        if (!this.dismissed.has(key)) warnings.push({ tab, key, reason: warning.reason, at: warning.deadline });
      }
    }
    warnings.sort((a, b) => a.at - b.at);
    this.current = warnings[0] ?? null;
    clearInterval(this.timer);
    this.timer = null;
    const banner = $('banner');
    if (!this.current) {
      banner.hidden = true;
      delete banner.dataset.reason;
      return;
    }
    banner.hidden = false;
    banner.dataset.reason = this.current.reason;
    $('banner-keepalive').hidden = this.current.reason !== 'idle_timeout';
    this.render();
    this.timer = setInterval(() => this.render(), 1000);
  }

  render() {
    const { tab, reason, at } = this.current;
    const left = Math.max(0, Math.round((at - Date.now()) / 1000));
    const when = left > 0 ? `in ${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}` : 'now';
    $('banner-text').textContent = reason === 'idle_timeout'
      ? `"${tab.title}" has been idle and will be closed ${when}.`
      : `"${tab.title}" reaches its maximum lifetime and will be closed ${when}. Save your work.`;
  }
}
