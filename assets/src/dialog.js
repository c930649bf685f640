// In-page dialogs (confirm and prompt) on a <dialog> element, instead of window.confirm and
// window.prompt, which block the page and can be suppressed by the browser.

const dialog = () => document.getElementById('dialog');

/** Resolves to the entered text, or null when cancelled. */
export function ask(text, { value = '', ok = 'OK', input = true } = {}) {
  const box = dialog();
  const field = document.getElementById('dialog-input');
  const okButton = document.getElementById('dialog-ok');
  const cancel = document.getElementById('dialog-cancel');
  document.getElementById('dialog-text').textContent = text;
  okButton.textContent = ok;
  field.hidden = !input;
  field.value = value;
  return new Promise((resolve) => {
    const finish = (result) => {
      cancel.onclick = null;
      box.onclose = null;
      if (box.open) box.close();
      resolve(result);
    };
    cancel.onclick = () => finish(null);
    box.onclose = () => finish(box.returnValue === 'ok' ? field.value : null);
    box.returnValue = '';
    box.showModal();
    if (input) {
      field.focus();
      field.select();
    } else {
      okButton.focus();
    }
  });
}

/** Resolves to true when confirmed. */
export async function confirm(text, ok = 'OK') {
  return (await ask(text, { ok, input: false })) !== null;
}
