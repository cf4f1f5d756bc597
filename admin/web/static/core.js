// mxcont portal: shared helpers, API client, login and routing.
// Every page talks to the JSON API under /api/v1; state-changing calls
// carry the session's CSRF token in X-CSRF-Token. Text from the server is
// always inserted with textContent, never as HTML.
'use strict';

const MX = (window.MX = {
  me: null,
  csrf: '',
  views: {},        // name -> {show(params)}
  domains: [],      // last loaded domain list
  accounts: [],
});

MX.$ = (sel) => document.querySelector(sel);

// el builds an element: el('td', {class: 'num', text: '3'}, child, ...).
MX.el = function (tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
};

MX.svg = function (tag, attrs) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
};

class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field || '';
  }
}
MX.ApiError = ApiError;

// api calls the JSON API and returns the decoded body (null for 204);
// errors throw ApiError. body is sent as JSON, or as is when contentType is
// given (e.g. 'text/csv').
MX.api = async function (method, path, body, contentType) {
  const opts = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
  if (body !== undefined && contentType) {
    opts.headers['Content-Type'] = contentType;
    opts.body = body;
  } else if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  if (method !== 'GET' && method !== 'HEAD' && MX.csrf) opts.headers['X-CSRF-Token'] = MX.csrf;
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    throw new ApiError(0, 'The server cannot be reached. Check your connection and try again.');
  }
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (res.status === 401 && path !== '/api/v1/login') {
    MX.showLogin('Your session has ended. Please log in again.');
    throw new ApiError(401, (data && data.error) || 'Not logged in');
  }
  if (!res.ok) {
    throw new ApiError(res.status, (data && data.error) || res.statusText || ('HTTP ' + res.status), data && data.field);
  }
  return data;
};

// notify shows a short message at the bottom of the screen.
let noticeTimer = 0;
MX.notify = function (msg, isError) {
  const n = MX.$('#notice');
  n.textContent = msg;
  n.className = 'notice' + (isError ? ' error' : '');
  n.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { n.hidden = true; }, isError ? 8000 : 4000);
};
// hideNotice removes a notice that is not an error (on a change of page).
MX.hideNotice = function () {
  const n = MX.$('#notice');
  if (!n.classList.contains('error')) n.hidden = true;
};

MX.fail = function (err) {
  if (err && err.status === 401) return;
  MX.notify((err && err.message) || String(err), true);
};

// Formatting.
MX.fmtBytes = function (n) {
  if (n === null || n === undefined) return '';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + ' ' + u[i];
};
MX.fmtDuration = function (ms) {
  if (ms < 0) ms = 0;
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d > 0) return d + 'd ' + h + 'h';
  if (h > 0) return h + 'h ' + m + 'm';
  if (m > 0) return m + 'm';
  return s > 0 ? s + 's' : '<1s';
};
MX.fmtAge = (t) => (t ? MX.fmtDuration(Date.now() - Date.parse(t)) : '–');
// fmtAgo says how long ago t was: "just now", "5s ago", "3m ago".
MX.fmtAgo = (t) => {
  if (!t) return '–';
  const ms = Date.now() - Date.parse(t);
  return ms < 5000 ? 'just now' : MX.fmtDuration(ms) + ' ago';
};
// plural: plural(1, 'message') = "1 message", plural(3, 'message') = "3 messages".
MX.plural = (n, word, many) => MX.fmtNum(n) + ' ' + (n === 1 ? word : (many || word + 's'));
MX.fmtTime = (t) => (t ? new Date(t).toLocaleString() : '–');
MX.fmtNum = (n) => (n || 0).toLocaleString();

MX.statusBadge = function (state) {
  const s = state === 'up' || state === 'down' ? state : 'unknown';
  return MX.el('span', { class: 'status ' + s, title: 'Relay host ' + s },
    MX.el('span', { class: 'dot ' + s }), s);
};

// labelCells copies each column's heading into its cells' data-label, which
// tables of class "stack" show beside the value on narrow screens.
MX.labelCells = function (table) {
  const heads = [...table.querySelectorAll('thead th')].map((th) => th.textContent.trim());
  for (const tr of table.querySelectorAll('tbody tr')) {
    [...tr.children].forEach((td, i) => { td.dataset.label = heads[i] || ''; });
  }
};

// Forms: field errors from {"error","field"} responses.
MX.clearErrors = function (form, errorBox) {
  form.querySelectorAll('.invalid').forEach((e) => e.classList.remove('invalid'));
  form.querySelectorAll('.field-error').forEach((e) => { e.textContent = ''; });
  if (errorBox) { errorBox.hidden = true; errorBox.textContent = ''; }
};
MX.showError = function (form, errorBox, err) {
  const field = (err.field || '').replace(/\[\d+\]$/, '');
  const slot = field && form.querySelector('[data-error-for="' + CSS.escape(field) + '"]');
  const input = field && form.querySelector('[name="' + CSS.escape(field) + '"]');
  if (slot) {
    // The API says "alert_emails[0]: invalid address ..."; under the field
    // the field's name is noise, but which entry it is helps.
    let msg = err.message || '';
    const m = /^[a-z_]+(?:\[(\d+)\])?: /.exec(msg);
    if (m) msg = (m[1] !== undefined ? `Entry ${Number(m[1]) + 1}: ` : '') + msg.slice(m[0].length);
    slot.textContent = msg.charAt(0).toUpperCase() + msg.slice(1);
    if (input) { input.classList.add('invalid'); input.focus(); }
    return;
  }
  if (errorBox) { errorBox.textContent = err.message; errorBox.hidden = false; }
  else MX.fail(err);
};
MX.splitList = (s) => s.split(/[\s,;]+/).map((x) => x.trim()).filter(Boolean);

// loadDomains refreshes MX.domains and returns it.
MX.loadDomains = async function () {
  const data = await MX.api('GET', '/api/v1/domains');
  MX.domains = data.domains || [];
  return MX.domains;
};

// fillAccountSelect fills an <select> with the accounts (operators only).
MX.fillAccountSelect = async function (select, value) {
  if (!MX.isOperator()) return;
  try {
    const data = await MX.api('GET', '/api/v1/accounts');
    MX.accounts = data.accounts || [];
  } catch (e) { MX.fail(e); }
  select.replaceChildren(MX.el('option', { value: '', text: '(no account)' }),
    ...MX.accounts.map((a) => MX.el('option', { value: a.name, text: a.name })));
  select.value = value || '';
};

MX.isOperator = () => !!MX.me && MX.me.role === 'operator';
// hasMailboxes: the node keeps shadow mailboxes for domains in mode "both".
MX.hasMailboxes = () => !!MX.me && !!MX.me.mailboxes;

// Login and session.
MX.showLogin = function (msg) {
  MX.me = null;
  MX.csrf = '';
  MX.$('#topbar').hidden = true;
  document.querySelectorAll('.view').forEach((v) => { v.hidden = v.id !== 'view-login'; });
  const box = MX.$('#login-error');
  box.textContent = msg || '';
  box.hidden = !msg;
  MX.$('#login-username').focus();
};

function signedIn(me) {
  MX.me = me;
  MX.csrf = me.csrf_token || MX.csrf;
  MX.$('#topbar').hidden = false;
  MX.$('#current-user').textContent = me.username + ' · ' + me.role + (me.account ? ' · ' + me.account : '');
  document.body.classList.toggle('is-operator', MX.isOperator());
  document.querySelectorAll('.operator-only').forEach((e) => { e.hidden = !MX.isOperator(); });
  route();
}

async function login(ev) {
  ev.preventDefault();
  const user = MX.$('#login-username').value.trim();
  const pass = MX.$('#login-password').value;
  const box = MX.$('#login-error');
  box.hidden = true;
  if (!user || !pass) {
    box.textContent = 'Enter your username and password.';
    box.hidden = false;
    return;
  }
  const btn = MX.$('#login-submit');
  btn.disabled = true;
  try {
    const r = await MX.api('POST', '/api/v1/login', { username: user, password: pass });
    MX.$('#login-password').value = '';
    MX.csrf = r.csrf_token;
    signedIn({ username: r.username, role: r.role, account: r.account, csrf_token: r.csrf_token, mailboxes: r.mailboxes });
  } catch (e) {
    box.textContent = e.status === 401 ? 'Wrong username or password.' : e.message;
    box.hidden = false;
  } finally {
    btn.disabled = false;
  }
}

async function logout() {
  try { await MX.api('POST', '/api/v1/logout'); } catch (e) { /* session may be gone already */ }
  location.hash = '#/dashboard';
  MX.showLogin('You have been logged out.');
}

// Routing: #/<view>?key=value
function parseHash() {
  const h = location.hash.replace(/^#\/?/, '');
  const [name, qs] = h.split('?');
  return { name: name || 'dashboard', params: new URLSearchParams(qs || '') };
}

function route() {
  if (!MX.me) return;
  let { name, params } = parseHash();
  if (!MX.views[name]) name = 'dashboard';
  document.querySelectorAll('.view').forEach((v) => { v.hidden = v.id !== 'view-' + name; });
  document.querySelectorAll('#nav a').forEach((a) => a.classList.toggle('active', a.dataset.view === name));
  if (MX.current !== name) MX.hideNotice();
  MX.current = name;
  MX.views[name].show(params);
}
MX.go = (hash) => { if (location.hash === hash) route(); else location.hash = hash; };

document.addEventListener('DOMContentLoaded', async () => {
  MX.$('#login-form').addEventListener('submit', login);
  MX.$('#logout').addEventListener('click', logout);
  MX.$('#notice').addEventListener('click', () => { MX.$('#notice').hidden = true; });
  window.addEventListener('hashchange', route);
  try {
    const res = await fetch('/api/v1/me', { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    if (res.ok) signedIn(await res.json());
    else MX.showLogin('');
  } catch (e) {
    MX.showLogin('The server cannot be reached.');
  }
});
