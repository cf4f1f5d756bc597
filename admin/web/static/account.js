// Account: the signed-in user's own password and API tokens. Passwords go
// to the API only and are cleared from the form once sent; a new token's
// secret is shown once, in this view, and cleared when the view is left.
'use strict';
(function () {
  const { $, el } = MX;
  let tokens = [];

  // hideSecret removes a shown token secret from the page.
  function hideSecret() {
    $('#token-created').hidden = true;
    $('#token-secret').value = '';
    $('#token-created-name').textContent = '';
    $('#token-copy-status').textContent = '';
  }

  function clearPasswords() {
    for (const id of ['#password-current', '#password-new', '#password-repeat']) $(id).value = '';
  }

  function render() {
    const tbody = $('#token-table tbody');
    tbody.replaceChildren(...tokens.map((t) => el('tr', { dataset: { id: t.id } },
      el('td', {},
        t.name ? el('strong', { text: t.name }) : el('span', { class: 'unnamed', text: 'unnamed' }),
        t.current ? ' ' : null,
        t.current ? el('span', { class: 'pill', title: 'This request was made with this token', text: 'this session' }) : null),
      el('td', { class: 'mono', text: t.id }),
      el('td', { class: 'nowrap', text: MX.fmtTime(t.created_at) }),
      el('td', { class: 'nowrap', title: t.last_used_at ? MX.fmtTime(t.last_used_at) : '', text: t.last_used_at ? MX.fmtAgo(t.last_used_at) : 'never' }),
      el('td', {}, el('div', { class: 'row-actions' },
        el('button', { type: 'button', class: 'btn danger small revoke-token', dataset: { id: t.id },
          'aria-label': 'Revoke token ' + (t.name || t.id), text: 'Revoke', onclick: () => revoke(t) }))))));
    MX.labelCells($('#token-table'));
    $('#token-empty').hidden = tokens.length > 0;
    $('#tokens-info').textContent = tokens.length ? MX.plural(tokens.length, 'token') : '';
  }

  async function load() {
    try {
      const r = await MX.api('GET', '/api/v1/tokens');
      tokens = r.tokens || [];
    } catch (e) { MX.fail(e); return; }
    render();
  }

  async function submitPassword(ev) {
    ev.preventDefault();
    const f = $('#password-form');
    const box = $('#password-error');
    MX.clearErrors(f, box);
    $('#password-ok').hidden = true;
    const current = $('#password-current').value;
    const next = $('#password-new').value;
    const repeat = $('#password-repeat').value;
    if (!current) { MX.showError(f, box, { field: 'current_password', message: 'Enter your current password.' }); return; }
    if (!next) { MX.showError(f, box, { field: 'new_password', message: 'Enter the new password.' }); return; }
    if (next !== repeat) {
      MX.showError(f, box, { field: 'new_password_repeat', message: 'The two new passwords differ. Type the new password again.' });
      return;
    }
    const btn = $('#password-submit');
    btn.disabled = true;
    try {
      await MX.api('POST', '/api/v1/me/password', { current_password: current, new_password: next });
      clearPasswords();
      const ok = $('#password-ok');
      ok.textContent = 'Password changed. Use the new password from your next login; your other sessions have been logged out.';
      ok.hidden = false;
    } catch (e) {
      if (e.status === 429) e.message = 'Too many wrong passwords. ' + e.message.replace(/^too many failed logins; /, '').replace(/^t/, 'T') + '.';
      MX.showError(f, box, e);
    } finally {
      btn.disabled = false;
    }
  }

  async function submitToken(ev) {
    ev.preventDefault();
    const f = $('#token-form');
    const box = $('#token-error');
    MX.clearErrors(f, box);
    const name = $('#token-name').value.trim();
    if (!name) { MX.showError(f, box, { field: 'name', message: 'Name the token after where it is used, e.g. monitoring.' }); return; }
    const btn = $('#token-submit');
    btn.disabled = true;
    try {
      const t = await MX.api('POST', '/api/v1/tokens', { name });
      f.reset();
      $('#token-created-name').textContent = t.name || t.id;
      $('#token-secret').value = t.token;
      $('#token-copy-status').textContent = '';
      $('#token-created').hidden = false;
      $('#token-secret').focus();
      $('#token-secret').select();
      load();
    } catch (e) {
      MX.showError(f, box, e);
    } finally {
      btn.disabled = false;
    }
  }

  async function copySecret() {
    const input = $('#token-secret');
    const status = $('#token-copy-status');
    try {
      if (!navigator.clipboard) throw new Error('no clipboard');
      await navigator.clipboard.writeText(input.value);
      status.textContent = 'Copied to the clipboard.';
    } catch (e) {
      // Without the clipboard API (plain HTTP on another host, or refused):
      // select the text for the user to copy.
      input.focus();
      input.select();
      status.textContent = 'Selected: copy it with Ctrl+C (⌘C), or long-press on a phone.';
    }
  }

  async function revoke(t) {
    const label = t.name ? `“${t.name}” (${t.id})` : t.id;
    const self = t.current ? ' This session uses it and ends too.' : '';
    if (!confirm(`Revoke the API token ${label}? Whatever uses it gets “401 Unauthorized” from its next request on.${self}`)) return;
    try {
      await MX.api('DELETE', '/api/v1/tokens/' + encodeURIComponent(t.id));
    } catch (e) {
      if (e.status !== 404) { MX.fail(e); return; }
      // Revoked meanwhile (another tab): it is gone all the same.
    }
    MX.notify(`API token ${t.name || t.id} revoked.`);
    load();
  }

  MX.views.account = {
    show() {
      const me = MX.me;
      $('#account-who').textContent = `Signed in as ${me.username} (${me.role}${me.account ? ', account ' + me.account : ''})`;
      $('#password-username').value = me.username;
      clearPasswords();
      MX.clearErrors($('#password-form'), $('#password-error'));
      MX.clearErrors($('#token-form'), $('#token-error'));
      $('#password-ok').hidden = true;
      hideSecret();
      load();
    },
  };

  document.addEventListener('DOMContentLoaded', () => {
    $('#password-form').addEventListener('submit', submitPassword);
    $('#token-form').addEventListener('submit', submitToken);
    $('#token-copy').addEventListener('click', copySecret);
    $('#token-done').addEventListener('click', hideSecret);
    // Leaving the view (or logging out) takes a shown secret off the page.
    window.addEventListener('hashchange', () => { if (!location.hash.startsWith('#/account')) hideSecret(); });
    $('#logout').addEventListener('click', () => { hideSecret(); clearPasswords(); });
  });
})();
