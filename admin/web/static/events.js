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
    'token-revoked': 'API token revoked', 'password-changed': 'Password changed', 'password-reset': 'Password reset', 'user-deleted': 'User deleted',
    'mailbox-created': 'Mailbox added', 'mailbox-deleted': 'Mailbox deleted', 'mailbox-password-reset': 'Mailbox password reset',
  };

  function row(e) {
    const bad = /failed|started|deleted|revoked/.test(e.type);
    return el('tr', { dataset: { id: e.id } },
      el('td', { class: 'nowrap', text: MX.fmtTime(e.time) }),
      el('td', {}, el('span', { class: 'pill' + (bad ? ' failed' : ''), text: labels[e.type] || e.type })),
      el('td', { text: e.actor }),
      el('td', { text: e.domain || '' }),
      el('td', { text: (e.message_id ? `message ${e.message_id}: ` : '') + (e.detail || '') }));
  }

  // Outages come from each domain's outage history (GET /api/v1/domains/{d}).
  const maxOutageDomains = 50;

  function outageRow(o) {
    const ended = !!o.ended_at;
    return el('tr', { dataset: { domain: o.domain, ended: String(ended) } },
      el('td', {}, el('span', { class: 'pill ' + (ended ? 'delivered' : 'failed'), text: ended ? 'resolved' : 'ongoing' })),
      el('td', {}, el('strong', { text: o.domain })),
      el('td', { class: 'mono', text: o.relay_host }),
      el('td', { class: 'nowrap', text: MX.fmtTime(o.started_at) }),
      el('td', { class: 'nowrap', text: ended ? MX.fmtTime(o.ended_at) : '–' }),
      el('td', { class: 'num nowrap', text: MX.fmtDuration((o.duration_seconds || 0) * 1000) + (ended ? '' : ' so far') }),
      el('td', { class: 'err', text: o.error || '' }));
  }

  async function loadOutages(domain) {
    const names = domain ? [domain] : MX.domains.map((d) => d.name);
    const shown = names.slice(0, maxOutageDomains);
    const details = await Promise.all(shown.map((n) =>
      MX.api('GET', '/api/v1/domains/' + encodeURIComponent(n)).catch((e) => { if (e.status !== 404) MX.fail(e); return null; })));
    const rows = [];
    for (const d of details) {
      if (!d) continue;
      for (const o of d.outages || []) rows.push(Object.assign({ domain: d.name, relay_host: d.relay_host }, o));
    }
    rows.sort((a, b) => Date.parse(b.started_at) - Date.parse(a.started_at));
    $('#outages-table tbody').replaceChildren(...rows.map(outageRow));
    MX.labelCells($('#outages-table'));
    $('#outages-empty').hidden = rows.length > 0;
    const ongoing = rows.filter((o) => !o.ended_at).length;
    let info = rows.length ? MX.plural(rows.length, 'outage') + (ongoing ? `, ${ongoing} ongoing` : '') : '';
    if (names.length > shown.length) info += ` (first ${shown.length} of ${names.length} domains: choose one to see its own)`;
    $('#outages-info').textContent = info;
  }

  async function load(more) {
    const params = new URLSearchParams({ limit: '100' });
    const domain = $('#events-domain').value;
    if (domain) params.set('domain', domain);
    if (more && next) params.set('cursor', next);
    if (!more) loadOutages(domain);
    try {
      const r = await MX.api('GET', '/api/v1/events?' + params);
      const tbody = $('#events-table tbody');
      const rows = (r.events || []).map(row);
      if (more) tbody.append(...rows); else tbody.replaceChildren(...rows);
      MX.labelCells($('#events-table'));
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
    $('#events-domain').addEventListener('change', () => load(false));
    $('#events-more').addEventListener('click', () => load(true));
  });
})();
