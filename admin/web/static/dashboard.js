// Dashboard: status of every domain, active outages, queue depth chart.
'use strict';
(function () {
  const { $, el, svg } = MX;
  let timer = 0;

  // chart draws a line chart of values (one per time) into box.
  function chart(box, times, values) {
    // Drawn at the box's pixel width, so that text is not stretched.
    const W = Math.max(280, Math.round(box.clientWidth || 800)), H = 180, L = 44, R = 8, T = 10, B = 24;
    const peak = Math.max(0, ...values);
    const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img',
      'aria-label': `Queued messages over time: now ${values.length ? values[values.length - 1] : 0}, peak ${peak}` });
    const max = Math.max(1, peak);
    const x = (i) => L + (values.length < 2 ? 0 : (i * (W - L - R)) / (values.length - 1));
    const y = (v) => T + (H - T - B) * (1 - v / max);
    s.append(svg('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }));
    s.append(svg('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }));
    for (const v of [0, max]) {
      const t = svg('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' });
      t.textContent = MX.fmtNum(Math.round(v));
      s.append(t);
    }
    if (times.length > 0) {
      // Seconds matter only when the chart spans a few minutes.
      const span = Date.parse(times[times.length - 1]) - Date.parse(times[0]);
      const fmt = span < 10 * 60000 ? { hour: '2-digit', minute: '2-digit', second: '2-digit' } : { hour: '2-digit', minute: '2-digit' };
      const first = svg('text', { x: L, y: H - 6 });
      first.textContent = new Date(times[0]).toLocaleTimeString([], fmt);
      const last = svg('text', { x: W - R, y: H - 6, 'text-anchor': 'end' });
      last.textContent = new Date(times[times.length - 1]).toLocaleTimeString([], fmt);
      s.append(first, last);
    }
    if (values.length > 0) {
      const pts = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`);
      s.append(svg('polygon', { class: 'area', points: `${L},${H - B} ${pts.join(' ')} ${x(values.length - 1).toFixed(1)},${H - B}` }));
      s.append(svg('polyline', { class: 'line', points: pts.join(' ') }));
    }
    box.replaceChildren(s);
  }

  // spark draws a tiny inline chart of one domain's queue depth.
  function spark(values) {
    const W = 120, H = 28;
    const s = svg('svg', { class: 'spark', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', 'aria-hidden': 'true' });
    if (!values || values.length === 0) return s;
    const max = Math.max(1, ...values);
    const x = (i) => (values.length < 2 ? W : (i * W) / (values.length - 1));
    const y = (v) => 2 + (H - 4) * (1 - v / max);
    const pts = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`);
    s.append(svg('polygon', { class: 'area', points: `0,${H} ${pts.join(' ')} ${W},${H}` }));
    s.append(svg('polyline', { class: 'line', points: pts.join(' ') }));
    return s;
  }

  function banner(domains) {
    const out = domains.filter((d) => d.status && d.status.outage);
    const b = $('#outage-banner');
    if (out.length === 0) { b.hidden = true; return; }
    const list = el('ul', {}, ...out.map((d) => {
      const started = d.status.outage.started_at;
      return el('li', {},
        el('strong', { text: d.name }), ` — relay host ${d.relay_host} down for ${MX.fmtAge(started)} (since ${MX.fmtTime(started)}), `,
        `${MX.plural(d.status.queued_messages, 'message')} queued. `,
        el('a', { href: '#/queue?domain=' + encodeURIComponent(d.name), text: 'Open its queue' }));
    }));
    b.replaceChildren(el('strong', { text: out.length === 1 ? 'Active outage' : `${out.length} active outages` }), list);
    b.hidden = false;
  }

  async function load() {
    let domains, hist;
    try {
      [domains, hist] = await Promise.all([MX.loadDomains(), MX.api('GET', '/api/v1/stats/queue-history')]);
    } catch (e) { MX.fail(e); return; }
    banner(domains);
    const queued = domains.reduce((n, d) => n + d.status.queued_messages, 0);
    const down = domains.filter((d) => d.status.relay_state === 'down').length;
    const oldest = domains.map((d) => d.status.oldest_queued_at).filter(Boolean).sort()[0];
    $('#stat-domains').textContent = MX.fmtNum(domains.length);
    $('#stat-down').textContent = MX.fmtNum(down);
    $('#stat-down').classList.toggle('bad', down > 0);
    $('#stat-queued').textContent = MX.fmtNum(queued);
    $('#stat-oldest').textContent = oldest ? MX.fmtAge(oldest) : '–';

    const series = hist.series || {};
    const times = hist.times || [];
    const total = times.map((_, i) => Object.values(series).reduce((n, s) => n + (s[i] || 0), 0));
    const every = MX.fmtDuration((hist.interval_seconds || 60) * 1000);
    if (times.length < 2) {
      $('#queue-chart').replaceChildren(el('p', { class: 'empty chart-empty',
        text: `Collecting data: the queue depth is sampled every ${every}, the chart appears after the second sample.` }));
      $('#queue-chart-caption').textContent = '';
    } else {
      chart($('#queue-chart'), times, total);
      const span = Date.parse(times[times.length - 1]) - Date.parse(times[0]);
      $('#queue-chart-caption').textContent = `all domains, last ${MX.fmtDuration(span)}, sampled every ${every}`;
    }

    const tbody = $('#dashboard-table tbody');
    tbody.replaceChildren(...domains.map((d) => el('tr', { dataset: { domain: d.name } },
      el('td', {}, MX.statusBadge(d.status.relay_state)),
      el('td', {}, el('a', { href: '#/domains?edit=' + encodeURIComponent(d.name), text: d.name })),
      el('td', { class: 'mono', text: d.relay_host }),
      el('td', { class: 'num', text: MX.fmtNum(d.status.queued_messages) }),
      el('td', { class: 'nowrap', text: d.status.oldest_queued_at ? MX.fmtAge(d.status.oldest_queued_at) : '–' }),
      el('td', { class: 'probe' + (d.status.last_probe_error ? ' err' : ''), title: d.status.last_probe_error || '' }, el('div', {},
        !d.status.last_probe_at ? 'not yet' : (d.status.last_probe_error ? 'failed ' : '') + MX.fmtAgo(d.status.last_probe_at),
        d.status.last_probe_error ? el('div', { class: 'small probe-error', text: d.status.last_probe_error }) : null)),
      el('td', { class: 'trend' }, spark(series[d.name])),
      el('td', {}, el('a', { class: 'btn ghost small', href: '#/queue?domain=' + encodeURIComponent(d.name), text: 'Queue' })))));
    MX.labelCells($('#dashboard-table'));
    $('#dashboard-empty').hidden = domains.length > 0;
  }

  MX.views.dashboard = {
    show() {
      load();
      clearInterval(timer);
      // Every 10 s: during an outage the admin watches this page.
      timer = setInterval(() => { if (MX.current === 'dashboard' && MX.me && !document.hidden) load(); }, 10000);
    },
  };
  document.addEventListener('DOMContentLoaded', () => { $('#dashboard-refresh').addEventListener('click', load); });
})();
