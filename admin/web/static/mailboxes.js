// Mailboxes: the shadow mailbox users of a domain in mode "both" — list,
// add, reset password, delete, CSV import. Passwords go to the API only;
// they are cleared from the forms once sent and never shown.
'use strict';
(function () {
  const { $, el } = MX;
  // importChunk is the most lines sent in one import request (the API's limit).
  const importChunk = 1000;
  const mb = { domain: '', users: [] };

  const base = () => '/api/v1/domains/' + encodeURIComponent(mb.domain) + '/mailboxes';
  const current = () => MX.domains.find((d) => d.name === mb.domain);

  function closePanels() {
    for (const id of ['#add-mailbox-panel', '#reset-mailbox-panel', '#import-mailboxes-panel']) $(id).hidden = true;
    $('#mailbox-password').value = '';
    $('#reset-mailbox-password').value = '';
  }

  async function fillDomains(selected) {
    let domains;
    try { domains = await MX.loadDomains(); } catch (e) { MX.fail(e); return; }
    // Domains in mode "both", and the chosen one whatever its mode (its
    // mailboxes can still be cleaned up).
    const list = domains.filter((d) => d.mode === 'both' || d.name === selected);
    const sel = $('#mailboxes-domain-select');
    sel.replaceChildren(...list.map((d) => el('option', { value: d.name, text: d.name })));
    if (selected && list.some((d) => d.name === selected)) sel.value = selected;
    mb.domain = sel.value || '';
  }

  // updateState enables what the chosen domain allows and explains why not.
  function updateState() {
    const d = current();
    const note = $('#mailboxes-note');
    let why = '';
    if (!MX.hasMailboxes()) why = 'Shadow mailboxes are not enabled on this node.';
    else if (!mb.domain) why = 'No domain is in mode “Both (local + relay)”. Switch a domain to that mode under Continuity to give its users mailboxes.';
    else if (d && d.mode !== 'both') why = `${d.name} is in mode “Relay”: new mailboxes need mode “Both (local + relay)”. Existing ones can still be reset or deleted.`;
    note.textContent = why;
    note.hidden = !why;
    const canAdd = MX.hasMailboxes() && !!d && d.mode === 'both';
    $('#add-mailbox-button').disabled = !canAdd;
    $('#import-mailboxes-button').disabled = !canAdd;
    $('#mailboxes-title').textContent = mb.domain ? `Mailboxes of ${mb.domain}` : 'Mailboxes';
    $('#mailbox-address').placeholder = 'jane@' + (mb.domain || 'customer.com');
  }

  function render() {
    const tbody = $('#mailbox-table tbody');
    tbody.replaceChildren(...mb.users.map((u) => el('tr', { dataset: { address: u.address } },
      el('td', { class: 'mono', text: u.address }),
      el('td', { class: 'num', text: MX.fmtNum(u.messages) }),
      el('td', { class: 'num nowrap', text: MX.fmtBytes(u.bytes || 0) }),
      el('td', { class: 'nowrap', title: MX.fmtTime(u.created_at), text: MX.fmtAgo(u.created_at) }),
      el('td', {}, el('div', { class: 'row-actions' },
        el('button', { type: 'button', class: 'btn ghost small reset-mailbox', dataset: { address: u.address }, text: 'Reset password', onclick: () => openReset(u) }),
        el('button', { type: 'button', class: 'btn danger small delete-mailbox', dataset: { address: u.address }, text: 'Delete', onclick: () => del(u) }))))));
    MX.labelCells($('#mailbox-table'));
    $('#mailbox-empty').hidden = mb.users.length > 0 || !mb.domain || !MX.hasMailboxes();
    $('#mailboxes-info').textContent = mb.users.length ? MX.plural(mb.users.length, 'mailbox', 'mailboxes') : '';
  }

  async function load() {
    updateState();
    mb.users = [];
    if (!mb.domain || !MX.hasMailboxes()) { render(); return; }
    const domain = mb.domain;
    try {
      const r = await MX.api('GET', base());
      if (domain !== mb.domain) return; // another domain was chosen meanwhile
      mb.users = r.mailboxes || [];
    } catch (e) { MX.fail(e); }
    render();
  }

  // fullAddress adds the domain to a bare name.
  const fullAddress = (s) => (s && !s.includes('@') ? s + '@' + mb.domain : s);

  function openAdd() {
    closePanels();
    const f = $('#add-mailbox-form');
    f.reset();
    MX.clearErrors(f, $('#add-mailbox-error'));
    $('#add-mailbox-panel').hidden = false;
    $('#mailbox-address').focus();
  }

  async function submitAdd(ev) {
    ev.preventDefault();
    const f = $('#add-mailbox-form');
    const box = $('#add-mailbox-error');
    MX.clearErrors(f, box);
    const address = fullAddress($('#mailbox-address').value.trim());
    const password = $('#mailbox-password').value;
    if (!address) { MX.showError(f, box, { field: 'address', message: `Enter the address, e.g. jane@${mb.domain}.` }); return; }
    if (!password) { MX.showError(f, box, { field: 'password', message: 'Enter a password for the user.' }); return; }
    const btn = $('#mailbox-submit');
    btn.disabled = true;
    try {
      const u = await MX.api('POST', base(), { address, password });
      closePanels();
      MX.notify(`Mailbox ${u.address} added.`);
      load();
    } catch (e) {
      MX.showError(f, box, e);
    } finally {
      btn.disabled = false;
    }
  }

  function openReset(u) {
    closePanels();
    const f = $('#reset-mailbox-form');
    f.reset();
    MX.clearErrors(f, $('#reset-mailbox-error'));
    $('#reset-mailbox-title').textContent = u.address;
    $('#reset-mailbox-address').value = u.address;
    $('#reset-mailbox-panel').hidden = false;
    $('#reset-mailbox-password').focus();
  }

  async function submitReset(ev) {
    ev.preventDefault();
    const f = $('#reset-mailbox-form');
    const box = $('#reset-mailbox-error');
    MX.clearErrors(f, box);
    const address = $('#reset-mailbox-address').value;
    const password = $('#reset-mailbox-password').value;
    if (!password) { MX.showError(f, box, { field: 'password', message: 'Enter the new password.' }); return; }
    const btn = $('#reset-submit');
    btn.disabled = true;
    try {
      await MX.api('PUT', base() + '/' + encodeURIComponent(address), { password });
      closePanels();
      MX.notify(`Password of ${address} changed.`);
    } catch (e) {
      MX.showError(f, box, e);
    } finally {
      btn.disabled = false;
    }
  }

  async function del(u) {
    const mail = u.messages ? ` and its ${MX.plural(u.messages, 'message')}` : '';
    if (!confirm(`Delete the mailbox ${u.address}${mail}? This cannot be undone.`)) return;
    try {
      await MX.api('DELETE', base() + '/' + encodeURIComponent(u.address));
      MX.notify(`Mailbox ${u.address} deleted.`);
    } catch (e) {
      if (e.status !== 404) { MX.fail(e); return; }
      MX.notify(`Mailbox ${u.address} was already gone.`);
    }
    closePanels();
    load();
  }

  function openImport() {
    closePanels();
    const f = $('#import-mailboxes-form');
    f.reset();
    MX.clearErrors(f, $('#import-error'));
    $('#import-result').hidden = true;
    $('#import-progress').textContent = '';
    $('#import-mailboxes-panel').hidden = false;
    $('#import-file').focus();
  }

  // splitCSV cuts the text into requests of at most importChunk lines, each
  // with the header line if there is one; first is the number of the
  // request's first data line in the whole text.
  function splitCSV(text) {
    const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
    while (lines.length && lines[lines.length - 1].trim() === '') lines.pop();
    const firstIdx = lines.findIndex((l) => l.trim() !== '');
    let header = null;
    if (firstIdx >= 0 && /(^|,)\s*"?(address|password)"?\s*(,|$)/i.test(lines[firstIdx])) {
      header = lines[firstIdx];
      lines[firstIdx] = '';
    }
    const parts = [];
    for (let i = 0; i < lines.length; i += importChunk) {
      const body = lines.slice(i, i + importChunk);
      if (body.every((l) => l.trim() === '')) continue;
      parts.push({ first: i + 1, header: !!header, body: (header ? header + '\n' : '') + body.join('\n') + '\n' });
    }
    return parts;
  }

  async function submitImport(ev) {
    ev.preventDefault();
    const f = $('#import-mailboxes-form');
    const box = $('#import-error');
    MX.clearErrors(f, box);
    const file = $('#import-file').files[0];
    let text;
    try { text = file ? await file.text() : $('#import-text').value; } catch (e) { MX.showError(f, box, { message: 'The file cannot be read.' }); return; }
    const parts = splitCSV(text || '');
    if (parts.length === 0) { MX.showError(f, box, { message: 'Choose a CSV file or paste address,password lines.' }); return; }
    const btn = $('#import-submit');
    btn.disabled = true;
    let created = 0;
    const failed = [];
    let stopped = '';
    for (const [n, p] of parts.entries()) {
      if (parts.length > 1) $('#import-progress').textContent = `Importing part ${n + 1} of ${parts.length}…`;
      else $('#import-progress').textContent = 'Importing…';
      try {
        const r = await MX.api('POST', base() + '/import', p.body, 'text/csv');
        created += r.created;
        // The server counts the part's lines from 1, the header included.
        for (const x of r.failed) failed.push({ ...x, line: p.first + x.line - (p.header ? 2 : 1) });
      } catch (e) {
        stopped = parts.length > 1 ? `Lines from ${p.first} on were not imported: ${e.message}` : e.message;
        break;
      }
    }
    btn.disabled = false;
    $('#import-progress').textContent = '';
    $('#import-text').value = '';
    $('#import-file').value = '';
    showImportResult(created, failed);
    if (stopped) MX.showError(f, box, { message: stopped });
    if (created > 0) load();
  }

  function showImportResult(created, failed) {
    $('#import-summary').textContent = `${MX.plural(created, 'mailbox', 'mailboxes')} created` +
      (failed.length ? `, ${MX.plural(failed.length, 'line')} not imported:` : '.');
    const t = $('#import-failures');
    t.querySelector('tbody').replaceChildren(...failed.map((x) => el('tr', {},
      el('td', { class: 'num', text: x.line }),
      el('td', { class: 'mono', text: x.address || '–' }),
      el('td', { class: 'err', text: x.error }))));
    MX.labelCells(t);
    t.hidden = failed.length === 0;
    $('#import-result').hidden = false;
  }

  MX.views.mailboxes = {
    async show(params) {
      const want = params.get('domain') || mb.domain;
      closePanels();
      await fillDomains(want);
      load();
    },
  };

  document.addEventListener('DOMContentLoaded', () => {
    $('#mailboxes-domain-select').addEventListener('change', (ev) => {
      MX.go('#/mailboxes?domain=' + encodeURIComponent(ev.target.value));
    });
    $('#add-mailbox-button').addEventListener('click', openAdd);
    $('#add-mailbox-form').addEventListener('submit', submitAdd);
    $('#mailbox-cancel').addEventListener('click', closePanels);
    $('#reset-mailbox-form').addEventListener('submit', submitReset);
    $('#reset-cancel').addEventListener('click', closePanels);
    $('#import-mailboxes-button').addEventListener('click', openImport);
    $('#import-mailboxes-form').addEventListener('submit', submitImport);
    $('#import-cancel').addEventListener('click', closePanels);
    // Escape closes an open form (and forgets what was typed in it).
    document.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && MX.current === 'mailboxes') closePanels();
    });
  });
})();
