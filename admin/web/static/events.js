// Events: outages, probe failures, configuration changes, logins, deletions.
'use strict';
(function () {
  const { $, el } = MX;
  let next = '';

  const labels = {
    'outage-started': 'Outage started', 'outage-ended': 'Outage ended', 'probe-failed': 'Probe failed',
    'domain-created': 'Domain added', 'domain-updated': 'Domain changed', 'domain-deleted': 'Domain deleted',
    'login': 'Login', 'login-failed': 'Failed login', 'logout': 'Logout',
    'message-deleted': 'Message deleted', 'message-retried': 'Message retried', 'queue-flushed': 'Queue flushed',
    'account-created': 'Account created', 'user-created': 'User created', 'token-created': 'API token created',
  };

  function row(e) {
    const bad = /failed|started|deleted/.test(e.type);
    return el('tr', { dataset: { id: e.id } },
      el('td', { class: 'nowrap', text: MX.fmtTime(e.time) }),
      el('td', {}, el('span', { class: 'pill' + (bad ? ' failed' : ''), text: labels[e.type] || e.type })),
      el('td', { text: e.actor }),
      el('td', { text: e.domain || '' }),
      el('td', { text: (e.message_id ? `message ${e.message_id}: ` : '') + (e.detail || '') }));
  }

  async function load(more) {
    const params = new URLSearchParams({ limit: '100' });
    const domain = $('#events-domain').value;
    if (domain) params.set('domain', domain);
    if (more && next) params.set('cursor', next);
    try {
      const r = await MX.api('GET', '/api/v1/events?' + params);
      const tbody = $('#events-table tbody');
      const rows = (r.events || []).map(row);
      if (more) tbody.append(...rows); else tbody.replaceChildren(...rows);
      next = r.next_cursor || '';
      $('#events-more').disabled = !next;
      $('#events-empty').hidden = tbody.children.length > 0;
    } catch (e) { MX.fail(e); }
  }

  MX.views.events = {
    async show(params) {
      const sel = $('#events-domain');
      const keep = params.get('domain') || sel.value;
      try {
        const domains = await MX.loadDomains();
        sel.replaceChildren(el('option', { value: '', text: 'All domains' }), ...domains.map((d) => el('option', { value: d.name, text: d.name })));
        sel.value = keep && domains.some((d) => d.name === keep) ? keep : '';
      } catch (e) { MX.fail(e); }
      load(false);
    },
  };

  document.addEventListener('DOMContentLoaded', () => {
    $('#events-load').addEventListener('click', () => load(false));
    $('#events-more').addEventListener('click', () => load(true));
  });
})();
