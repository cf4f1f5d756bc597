// Queue Manager: page through a domain's queue, inspect, retry and delete.
'use strict';
(function () {
  const { $, el } = MX;
  const q = { domain: '', cursor: '', next: '', page: 0, messages: [], open: '' };

  async function fillDomains(selected) {
    const sel = $('#queue-domain-select');
    let domains;
    try { domains = await MX.loadDomains(); } catch (e) { MX.fail(e); return; }
    sel.replaceChildren(...domains.map((d) => el('option', { value: d.name, text: `${d.name} (${MX.fmtNum(d.status.queued_messages)})` })));
    if (selected) {
      if (![...sel.options].some((o) => o.value === selected)) sel.append(el('option', { value: selected, text: selected }));
      sel.value = selected;
    }
  }

  function selectedIds() {
    return [...document.querySelectorAll('#queue-table tbody input[type=checkbox]:checked')].map((c) => c.value);
  }

  function updateButtons() {
    const n = selectedIds().length;
    const del = $('#queue-delete-selected');
    del.disabled = n === 0;
    del.textContent = n > 0 ? `Delete selected (${n})` : 'Delete selected';
    $('#queue-flush').disabled = !q.domain;
    $('#queue-next-page').disabled = !q.next;
    $('#queue-first-page').disabled = q.page === 0;
  }

  // nextAttempt says when a message will be tried: a message with no
  // retry time waits for its relay host when that is down.
  function nextAttempt(m) {
    if (m.next_attempt_at) return MX.fmtTime(m.next_attempt_at);
    const d = MX.domains.find((x) => x.name === q.domain);
    if (m.state === 'queued' && d && d.status.relay_state === 'down') return 'when the relay host is back';
    return 'now';
  }

  function render() {
    const tbody = $('#queue-table tbody');
    tbody.replaceChildren(...q.messages.map((m) => el('tr', { dataset: { id: m.id } },
      el('td', { class: 'check-col' }, el('input', { type: 'checkbox', value: m.id, 'aria-label': 'Select message ' + m.id, onchange: updateButtons })),
      el('td', {}, el('button', { type: 'button', class: 'btn link mono open-message', text: m.id, onclick: () => openMessage(m.id) })),
      el('td', { class: 'mono', text: m.from || '<>' }),
      el('td', { class: 'mono', text: m.rcpts.join(', ') }),
      el('td', { class: 'num nowrap', text: MX.fmtBytes(m.size) }),
      el('td', { class: 'nowrap', title: MX.fmtTime(m.received_at), text: MX.fmtAgo(m.received_at) }),
      el('td', { class: 'num', text: m.attempts }),
      el('td', { text: nextAttempt(m) }),
      el('td', {}, el('span', { class: 'pill ' + m.state, text: m.state })),
      el('td', { class: 'err', text: m.last_error || '' }))));
    $('#queue-select-all').checked = false;
    $('#queue-empty').hidden = q.messages.length > 0;
    $('#queue-title').textContent = q.domain ? `Queue of ${q.domain}` : 'Queue';
    const from = q.page * Number($('#queue-limit').value);
    const n = q.messages.length;
    $('#queue-info').textContent = n === 0 ? '' : (from === 0 && !q.next ? MX.plural(n, 'message') : `messages ${from + 1}–${from + n}`);
    updateButtons();
  }

  async function load(cursor) {
    const domain = $('#queue-domain-select').value;
    if (!domain) { MX.notify('Choose a domain first.', true); return; }
    if (domain !== q.domain) { q.page = 0; q.domain = domain; }
    const params = new URLSearchParams({ limit: $('#queue-limit').value });
    if (cursor) params.set('cursor', cursor);
    const btn = $('#load-queue');
    btn.disabled = true;
    try {
      const r = await MX.api('GET', `/api/v1/domains/${encodeURIComponent(domain)}/queue?${params}`);
      q.cursor = cursor || '';
      q.messages = r.messages || [];
      q.next = r.next_cursor || '';
      await fillDomains(domain); // fresh counts and relay states
      render();
      if (!$('#message-view').hidden && q.open) refreshOpen();
    } catch (e) { MX.fail(e); } finally { btn.disabled = false; }
  }

  // refreshOpen re-reads the message on view; one that has left the
  // queue (delivered or deleted) is closed with a notice.
  async function refreshOpen() {
    const id = q.open;
    try {
      const m = await MX.api('GET', '/api/v1/messages/' + encodeURIComponent(id));
      if (q.open === id) showMessage(m, false);
    } catch (e) {
      if (e.status !== 404) { MX.fail(e); return; }
      if (q.open !== id) return;
      $('#message-view').hidden = true;
      q.open = '';
      MX.notify(`Message ${id} has left the queue (delivered or deleted).`);
    }
  }

  async function deleteSelected() {
    const ids = selectedIds();
    if (ids.length === 0) return;
    if (!confirm(`Delete ${ids.length} message${ids.length > 1 ? 's' : ''}? They will not be delivered.`)) return;
    try {
      const r = await MX.api('POST', '/api/v1/messages/delete', { ids });
      MX.notify(`${r.deleted.length} deleted` + (r.not_found.length ? `, ${r.not_found.length} already gone` : '') + '.');
    } catch (e) { MX.fail(e); }
    load(q.cursor);
  }

  async function flush() {
    try {
      await MX.api('POST', `/api/v1/domains/${encodeURIComponent(q.domain)}/queue/flush`);
      MX.notify(`Delivery of ${q.domain} requested.`);
    } catch (e) { MX.fail(e); }
  }

  function dlRow(dl, k, v) { dl.append(el('dt', { text: k }), el('dd', { text: v })); }

  async function openMessage(id) {
    let m;
    try { m = await MX.api('GET', '/api/v1/messages/' + encodeURIComponent(id)); } catch (e) { MX.fail(e); return; }
    q.open = id;
    showMessage(m, true);
  }

  function showMessage(m, scroll) {
    $('#message-id').textContent = m.id;
    const dl = $('#message-envelope');
    dl.replaceChildren();
    dlRow(dl, 'Domain', m.domain);
    dlRow(dl, 'From', m.from || '<> (null sender)');
    dlRow(dl, 'Size', MX.fmtBytes(m.size));
    dlRow(dl, 'Received', MX.fmtTime(m.received_at));
    dlRow(dl, 'State', m.state);
    dlRow(dl, 'Attempts', String(m.attempts));
    dlRow(dl, 'Next attempt', m.next_attempt_at ? MX.fmtTime(m.next_attempt_at)
      : (m.state === 'queued' && m.delivery.relay_state === 'down' ? 'when the relay host is back' : 'now'));
    dlRow(dl, 'Last error', m.last_error || '–');
    dl.append(el('dt', { text: 'Relay host' }), el('dd', {}, el('span', { class: 'mono', text: m.delivery.relay_host || '–' }), ' ', MX.statusBadge(m.delivery.relay_state)));
    if (m.delivery.last_probe_error) dlRow(dl, 'Last probe error', m.delivery.last_probe_error);
    $('#message-recipients tbody').replaceChildren(...m.recipients.map((r) => el('tr', {},
      el('td', { class: 'mono', text: r.address }), el('td', {}, el('span', { class: 'pill ' + r.status, text: r.status })))));
    $('#message-headers tbody').replaceChildren(...m.headers.map((h) => el('tr', {}, el('td', { text: h.name }), el('td', { text: h.value }))));
    $('#message-headers-note').textContent = m.headers_error || (m.headers_truncated ? '(first 64 KiB only)' : '');
    const hist = $('#message-history');
    const items = [el('li', { text: `${MX.fmtTime(m.received_at)} — received` })];
    for (const e of (m.history || []).slice().reverse()) items.push(el('li', { text: `${MX.fmtTime(e.time)} — ${e.type} by ${e.actor}${e.detail ? ': ' + e.detail : ''}` }));
    hist.replaceChildren(...items);
    $('#message-view').hidden = false;
    if (scroll) {
      const still = window.matchMedia('(prefers-reduced-motion: reduce)').matches;
      $('#message-view').scrollIntoView({ behavior: still ? 'auto' : 'smooth', block: 'start' });
    }
  }

  async function retryOpen() {
    try {
      await MX.api('POST', `/api/v1/messages/${encodeURIComponent(q.open)}/retry`);
      MX.notify('Retry scheduled.');
      openMessage(q.open);
    } catch (e) { MX.fail(e); }
  }

  async function deleteOpen() {
    if (!confirm(`Delete message ${q.open}? It will not be delivered.`)) return;
    try {
      await MX.api('DELETE', '/api/v1/messages/' + encodeURIComponent(q.open));
      MX.notify('Message deleted.');
      $('#message-view').hidden = true;
      load(q.cursor);
    } catch (e) { MX.fail(e); }
  }

  MX.views.queue = {
    async show(params) {
      const want = params.get('domain') || q.domain;
      await fillDomains(want);
      if (params.get('domain')) load('');
      else updateButtons();
    },
  };

  document.addEventListener('DOMContentLoaded', () => {
    $('#load-queue').addEventListener('click', () => { q.page = 0; load(''); });
    $('#queue-next-page').addEventListener('click', () => { if (q.next) { q.page++; load(q.next); } });
    $('#queue-first-page').addEventListener('click', () => { q.page = 0; load(''); });
    $('#queue-delete-selected').addEventListener('click', deleteSelected);
    $('#queue-flush').addEventListener('click', flush);
    $('#queue-select-all').addEventListener('change', (ev) => {
      document.querySelectorAll('#queue-table tbody input[type=checkbox]').forEach((c) => { c.checked = ev.target.checked; });
      updateButtons();
    });
    $('#message-retry').addEventListener('click', retryOpen);
    $('#message-delete').addEventListener('click', deleteOpen);
    $('#message-close').addEventListener('click', () => { $('#message-view').hidden = true; });
  });
})();
