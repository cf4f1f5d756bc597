// Continuity: list, add, edit and delete protected domains.
'use strict';
(function () {
  const { $, el } = MX;

  // formDomain reads the domain fields of a form (prefix "domain-" or "edit-").
  function formDomain(p) {
    const d = {
      mode: $(`#${p}mode`).value,
      relay_host: $(`#${p}relay-host`).value.trim(),
      monitoring: $(`#${p}monitoring`).checked,
      require_tls: $(`#${p}require-tls`).checked,
      alert_emails: MX.splitList($(`#${p}alert-emails`).value),
      allowed_sources: MX.splitList($(`#${p}allowed-sources`).value),
      outbound_smarthost: $(`#${p}outbound-smarthost`).value.trim(),
    };
    const days = $(`#${p}retention-days`).value.trim();
    if (days !== '') d.retention_days = Number(days);
    if (MX.isOperator()) d.account = $(`#${p}account`).value;
    return d;
  }

  // showModeFields shows the fields that only matter in mode "both" (form
  // prefix "domain-" or "edit-").
  function showModeFields(p) {
    $(`#${p}smarthost-field`).hidden = $(`#${p}mode`).value !== 'both';
  }

  const mailboxesHash = (name) => '#/mailboxes?domain=' + encodeURIComponent(name);

  function monitoringText(d) {
    if (!d.monitoring) return 'Off';
    const n = (d.alert_emails || []).length;
    return n ? `On (${n} alert address${n > 1 ? 'es' : ''})` : 'On';
  }

  function render(domains) {
    const tbody = $('#domain-table tbody');
    tbody.replaceChildren(...domains.map((d) => el('tr', { dataset: { domain: d.name } },
      el('td', {}, MX.statusBadge(d.status.relay_state)),
      el('td', {}, el('strong', { text: d.name })),
      el('td', { text: d.mode === 'both' ? 'Both (local + relay)' : 'Relay' }),
      el('td', { class: 'mono', text: d.relay_host }),
      el('td', { text: monitoringText(d) }),
      el('td', { class: 'num' }, el('a', { href: '#/queue?domain=' + encodeURIComponent(d.name), text: MX.fmtNum(d.status.queued_messages) })),
      MX.isOperator() ? el('td', { text: d.account || '–' }) : null,
      el('td', {}, el('div', { class: 'row-actions' },
        d.mode === 'both' && MX.hasMailboxes()
          ? el('a', { class: 'btn ghost small mailboxes-domain', href: mailboxesHash(d.name), dataset: { domain: d.name }, text: 'Mailboxes' })
          : null,
        el('button', { type: 'button', class: 'btn ghost small edit-domain', dataset: { domain: d.name }, text: 'Edit', onclick: () => MX.go('#/domains?edit=' + encodeURIComponent(d.name)) }),
        el('button', { type: 'button', class: 'btn danger small delete-domain', dataset: { domain: d.name }, text: 'Delete', onclick: () => del(d) }))))));
    MX.labelCells($('#domain-table'));
    $('#domain-empty').hidden = domains.length > 0;
  }

  async function refresh() {
    try { render(await MX.loadDomains()); } catch (e) { MX.fail(e); }
  }

  function openAdd() {
    const f = $('#add-domain-form');
    f.reset();
    MX.clearErrors(f, $('#add-domain-error'));
    $('#edit-domain-panel').hidden = true;
    $('#add-domain-panel').hidden = false;
    showModeFields('domain-');
    MX.fillAccountSelect($('#domain-account'), '');
    $('#domain-name').focus();
  }

  async function submitAdd(ev) {
    ev.preventDefault();
    const f = $('#add-domain-form');
    const box = $('#add-domain-error');
    MX.clearErrors(f, box);
    const d = formDomain('domain-');
    d.name = $('#domain-name').value.trim();
    if (!d.name) { MX.showError(f, box, { field: 'name', message: 'Enter the domain name, e.g. customer.com.' }); return; }
    if (!d.relay_host) { MX.showError(f, box, { field: 'relay_host', message: 'Enter the relay host (the customer\'s primary mail server).' }); return; }
    const btn = $('#domain-submit');
    btn.disabled = true;
    try {
      const stored = await MX.api('POST', '/api/v1/domains', d);
      $('#add-domain-panel').hidden = true;
      MX.notify(`Domain ${stored.name} added.`);
      refresh();
    } catch (e) {
      MX.showError(f, box, e);
    } finally {
      btn.disabled = false;
    }
  }

  async function openEdit(name) {
    let d;
    try { d = await MX.api('GET', '/api/v1/domains/' + encodeURIComponent(name)); } catch (e) { MX.fail(e); return; }
    const f = $('#edit-domain-form');
    MX.clearErrors(f, $('#edit-domain-error'));
    $('#add-domain-panel').hidden = true;
    $('#edit-domain-title').textContent = d.name;
    $('#edit-domain-name').value = d.name;
    $('#edit-mode').value = d.mode;
    $('#edit-relay-host').value = d.relay_host;
    $('#edit-retention-days').value = d.retention_days;
    $('#edit-monitoring').checked = d.monitoring;
    $('#edit-require-tls').checked = d.require_tls;
    $('#edit-alert-emails').value = (d.alert_emails || []).join('\n');
    $('#edit-allowed-sources').value = (d.allowed_sources || []).join('\n');
    $('#edit-outbound-smarthost').value = d.outbound_smarthost || '';
    showModeFields('edit-');
    const link = $('#edit-mailboxes-link');
    link.href = mailboxesHash(d.name);
    link.hidden = d.mode !== 'both' || !MX.hasMailboxes();
    await MX.fillAccountSelect($('#edit-account'), d.account);
    $('#edit-domain-panel').hidden = false;
    $('#edit-relay-host').focus();
  }

  async function submitEdit(ev) {
    ev.preventDefault();
    const f = $('#edit-domain-form');
    const box = $('#edit-domain-error');
    MX.clearErrors(f, box);
    const name = $('#edit-domain-name').value;
    const btn = $('#edit-submit');
    btn.disabled = true;
    try {
      await MX.api('PUT', '/api/v1/domains/' + encodeURIComponent(name), formDomain('edit-'));
      MX.notify(`Domain ${name} saved.`);
      $('#edit-domain-panel').hidden = true;
      MX.go('#/domains');
      refresh();
    } catch (e) {
      MX.showError(f, box, e);
    } finally {
      btn.disabled = false;
    }
  }

  async function del(d) {
    const boxes = d.mode === 'both' && MX.hasMailboxes() ? ' Its mailboxes and their mail are deleted too.' : '';
    if (!confirm(`Delete the domain ${d.name}? Mail for it will be refused from now on.${boxes}`)) return;
    const path = '/api/v1/domains/' + encodeURIComponent(d.name);
    try {
      await MX.api('DELETE', path);
    } catch (e) {
      if (e.status !== 409) { MX.fail(e); return; }
      if (!confirm(`${e.message}\n\nDelete ${d.name} AND all of its queued messages? This cannot be undone.`)) return;
      try { await MX.api('DELETE', path + '?queued=delete'); } catch (e2) { MX.fail(e2); return; }
    }
    MX.notify(`Domain ${d.name} deleted.`);
    refresh();
  }

  MX.views.domains = {
    show(params) {
      refresh();
      const edit = params.get('edit');
      if (edit) openEdit(edit);
      else $('#edit-domain-panel').hidden = true;
    },
  };

  document.addEventListener('DOMContentLoaded', () => {
    $('#add-domain-button').addEventListener('click', openAdd);
    $('#add-domain-form').addEventListener('submit', submitAdd);
    $('#domain-cancel').addEventListener('click', () => { $('#add-domain-panel').hidden = true; });
    $('#edit-domain-form').addEventListener('submit', submitEdit);
    $('#edit-cancel').addEventListener('click', () => { $('#edit-domain-panel').hidden = true; MX.go('#/domains'); });
    $('#domain-mode').addEventListener('change', () => showModeFields('domain-'));
    $('#edit-mode').addEventListener('change', () => showModeFields('edit-'));
  });
})();
