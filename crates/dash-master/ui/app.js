// The Dash portal: one ES module, no framework, no build step. It talks to the admin API's
// documented routes with the token the user logs in with (kept in sessionStorage only).
// Text from the API only ever reaches the page as text nodes (`h` below): never as markup.

const TOKEN_KEY = 'dash.token';
const REFRESH_KEY = 'dash.refresh'; // beside an OpenID Connect login's ID token: renews it
const NEXT_KEY = 'dash.next';
const RANK = { read: 1, deploy: 2, admin: 3 };
const LOG_CAP = 1000;
const EVENT_CAP = 2000;
const FAILING = ['failed', 'unhealthy', 'exited'];
const CRASH_LOOP_MS = 2 * 60 * 1000; // restarted within this: listed as failing (a crash loop between exits)
const STATES = ['running', 'healthy', 'starting', 'pending', 'unhealthy', 'exited', 'failed', 'stopping'];
const EVENT_KINDS = ['service_created', 'service_updated', 'service_scaled', 'service_removed',
  'replica_scheduled', 'replica_pending', 'replica_starting', 'replica_running', 'replica_healthy',
  'replica_unhealthy', 'replica_exited', 'replica_restarting', 'replica_failed', 'replica_stopping',
  'replica_removed', 'replica_adopted', 'image_imported', 'image_removed', 'node_ready', 'node_joined',
  'node_unreachable', 'node_down', 'node_removed', 'node_drained', 'update_started',
  'update_completed', 'update_rolled_back'];

// What tests and the curious can read: uncaught errors, bytes of the streams, first render.
const probe = { errors: [], streamBytes: 0, firstRender: null };
window.__dash = probe;
const noteError = (text) => {
  probe.errors.push(text);
  if (probe.errors.length > 100) probe.errors.shift();
};
window.addEventListener('error', (e) => noteError(String(e.message)));
window.addEventListener('unhandledrejection', (e) =>
  noteError(String((e.reason && e.reason.message) || e.reason)));

const $ = (sel) => document.querySelector(sel);
let token = sessionStorage.getItem(TOKEN_KEY);
let me = null; // the promise of GET /v1/whoami, once per page load and token
let skew = 0; // the server's clock minus ours (from the Date header), in ms
let ctx = null; // the current page's lifetime: its fetches, streams and timers

// ---------------------------------------------------------------------------------------
// DOM

function setProps(el, props, isSvg) {
  if (!props) return;
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (!isSvg && (k === 'value' || k === 'checked' || k === 'selected')) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function add(el, kids) {
  for (const k of kids) {
    if (k == null || k === false) continue;
    if (Array.isArray(k)) add(el, k);
    else el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return el;
}

/** An element: `h('td', {class: 'x'}, 'text', child, [more])`. Strings become text nodes. */
function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  setProps(el, props, false);
  return add(el, kids);
}

function svg(tag, props, ...kids) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  setProps(el, props, true);
  return add(el, kids);
}

const link = (href, text, props) => h('a', { href, ...props }, text);
const serviceHref = (name) => '/ui/services/' + encodeURIComponent(name);
const nodeHref = (id) => '/ui/nodes/' + encodeURIComponent(id);
const logsHref = (service, replica) =>
  serviceHref(service) + '?replica=' + encodeURIComponent(replica) + '#logs';
const stateChip = (state) => h('span', { class: 'chip s-' + stateClass(state) }, state || '—');
const dash = '—';

function stateClass(s) {
  switch (s) {
    case 'running': case 'healthy': case 'ready': case 'up': case 'leader': return 'ok';
    case 'unhealthy': case 'exited': case 'drained': case 'unreachable': case 'stopping':
    case 'ejected': return 'warn';
    case 'failed': case 'down': return 'bad';
    default: return 'idle';
  }
}

function eventClass(kind) {
  if (/failed|down|unreachable/.test(kind)) return 'bad';
  if (/unhealthy|exited|restarting|rolled_back|lagged/.test(kind)) return 'warn';
  if (/running|healthy|ready|completed|created/.test(kind)) return 'ok';
  return 'idle';
}

function section(title, props, ...kids) {
  return h('section', { class: 'panel', ...props }, h('h2', null, title), ...kids);
}

function table(headers, rows, props) {
  return h('table', props, h('thead', null, h('tr', null, headers.map((x) => h('th', null, x)))),
    h('tbody', null, rows));
}

function empty(text, cols) {
  return cols ? h('tr', { class: 'empty' }, h('td', { colspan: cols }, text)) : h('p', { class: 'empty' }, text);
}

// ---------------------------------------------------------------------------------------
// Formatting

const now = () => Date.now() + skew;

function age(ms) {
  if (ms == null) return dash;
  let s = Math.max(0, Math.round((now() - ms) / 1000));
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm';
  if (s < 86400) return Math.floor(s / 3600) + 'h' + (Math.floor(s / 60) % 60 ? (Math.floor(s / 60) % 60) + 'm' : '');
  return Math.floor(s / 86400) + 'd' + (Math.floor(s / 3600) % 24 ? (Math.floor(s / 3600) % 24) + 'h' : '');
}

function clock(ms) {
  const d = new Date(ms);
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function bytes(n) {
  if (n == null) return dash;
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(n < 10 ? 1 : 0) : n) + ' ' + u[i];
}

const pct = (x) => (x == null ? dash : x.toFixed(x < 1 && x > 0 ? 2 : x < 10 ? 1 : 0) + ' %');
const num = (x) => (x == null ? dash : Number(x).toLocaleString('en-US'));

// ---------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function noteDate(r) {
  const d = Date.parse(r.headers.get('date') || '');
  // The header has whole seconds: only a real difference moves the estimate.
  if (!Number.isNaN(d) && Math.abs(d + 500 - Date.now() - skew) > 1500) skew = d + 500 - Date.now();
}

/** One HTTP call; an answer other than 2xx is thrown as an ApiError. No bearer: no token sent. */
async function send(path, { method = 'GET', body, signal, bearer }) {
  const headers = {};
  if (bearer) headers.Authorization = 'Bearer ' + bearer;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let r;
  try {
    r = await fetch(path, { method, headers, signal, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'cannot reach the Dash server (' + e.message + ')');
  }
  noteDate(r);
  if (!r.ok) {
    let code = 'http_' + r.status;
    let message = r.status + ' ' + r.statusText;
    try {
      const j = await r.json();
      if (j && typeof j.message === 'string') { message = j.message; code = String(j.code || code); }
    } catch { /* not JSON */ }
    throw new ApiError(r.status, code, message);
  }
  return r;
}

/**
 * A call with the session's token, or with `auth` (`''`: none, for the public login routes).
 * When the session's token is refused (401: an ID token expires) and the login was an OpenID
 * Connect one with a refresh token, the login is renewed once and the call made again.
 */
async function request(path, { method = 'GET', body, signal, auth } = {}) {
  const session = auth === undefined;
  const bearer = session ? token : auth;
  try {
    return await send(path, { method, body, signal, bearer });
  } catch (e) {
    if (!session || !bearer || !(e instanceof ApiError) || e.status !== 401) throw e;
    const fresh = await renew(bearer);
    if (!fresh.token) {
      if (!fresh.why) throw e;
      const gone = new ApiError(401, e.code, 'the login expired and could not be renewed: ' + fresh.why);
      gone.title = 'logged out';
      throw gone;
    }
    return send(path, { method, body, signal, bearer: fresh.token });
  }
}

let renewing = null; // the renewal under way: one for all the calls refused meanwhile

/**
 * A new ID token for the refused one (`stale`) from the refresh token (POST /v1/login/token):
 * `{token}`, or `{why}` when the renewal failed, or `{}` when there is nothing to renew with.
 * The provider may hand out a new refresh token each time (the old one then no longer
 * counts), hence a single renewal at a time.
 */
function renew(stale) {
  if (token && token !== stale) return Promise.resolve({ token }); // renewed meanwhile
  const refresh = sessionStorage.getItem(REFRESH_KEY);
  if (!token || !refresh) return Promise.resolve({});
  if (!renewing) {
    renewing = (async () => {
      try {
        const r = await send('/v1/login/token', { method: 'POST', body: { refresh_token: refresh } });
        const t = await r.json();
        if (!t || typeof t.id_token !== 'string' || !t.id_token) return { why: 'the server sent no ID token' };
        // Logged out (or in as someone else) meanwhile: not this session's token any more.
        if (sessionStorage.getItem(REFRESH_KEY) !== refresh) return {};
        token = t.id_token;
        sessionStorage.setItem(TOKEN_KEY, token);
        if (typeof t.refresh_token === 'string' && t.refresh_token) sessionStorage.setItem(REFRESH_KEY, t.refresh_token);
        return { token };
      } catch (e) {
        return { why: e.message || String(e) };
      } finally {
        renewing = null;
      }
    })();
  }
  return renewing;
}

/** Forgets the session's token (and its refresh token). */
function forget() {
  token = null;
  me = null;
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(REFRESH_KEY);
}

/** A JSON call; a 401 (revoked or expired token) sends the user back to the login page. */
async function api(path, opts = {}) {
  try {
    const r = await request(path, { signal: ctx && ctx.signal, ...opts });
    const text = await r.text();
    return text ? JSON.parse(text) : null;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) refused(e.message, e.title);
    throw e;
  }
}

function whoami() {
  if (!me) {
    me = api('/v1/whoami', { signal: undefined });
    me.catch(() => { me = null; });
  }
  return me;
}

function refused(message, title) {
  if (!location.pathname.startsWith('/ui/login')) {
    sessionStorage.setItem(NEXT_KEY, location.pathname + location.search + location.hash);
  }
  forget();
  loginMessage = message || 'the server refused the token';
  loginTitle = title || 'token refused';
  go('/ui/login', true);
}

/**
 * Follows an NDJSON stream (GET with fetch, since EventSource sends no Authorization
 * header), reconnecting with backoff until the page goes. `path()` is asked again on each
 * reconnect, so it can resume where it was.
 */
async function follow(c, path, onItem, { onGone, onConnect } = {}) {
  const stream = {}; // its key in `down`
  c.signal.addEventListener('abort', () => down.delete(stream), { once: true });
  let wait = 500;
  while (!c.signal.aborted) {
    try {
      const r = await request(path(), { signal: c.signal });
      setLive(stream, true);
      if (onConnect) onConnect();
      const since = performance.now();
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        probe.streamBytes += value.byteLength;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (!line.trim()) continue;
          let item;
          try { item = JSON.parse(line); } catch { continue; }
          try { onItem(item); } catch (e) { showError(e); }
        }
      }
      // A stream that lasted is no failure: back to a short wait before the next one.
      if (performance.now() - since > 5000) wait = 500;
    } catch (e) {
      if (c.signal.aborted) return;
      if (e instanceof ApiError && e.status === 401) return refused(e.message, e.title);
      if (e instanceof ApiError && e.status === 404 && onGone) return onGone(e);
      // A refusal the same request would get again (400, 403, 409): say it, do not retry.
      if (e instanceof ApiError && e.status >= 400 && e.status < 500 && e.status !== 404 && e.status !== 429) {
        down.delete(stream);
        return showError(e);
      }
    }
    if (c.signal.aborted) return;
    setLive(stream, false);
    await c.sleep(wait);
    wait = Math.min(wait * 2, 10000);
  }
}

const down = new Set(); // the streams now reconnecting
/**
 * The kept events (optionally `&service=…`), then the live ones, for as long as the page
 * lasts. A reconnect asks for the events from the newest time seen on (sequence numbers
 * start again when a master restarts) and skips the ones it has.
 */
function followEvents(c, query, onEvent, opts) {
  let newest = 0;
  const seen = new Set();
  return follow(c, () => '/v1/events?' + (newest ? 'since_ms=' + newest : 'since=0') + (query || ''), (e) => {
    const key = [e.seq, e.time_ms, e.kind, e.service, e.replica, e.node, e.message].join('\u0000');
    if (seen.has(key)) return;
    seen.add(key);
    if (seen.size > 4000) seen.delete(seen.values().next().value);
    if (e.time_ms > newest) newest = e.time_ms;
    onEvent(e);
  }, opts);
}

function setLive(stream, up) {
  if (up) down.delete(stream); else down.add(stream);
  const el = $('#live');
  el.classList.toggle('off', down.size > 0);
  el.textContent = down.size ? 'reconnecting' : 'live';
}

// ---------------------------------------------------------------------------------------
// Messages and the confirm dialog

function showError(e) {
  if (!e || e.name === 'AbortError') return;
  if (e instanceof ApiError && e.status === 401) return; // the login page says it
  const text = e instanceof ApiError ? e.message : 'the page failed: ' + (e.message || String(e));
  $('#error').textContent = text;
  $('#error-bar').hidden = false;
  if (!(e instanceof ApiError)) probe.errors.push(text);
}

function clearError() {
  $('#error').textContent = '';
  $('#error-bar').hidden = true;
}

let noticeTimer = 0;
function notice(text) {
  $('#notice').textContent = text;
  $('#notice-bar').hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { $('#notice-bar').hidden = true; }, 6000);
}

let confirming = null;
/** Asks in the page (buttons #confirm-yes and #confirm-no); resolves to true or false. */
function ask(question, yes, danger) {
  const d = $('#confirm');
  if (confirming) confirming(false);
  $('#confirm-text').textContent = question;
  $('#confirm-yes').textContent = yes;
  $('#confirm-yes').className = danger ? 'danger' : 'primary';
  d.showModal();
  $('#confirm-no').focus();
  return new Promise((resolve) => {
    confirming = (v) => {
      confirming = null;
      if (d.open) d.close();
      resolve(v);
    };
  });
}
$('#confirm-yes').addEventListener('click', () => confirming && confirming(true));
$('#confirm-no').addEventListener('click', () => confirming && confirming(false));
$('#confirm').addEventListener('cancel', (e) => { e.preventDefault(); if (confirming) confirming(false); });
$('#error-close').addEventListener('click', clearError);

/** A write behind a confirmation: the button is busy meanwhile; the outcome is shown. */
async function act(button, question, yes, call, done) {
  if (!(await ask(question, yes, button.classList.contains('danger')))) return;
  button.disabled = true;
  try {
    const out = await call();
    clearError();
    notice(typeof done === 'function' ? done(out) : done);
  } catch (e) {
    showError(e);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------
// Pages, routing and their lifetimes

function lifetime() {
  const ac = new AbortController();
  const timers = new Set();
  const c = {
    signal: ac.signal,
    alive: () => !ac.signal.aborted,
    after(ms, fn) {
      const t = setTimeout(() => { timers.delete(t); fn(); }, ms);
      timers.add(t);
      return t;
    },
    every(ms, fn) {
      const t = setInterval(fn, ms);
      timers.add(t);
      return t;
    },
    sleep: (ms) => new Promise((res) => c.after(ms, res)),
    close() {
      ac.abort();
      for (const t of timers) { clearTimeout(t); clearInterval(t); }
      timers.clear();
    },
  };
  return c;
}

/** Runs `fn` after `delay` once however often it is asked meanwhile, never two at a time. */
function coalesce(c, delay, fn) {
  let timer = 0;
  let running = false;
  let again = false;
  const fire = async () => {
    timer = 0;
    if (running) { again = true; return; }
    running = true;
    try { await fn(); } catch (e) { showError(e); } finally {
      running = false;
      if (again) { again = false; schedule(); }
    }
  };
  const schedule = () => {
    if (!timer && c.alive()) timer = c.after(delay, fire);
  };
  return schedule;
}

function go(path, replace) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  route();
}

document.addEventListener('click', (e) => {
  const a = e.target.closest && e.target.closest('a[href]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith('/ui') || a.target) return;
  e.preventDefault();
  if (a.id === 'logout') {
    forget();
    sessionStorage.removeItem(NEXT_KEY);
    loginMessage = '';
  }
  if (url.pathname === location.pathname && url.search === location.search && url.hash) {
    history.replaceState(null, '', url.pathname + url.search + url.hash);
    const target = document.getElementById(url.hash.slice(1));
    if (target) target.scrollIntoView();
    return;
  }
  go(url.pathname + url.search + url.hash);
});
window.addEventListener('popstate', route);

function route() {
  if (ctx) ctx.close();
  ctx = lifetime();
  if (confirming) confirming(false);
  clearError();
  const c = ctx;
  const main = $('#app');
  let parts;
  try {
    parts = location.pathname.replace(/^\/ui\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    parts = ['?'];
  }
  const q = new URLSearchParams(location.search);
  if (parts[0] === 'login' || !token) {
    if (parts[0] !== 'login') {
      sessionStorage.setItem(NEXT_KEY, location.pathname + location.search + location.hash);
      history.replaceState(null, '', '/ui/login');
    }
    $('#top').hidden = true;
    return loginPage(c, main);
  }
  $('#top').hidden = false;
  down.clear();
  setLive(null, true);
  header();
  for (const id of ['nav-overview', 'nav-events', 'nav-routes']) $('#' + id).classList.remove('here');
  let page;
  if (parts.length === 0) page = () => { nav('nav-overview'); return overviewPage(c, main); };
  else if (parts[0] === 'services' && parts.length === 2) page = () => servicePage(c, main, parts[1], q);
  else if (parts[0] === 'nodes' && parts.length === 2) page = () => nodePage(c, main, parts[1]);
  else if (parts[0] === 'events' && parts.length === 1) page = () => { nav('nav-events'); return eventsPage(c, main, q); };
  else if (parts[0] === 'routes' && parts.length === 1) page = () => { nav('nav-routes'); return routesPage(c, main); };
  else page = () => notFound(main, 'No page ' + location.pathname + '.');
  main.replaceChildren(h('p', { class: 'loading' }, 'Loading…'));
  Promise.resolve().then(page).catch((e) => {
    if (!c.alive() || e.name === 'AbortError') return;
    showError(e);
    if (main.querySelector('.loading')) main.replaceChildren(h('p', { class: 'empty' }, 'This page could not be loaded.'));
  });
}

function nav(id) {
  $('#' + id).classList.add('here');
}

function notFound(main, text) {
  document.title = 'Not found · Dash';
  main.replaceChildren(h('div', { id: 'not-found', class: 'notfound' },
    h('h1', null, text), h('p', null, link('/ui/', 'Back to the overview'))));
}

function header() {
  whoami().then((w) => {
    $('#whoami').replaceChildren(h('span', { class: 'who' }, w.who), ' ',
      h('span', { class: 'chip role' }, w.role), ' ', h('span', { class: 'muted' }, '@ ' + w.master));
  }, showError);
}

async function can(role) {
  const w = await whoami();
  return (RANK[w.role] || 0) >= RANK[role];
}

// ---------------------------------------------------------------------------------------
// Login

let loginMessage = '';
let loginTitle = 'token refused';

/** Logged in: keeps the token (and an OpenID Connect login's refresh token), goes on where the
 * user was going. */
function loggedIn(t, w, refresh) {
  forget();
  token = t;
  sessionStorage.setItem(TOKEN_KEY, t);
  if (refresh) sessionStorage.setItem(REFRESH_KEY, refresh);
  me = Promise.resolve(w);
  loginMessage = '';
  const next = sessionStorage.getItem(NEXT_KEY);
  sessionStorage.removeItem(NEXT_KEY);
  go(next && next.startsWith('/ui') && !next.startsWith('/ui/login') ? next : '/ui/', true);
}

function loginPage(c, main) {
  document.title = 'Log in · Dash';
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'DASH1-…', required: true });
  const err = h('p', { id: 'login-error', class: 'login-error', role: 'alert' },
    loginMessage ? [h('b', null, loginTitle), h('span', { class: 'why' }, loginMessage)] : null);
  err.hidden = !loginMessage;
  /** Says why the login did not work: a heading and, below it, the server's words. */
  const say = (title, why) => {
    err.replaceChildren(h('b', null, title), why ? h('span', { class: 'why' }, why) : null);
    err.hidden = false;
  };
  const button = h('button', { id: 'login', type: 'submit', class: 'primary' }, 'Log in');
  const oidc = h('div', { id: 'oidc', class: 'oidc', hidden: true });
  const form = h('form', { id: 'login-form', class: 'login', novalidate: true },
    h('h1', null, 'Dash'),
    oidc,
    h('label', { for: 'token' }, 'Admin API token'),
    input, button, err,
    h('p', { class: 'muted' }, 'A token made by ', h('code', null, 'dash token create --role read'), ' (or deploy, admin), or the server\u2019s admin.token. It is kept in this browser tab only, until you log out.'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const t = input.value.trim();
    err.hidden = true;
    if (!t) { err.textContent = 'enter a token'; err.hidden = false; return; }
    button.disabled = true;
    try {
      const r = await request('/v1/whoami', { auth: t, signal: c.signal });
      loggedIn(t, await r.json(), null);
    } catch (e2) {
      if (e2.name === 'AbortError') return;
      err.replaceChildren(...(e2.status === 401
        ? [h('b', null, 'token refused'), h('span', { class: 'why' }, e2.message)] : [e2.message]));
      err.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
  main.replaceChildren(form);
  input.focus();
  // The cluster's OpenID Connect provider, if it has one (asked without a token). The form
  // says when it knows (data-oidc: yes, no, unknown).
  request('/v1/login', { auth: '', signal: c.signal }).then((r) => r.json()).then((info) => {
    if (!c.alive()) return;
    const o = info && info.oidc;
    form.dataset.oidc = o && o.issuer ? 'yes' : 'no';
    if (o && o.issuer) oidcLogin(c, oidc, o, err, say);
  }, (e) => {
    if (e.name !== 'AbortError') form.dataset.oidc = 'unknown';
  });
}

/** An http(s) URL as given, or null (a provider's link is never javascript: or the like). */
function webUrl(u) {
  try {
    const url = new URL(String(u));
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
  } catch {
    return null;
  }
}

/**
 * "Log in with <provider>": the OpenID Connect device flow through the Dash server (the page
 * may reach its own origin only). POST /v1/login/device gives a code the person confirms at
 * the provider (in another tab); meanwhile POST /v1/login/token is asked every interval until
 * it gives the ID token, says the login is over, or the code expires.
 */
function oidcLogin(c, box, o, err, say) {
  let host = o.issuer;
  try { host = new URL(o.issuer).host || o.issuer; } catch { /* not a URL: as given */ }
  const start = h('button', { id: 'oidc-login', type: 'button', class: 'primary' }, 'Log in with ' + host);
  const pending = h('div', { id: 'oidc-pending', class: 'oidc-pending', 'aria-live': 'polite' });
  pending.hidden = true;
  box.replaceChildren(start, pending, h('div', { class: 'or' }, h('span', null, 'or with a token')));
  box.hidden = false;
  let flow = null; // the device login under way: its lifetime (requests and timers)
  c.signal.addEventListener('abort', () => { if (flow) flow.close(); }, { once: true });
  const stop = () => {
    if (flow) flow.close();
    flow = null;
    pending.hidden = true;
    pending.replaceChildren();
    start.hidden = false;
    start.disabled = false;
  };

  start.addEventListener('click', async () => {
    stop();
    err.hidden = true;
    start.disabled = true;
    const f = (flow = lifetime());
    let d;
    try {
      const r = await request('/v1/login/device', { method: 'POST', body: {}, auth: '', signal: f.signal });
      d = await r.json();
      if (!d || typeof d.device_code !== 'string' || typeof d.user_code !== 'string') throw new Error('the server sent no device code');
    } catch (e) {
      if (e.name === 'AbortError' || flow !== f) return;
      stop();
      say('could not start the login with ' + host, e.message);
      return;
    }

    // The code to confirm, and where.
    const uri = webUrl(d.verification_uri_complete) || webUrl(d.verification_uri);
    const code = h('div', { id: 'oidc-code', class: 'oidc-code', title: 'the code to confirm' }, d.user_code);
    const status = h('p', { id: 'oidc-status', class: 'muted' });
    const cancel = h('button', { id: 'oidc-cancel', type: 'button' }, 'Cancel');
    cancel.addEventListener('click', stop);
    let copy = null;
    if (navigator.clipboard && window.isSecureContext) {
      copy = h('button', { id: 'oidc-copy', type: 'button', class: 'small' }, 'Copy');
      copy.addEventListener('click', () => navigator.clipboard.writeText(d.user_code)
        .then(() => { copy.textContent = 'Copied'; }, () => { copy.textContent = 'Select it to copy'; }));
    }
    pending.replaceChildren(
      h('div', { class: 'oidc-code-row' }, code, copy),
      h('p', null, 'Confirm this code at your provider; this page continues by itself.'),
      h('div', { class: 'oidc-buttons' },
        uri ? h('a', { id: 'oidc-link', class: 'button primary', href: uri, target: '_blank', rel: 'noopener noreferrer' },
          'Open ' + host + ' \u2197') : h('span', { class: 'mono' }, String(d.verification_uri || '')),
        cancel),
      status);
    start.hidden = true;
    pending.hidden = false;

    let wait = Math.max(1, Number(d.interval_s) || 5) * 1000;
    const lasts = Math.max(1, Number(d.expires_in_s) || 600) * 1000;
    const until = performance.now() + lasts;
    const waiting = 'Waiting for the confirmation… the code expires at ' + clock(Date.now() + lasts) + '.';
    status.textContent = waiting;
    for (;;) {
      await f.sleep(Math.min(wait, Math.max(0, until - performance.now())));
      if (!f.alive()) return;
      if (performance.now() >= until) {
        stop();
        start.textContent = 'Start again with ' + host;
        say('the code expired', 'It was not confirmed in time: start again for a new code.');
        start.focus();
        return;
      }
      let t;
      try {
        const r = await request('/v1/login/token', { method: 'POST', body: { device_code: d.device_code }, auth: '', signal: f.signal });
        t = await r.json();
        if (!t || typeof t.id_token !== 'string' || !t.id_token) throw new Error('the server sent no ID token');
      } catch (e) {
        if (e.name === 'AbortError' || !f.alive()) return;
        if (e.status === 400 && e.code === 'authorization_pending') { status.textContent = waiting; continue; }
        if (e.status === 400 && e.code === 'slow_down') { wait += 5000; continue; }
        // The server or the provider not reached: not the end of the login, ask again.
        if (e instanceof ApiError && (e.status === 0 || e.status >= 500)) {
          status.textContent = e.message + '; asking again…';
          continue;
        }
        stop();
        say('login refused', e.message);
        return;
      }
      // Confirmed: who the ID token says, as the token login checks it.
      try {
        const r = await request('/v1/whoami', { auth: t.id_token, signal: f.signal });
        const w = await r.json();
        if (!f.alive()) return;
        flow = null;
        f.close();
        loggedIn(t.id_token, w, t.refresh_token || null);
      } catch (e) {
        if (e.name === 'AbortError' || !f.alive()) return;
        stop();
        say('login refused', e.message);
      }
      return;
    }
  });
}

// ---------------------------------------------------------------------------------------
// Overview

function running(r) {
  return r.desired === 'run' && (r.state === 'running' || r.state === 'healthy');
}

/** How bad a replica looks, for "failing first": 0 failed, 1 unhealthy, 2 exited, 3 restarted
 * lately (a crash loop between its exits), 9 fine. */
function trouble(r) {
  if (r.desired !== 'run') return 9;
  const i = FAILING.indexOf(r.state);
  if (i >= 0) return i;
  if (r.restarts > 0 && r.started_ms && now() - r.started_ms < CRASH_LOOP_MS) return 3;
  return 9;
}

function desired(s) {
  return s.spec.mode === 'global' ? s.replicas.filter((r) => r.desired === 'run').length : s.spec.replicas;
}

async function overviewPage(c, main) {
  document.title = 'Overview · Dash';
  const t0 = performance.now();
  const [services, nodes] = await Promise.all([api('/v1/services'), api('/v1/nodes'), whoami()]);
  if (!c.alive()) return;
  const failing = h('section', { class: 'panel', id: 'failing' });
  const counts = h('div', { class: 'counts', id: 'counts' });
  const svcBody = h('tbody');
  const nodeBody = h('tbody');
  const events = h('ol', { class: 'events', id: 'recent-events' }, empty('No events yet.'));
  main.replaceChildren(
    h('h1', null, 'Overview'),
    failing,
    counts,
    h('div', { class: 'cols' },
      h('section', { class: 'panel wide', id: 'services' }, h('h2', null, 'Services'),
        h('table', null, h('thead', null, h('tr', null, ['Service', 'Image', 'Replicas', 'Version', 'Status', 'Updated']
          .map((x) => h('th', null, x)))), svcBody)),
      h('div', { class: 'side' },
        section('Nodes', { id: 'nodes' }, h('table', null, h('thead', null, h('tr', null,
          ['Node', 'Role', 'State', 'Replicas', 'CPU res.', 'Mem. res.'].map((x) => h('th', null, x)))), nodeBody)),
        section('Recent events', null, events, h('p', { class: 'more' }, link('/ui/events', 'All events →'))))));

  const render = (services, nodes) => {
    services.sort((a, b) => a.spec.name.localeCompare(b.spec.name));
    const all = services.flatMap((s) => s.replicas);
    const bad = all.filter((r) => trouble(r) < 9)
      .sort((a, b) => trouble(a) - trouble(b) || b.restarts - a.restarts || a.id.localeCompare(b.id));
    failing.replaceChildren(h('h2', null, 'Failing first'), bad.length
      ? table(['Replica', 'Service', 'State', 'Node', 'Restarts', 'Message', ''], bad.map((r) =>
        h('tr', { 'data-replica': r.id, class: 'row-' + stateClass(r.state) },
          h('td', { class: 'mono' }, r.id),
          h('td', null, link(serviceHref(r.service), r.service)),
          h('td', { class: 'state' }, stateChip(r.state)),
          h('td', null, r.node ? link(nodeHref(r.node), r.node) : dash),
          h('td', { class: 'num' }, r.restarts),
          h('td', { class: 'msg' }, r.message || (r.exit_code != null ? 'exit code ' + r.exit_code : ''),
            trouble(r) === 3 ? h('span', { class: 'warn' }, (r.message ? ' · ' : '') + 'restarted ' + age(r.started_ms) + ' ago') : null),
          h('td', null, link(logsHref(r.service, r.id), 'logs', { class: 'button small', 'data-logs': r.id })))))
      : h('p', { class: 'allgood' }, 'Nothing failing: every replica is running or on its way.'));
    failing.classList.toggle('alert', bad.length > 0);

    const byState = {};
    for (const r of all) if (r.desired === 'run' || r.state === 'stopping') byState[r.state] = (byState[r.state] || 0) + 1;
    const nodeStates = {};
    for (const n of nodes) nodeStates[n.state] = (nodeStates[n.state] || 0) + 1;
    const short = services.filter((s) => s.replicas.filter(running).length < desired(s)).length;
    counts.replaceChildren(
      h('div', { class: 'count' }, h('b', null, nodes.length), nodes.length === 1 ? ' node ' : ' nodes ',
        Object.entries(nodeStates).map(([k, v]) => h('span', { class: 'chip s-' + stateClass(k) }, k + ' ' + v))),
      h('div', { class: 'count' }, h('b', null, services.length), services.length === 1 ? ' service ' : ' services ',
        short ? h('span', { class: 'chip s-warn' }, short + ' below desired') : h('span', { class: 'chip s-ok' }, 'all at desired')),
      h('div', { class: 'count', id: 'replica-counts' }, h('b', null, all.length), all.length === 1 ? ' replica ' : ' replicas ',
        STATES.filter((s) => byState[s]).map((s) => h('span', { class: 'chip s-' + stateClass(s), 'data-state': s }, s + ' ' + byState[s]))));

    svcBody.replaceChildren(...(services.length ? services.map((s) => {
      const run = s.replicas.filter(running).length;
      const want = desired(s);
      const failing = s.replicas.filter((r) => trouble(r) < 9).length;
      return h('tr', { 'data-service': s.spec.name, class: failing ? 'row-warn' : null },
        h('td', null, link(serviceHref(s.spec.name), s.spec.name, { class: 'strong' })),
        h('td', { class: 'mono' }, s.spec.image),
        h('td', { class: 'num replicas ' + (run >= want ? 'ok' : 'warn') }, run + '/' + want),
        h('td', { class: 'num' }, s.version),
        h('td', { class: failing ? 'warn' : null }, s.update_status ||
          (failing ? failing + ' failing' : run >= want ? 'settled' : 'below desired')),
        h('td', { class: 'muted' }, age(s.updated_ms)));
    }) : [empty('No services yet: `dash apply -f service.toml` makes one.', 6)]));

    nodeBody.replaceChildren(...nodes.map((n) => h('tr', { 'data-node': n.id },
      h('td', null, link(nodeHref(n.id), n.id, { class: 'strong' })),
      h('td', null, n.raft ? n.role + ' (' + n.raft + ')' : n.role),
      h('td', null, stateChip(n.state)),
      h('td', { class: 'num' }, n.replicas),
      h('td', { class: 'num' }, usage(n.allocated.cpu_millis, n.capacity.cpu_millis)),
      h('td', { class: 'num' }, usage(n.allocated.memory_bytes, n.capacity.memory_bytes)))));
  };
  render(services, nodes);
  if (probe.firstRender == null) {
    probe.firstRender = performance.now();
    probe.overviewRenderMs = probe.firstRender - t0;
    performance.mark('dash-overview-rendered');
  }

  const refresh = coalesce(c, 1500, async () => {
    const [s, n] = await Promise.all([api('/v1/services'), api('/v1/nodes')]);
    if (c.alive()) render(s, n);
  });
  c.every(15000, refresh);
  const recent = [];
  const draw = coalesce(c, 50, () => {
    events.replaceChildren(...recent.slice(-20).reverse().map(eventItem));
  });
  // The kept events come first: only newer ones than the data shown ask for a refresh.
  const loaded = now() - 3000;
  let connects = 0;
  followEvents(c, '', (e) => {
    recent.push(e);
    if (recent.length > 40) recent.splice(0, recent.length - 40);
    draw();
    if (!(e.time_ms < loaded)) refresh();
  }, { onConnect: () => { if (connects++) refresh(); } });
}

/** What the replicas' resources reserve of a node's capacity. */
function usage(used, cap) {
  return cap ? Math.round((100 * (used || 0)) / cap) + ' %' : 'unlimited';
}

function eventItem(e) {
  return h('li', { class: 'ev', 'data-kind': e.kind },
    h('time', { title: e.time_ms ? new Date(e.time_ms).toISOString() : '' }, clock(e.time_ms || now())), ' ',
    h('span', { class: 'chip s-' + eventClass(e.kind) }, e.kind), ' ',
    e.service ? [link(serviceHref(e.service), e.service), ' '] : null,
    e.replica ? [e.service ? link(logsHref(e.service, e.replica), e.replica, { class: 'mono rep-link' }) : h('span', { class: 'mono' }, e.replica), ' '] : null,
    e.node && !e.service ? [link(nodeHref(e.node), e.node), ' '] : null,
    e.message ? h('span', { class: 'msg' }, e.message) : null);
}

function stamp(ms) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${clock(ms)}`;
}

// ---------------------------------------------------------------------------------------
// A service

async function servicePage(c, main, name, q) {
  document.title = name + ' · Dash';
  let svc;
  try {
    [svc] = await Promise.all([api('/v1/services/' + encodeURIComponent(name)), whoami()]);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return notFound(main, 'No service “' + name + '”.');
    throw e;
  }
  if (!c.alive()) return;
  const deployer = await can('deploy');
  let stats = {};
  const title = h('div', { class: 'title' });
  const actions = h('div', { class: 'actions' });
  const repBody = h('tbody');
  const specPre = h('pre', { id: 'spec', class: 'spec' });
  const evList = h('ol', { class: 'events', id: 'service-events' }, empty('No events yet.'));
  const charts = h('div', { class: 'charts', id: 'charts' });
  const logs = h('div', { id: 'logs', class: 'logs', tabindex: '0' }, h('p', { class: 'empty' }, 'Waiting for log lines…'));
  const pick = h('select', { id: 'log-replica', 'aria-label': 'Replica' });
  const stick = h('input', { type: 'checkbox', id: 'log-follow', checked: true });

  let scaleInput = null;
  let scaleDirty = false;
  if (deployer) {
    scaleInput = h('input', { id: 'scale-replicas', type: 'number', min: '0', max: '10000', value: String(svc.spec.replicas) });
    // Once touched (typed in, cleared, focused), live updates leave the field alone.
    for (const ev of ['input', 'change', 'focus']) scaleInput.addEventListener(ev, () => { scaleDirty = true; });
    const scale = h('button', { id: 'scale', type: 'button' }, 'Scale');
    const rollback = h('button', { id: 'rollback', type: 'button' }, 'Roll back');
    const remove = h('button', { id: 'remove', type: 'button', class: 'danger' }, 'Remove');
    scale.addEventListener('click', () => {
      const n = Number(scaleInput.value);
      if (!Number.isInteger(n) || n < 0 || n > 10000) return showError(new ApiError(0, 'invalid', 'the replica count is a whole number from 0 to 10000'));
      act(scale, `Scale ${name} to ${n} replica${n === 1 ? '' : 's'}?`, 'Scale',
        () => api('/v1/services/' + encodeURIComponent(name) + '/scale', { method: 'POST', body: { replicas: n } }),
        () => { scaleDirty = false; refresh(); return `${name} scaled to ${n}`; });
    });
    rollback.addEventListener('click', () => act(rollback, `Roll ${name} back to its previous version's spec?`, 'Roll back',
      () => api('/v1/services/' + encodeURIComponent(name) + '/rollback', { method: 'POST' }),
      (r) => { refresh(); return `${name} rolled back: now version ${r && r.version}`; }));
    remove.addEventListener('click', () => act(remove, `Remove ${name}? Its replicas are stopped, then it is gone.`, 'Remove',
      () => api('/v1/services/' + encodeURIComponent(name), { method: 'DELETE' }),
      () => { c.after(0, () => go('/ui/')); return `${name} is being removed`; }));
    actions.append(h('label', { for: 'scale-replicas' }, 'Replicas'), scaleInput, scale, rollback, remove);
  }

  main.replaceChildren(
    h('div', { class: 'head' }, title, actions.childElementCount ? actions : null),
    section('Replicas', { id: 'replicas' }, h('table', null, h('thead', null, h('tr', null,
      ['Replica', 'State', 'Node', 'IP', 'Restarts', 'Age', 'CPU', 'Memory', 'Message', ''].map((x) => h('th', null, x)))), repBody)),
    section('Last hour', { id: 'history' }, charts),
    h('section', { class: 'panel', id: 'logs-panel' },
      h('div', { class: 'panel-head' }, h('h2', null, 'Logs'), h('span', { class: 'spacer' }), pick,
        h('label', { class: 'check' }, stick, ' follow')),
      logs),
    h('div', { class: 'cols2' },
      section('Events', { id: 'events' }, evList, h('p', { class: 'more' }, link('/ui/events?service=' + encodeURIComponent(name), 'All its events →'))),
      section('Spec', { id: 'spec-panel' }, specPre)));

  const render = () => {
    const run = svc.replicas.filter(running).length;
    const want = desired(svc);
    title.replaceChildren(
      h('h1', null, svc.spec.name),
      h('div', { class: 'facts' },
        h('span', null, 'image ', h('b', { class: 'mono' }, svc.spec.image)),
        h('span', null, 'version ', h('b', null, svc.version)),
        h('span', { class: run >= want ? 'ok' : 'warn' }, 'replicas ', h('b', { id: 'replica-count' }, run + '/' + want)),
        svc.vip ? h('span', null, 'VIP ', h('b', { class: 'mono' }, svc.vip)) : null,
        svc.update_status ? h('span', { class: 'warn' }, svc.update_status) : null,
        h('span', { class: 'muted' }, 'updated ' + age(svc.updated_ms) + ' ago')));
    if (scaleInput && !scaleDirty && document.activeElement !== scaleInput) scaleInput.value = String(svc.spec.replicas);
    const reps = [...svc.replicas].sort((a, b) => a.created_ms - b.created_ms || a.id.localeCompare(b.id));
    repBody.replaceChildren(...(reps.length ? reps.map((r) => {
      const st = stats[r.id] || {};
      return h('tr', { 'data-replica': r.id, class: r.desired === 'remove' ? 'leaving' : null },
        h('td', { class: 'mono' }, r.id),
        h('td', { class: 'state' }, stateChip(r.state)),
        h('td', null, r.node ? link(nodeHref(r.node), r.node) : dash),
        h('td', { class: 'mono' }, r.ip || dash),
        h('td', { class: 'num restarts' }, r.restarts),
        h('td', { class: 'num' }, age(r.created_ms)),
        h('td', { class: 'num' }, pct(st.cpu_percent)),
        h('td', { class: 'num' }, bytes(st.memory_bytes)),
        h('td', { class: 'msg' }, r.message || (r.exit_code != null && r.state !== 'running' ? 'exit code ' + r.exit_code : '')),
        h('td', null, link(logsHref(name, r.id), 'logs', { class: 'button small' })));
    }) : [empty('No replicas.', 10)]));
    // The log source picker: rebuilt only when the replicas change (an open list stays open).
    // What is picked now (the URL follows the picker), not what the page opened with.
    const want2 = pick.value || new URLSearchParams(location.search).get('replica') || '';
    const ids = reps.map((r) => r.id).join(' ') + '|' + want2;
    if (pick.dataset.ids !== ids) {
      pick.dataset.ids = ids;
      pick.replaceChildren(h('option', { value: '' }, 'all replicas'),
        ...reps.map((r) => h('option', { value: r.id }, r.id)),
        want2 && !reps.some((r) => r.id === want2) ? h('option', { value: want2 }, want2 + ' (gone)') : null);
      pick.value = want2;
    }
    specPre.textContent = JSON.stringify(svc.spec, null, 2);
  };
  render();
  let gone = false;
  const refresh = coalesce(c, 250, async () => {
    if (gone) return;
    try {
      svc = await api('/v1/services/' + encodeURIComponent(name));
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        gone = true;
        title.append(h('p', { class: 'gone', id: 'service-gone' }, 'This service has been removed.'));
        return;
      }
      throw e;
    }
    if (c.alive()) render();
  });
  const loadStats = async () => {
    try {
      const list = await api('/v1/stats?service=' + encodeURIComponent(name));
      stats = Object.fromEntries(list.map((s) => [s.replica, s]));
      if (c.alive()) render();
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
    }
  };
  loadStats().catch(showError);
  c.every(10000, () => loadStats().catch(showError));
  c.every(15000, refresh);

  // Events about it: listed, and each one refreshes the replicas (coalesced).
  const evs = [];
  const drawEvents = coalesce(c, 50, () => evList.replaceChildren(...(evs.length
    ? evs.slice(-100).reverse().map(eventItem) : [empty('No events yet.')])));
  const loaded = now() - 3000;
  let connects = 0;
  followEvents(c, '&service=' + encodeURIComponent(name), (e) => {
    evs.push(e);
    if (evs.length > 200) evs.splice(0, evs.length - 200);
    drawEvents();
    if (!(e.time_ms < loaded)) refresh();
  }, { onConnect: () => { if (connects++) refresh(); } });

  // Logs: the last 100 lines, then followed; newest at the bottom, at most LOG_CAP kept.
  let logCtx = null;
  const startLogs = () => {
    if (logCtx) logCtx.close();
    const lc = lifetime();
    logCtx = lc;
    c.signal.addEventListener('abort', () => lc.close(), { once: true, signal: lc.signal });
    logs.replaceChildren(h('p', { class: 'empty' }, 'Waiting for log lines…'));
    const source = pick.value || name;
    // The newest stamp seen and the lines of it: after a reconnect (from that millisecond
    // on) the lines seen already are skipped.
    let lastStamp = '';
    let atLast = new Set();
    let resume = '';
    let resumeSeen = new Set();
    let pending = [];
    const flush = coalesce(lc, 60, () => {
      const batch = pending;
      pending = [];
      if (!batch.length) return;
      const atBottom = logs.scrollHeight - logs.scrollTop - logs.clientHeight < 40;
      const ph = logs.querySelector('.empty');
      if (ph) ph.remove();
      const frag = document.createDocumentFragment();
      for (const o of batch) frag.append(logLine(o));
      logs.append(frag);
      while (logs.childElementCount > LOG_CAP) logs.firstElementChild.remove();
      if (stick.checked && (atBottom || batch.length === logs.childElementCount)) logs.scrollTop = logs.scrollHeight;
    });
    follow(lc, () => {
      if (!lastStamp) return '/v1/logs/' + encodeURIComponent(source) + '?follow=true&tail=100';
      resume = lastStamp;
      resumeSeen = atLast;
      return '/v1/logs/' + encodeURIComponent(source) + '?follow=true&since_ms=' + Date.parse(lastStamp);
    }, (o) => {
      const stamp = String(o.line || '').split(' ', 1)[0];
      const key = o.replica + '\n' + o.line;
      if (resume && (stamp < resume || (stamp === resume && resumeSeen.has(key)))) return;
      if (stamp > lastStamp) {
        lastStamp = stamp;
        atLast = new Set();
      }
      if (stamp === lastStamp) atLast.add(key);
      pending.push(o);
      // Only the newest LOG_CAP lines can be shown: a burst (many replicas' tails, a tab in
      // the background) keeps no more than that until the next draw.
      if (pending.length > LOG_CAP) pending.splice(0, pending.length - LOG_CAP);
      flush();
    }, { onGone: (e) => logs.replaceChildren(h('p', { class: 'empty' }, e.message)) });
  };
  pick.addEventListener('change', () => {
    const u = new URL(location.href);
    if (pick.value) u.searchParams.set('replica', pick.value); else u.searchParams.delete('replica');
    history.replaceState(null, '', u.pathname + u.search + u.hash);
    startLogs();
  });
  stick.addEventListener('change', () => { if (stick.checked) logs.scrollTop = logs.scrollHeight; });
  startLogs();

  // The last hour's use, from the history route (absent on older servers: "no history yet").
  const loadHistory = async () => {
    let hist = null;
    let why = 'no history yet';
    try {
      hist = await api('/v1/services/' + encodeURIComponent(name) + '/history?window_s=3600');
    } catch (e) {
      if (!(e instanceof ApiError) || e.status === 401) throw e;
      if (e.status !== 404) why = e.message;
    }
    if (!c.alive()) return;
    charts.replaceChildren(...[
      ['CPU', 'cpu_percent', pct, 'cpu'],
      ['Memory', 'memory_bytes', bytes, 'memory'],
      ['Requests', 'requests_per_second', (x) => (x == null ? dash : x.toFixed(x < 10 ? 2 : 0) + ' /s'), 'rps'],
    ].map(([label, key, fmt, id]) => chart(id, label, key, fmt, hist, why)));
  };
  loadHistory().catch(showError);
  c.every(30000, () => loadHistory().catch(showError));

  if (location.hash === '#logs') c.after(0, () => $('#logs-panel').scrollIntoView());
}

function logLine(o) {
  const m = /^(\S+) (stdout|stderr) ?([\s\S]*)$/.exec(o.line || '');
  const when = m ? new Date(m[1]) : null;
  const rep = String(o.replica || '');
  return h('div', { class: 'line' + (m && m[2] === 'stderr' ? ' err' : ''), 'data-replica': rep },
    h('span', { class: 'ts', title: m ? m[1] : '' }, when && !isNaN(when) ? clock(when.getTime()) + '.' + String(when.getMilliseconds()).padStart(3, '0') : ''),
    h('span', { class: 'rep c' + hashOf(rep) % 6, title: rep }, rep.slice(rep.lastIndexOf('-') + 1, rep.lastIndexOf('-') + 7) || rep),
    h('span', { class: 'text' }, m ? m[3] : String(o.line || '')));
}

function hashOf(s) {
  let x = 0;
  for (let i = 0; i < s.length; i++) x = (x * 31 + s.charCodeAt(i)) >>> 0;
  return x;
}

// A line chart, hand made: the service's sum as a filled line, each replica as a thin one.
function chart(id, label, key, fmt, hist, why) {
  const W = 360;
  const H = 150;
  const L = 54;
  const R = 8;
  const T = 10;
  const B = 20;
  const fig = h('figure', { class: 'chart', id: 'chart-' + id });
  const series = [];
  if (hist && Array.isArray(hist.points)) {
    series.push({ main: true, points: hist.points });
    const reps = Array.isArray(hist.replicas) ? hist.replicas : [];
    if (reps.length > 1) reps.slice(0, 12).forEach((r, i) => series.push({ name: r.replica, i, points: r.points || [] }));
  }
  const values = series.flatMap((s) => s.points.map((p) => p[key]).filter((v) => typeof v === 'number' && isFinite(v)));
  const latest = hist && hist.points && [...hist.points].reverse().find((p) => p[key] != null);
  fig.append(h('figcaption', null, h('span', null, label), h('b', null, latest ? fmt(latest[key]) : '')));
  if (!values.length) {
    fig.append(h('div', { class: 'nodata' }, hist ? 'no data in the last hour' : why));
    return fig;
  }
  const times = series.flatMap((s) => s.points.map((p) => p.time_ms));
  const t1 = Math.max(now(), ...times);
  const t0 = t1 - 3600 * 1000;
  const top = niceMax(Math.max(...values));
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - v / top) * (H - T - B);
  const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'plot', role: 'img', 'aria-label': label + ', last hour' });
  for (const f of [0, 0.5, 1]) {
    g.append(svg('line', { x1: L, x2: W - R, y1: y(top * f), y2: y(top * f), class: 'grid' }),
      svg('text', { x: L - 4, y: y(top * f) + 3, class: 'ylab' }, f ? fmt(top * f) : '0'));
  }
  for (const [t, text] of [[t0, '−60 m'], [t0 + 1800e3, '−30 m'], [t1, 'now']]) {
    g.append(svg('text', { x: x(t), y: H - 5, class: 'xlab' + (t === t1 ? ' end' : t === t0 ? ' start' : '') }, text));
  }
  // Each series as runs of points: a missing value or a gap of buckets breaks the line.
  const gap = hist.resolution_ms > 0 ? hist.resolution_ms * 2.5 : Infinity;
  const f1 = (n) => n.toFixed(1);
  for (const s of [...series].reverse()) {
    const runs = [];
    let run = null;
    let prevT = null;
    for (const p of [...s.points].sort((a, b) => a.time_ms - b.time_ms)) {
      const v = p[key];
      if (typeof v !== 'number' || !isFinite(v) || p.time_ms < t0) { run = null; continue; }
      if (!run || p.time_ms - prevT > gap) runs.push((run = []));
      run.push([x(p.time_ms), y(v)]);
      prevT = p.time_ms;
    }
    const cls = s.main ? 'main' : 'rep c' + (s.i % 6);
    const title = svg('title', null, s.main ? 'all replicas' : s.name);
    if (s.main) {
      const area = runs.filter((r) => r.length > 1).map((r) => `M${f1(r[0][0])},${f1(y(0))}` +
        r.map(([px, py]) => `L${f1(px)},${f1(py)}`).join('') + `L${f1(r[r.length - 1][0])},${f1(y(0))}Z`).join('');
      if (area) g.append(svg('path', { d: area, class: 'area' }));
    }
    const d = runs.filter((r) => r.length > 1).map((r) => r.map(([px, py], i) => (i ? 'L' : 'M') + f1(px) + ',' + f1(py)).join('')).join('');
    if (d) g.append(svg('path', { d, class: 'line ' + cls }, title));
    // A lone point has no line: a dot; so has the newest value of the sum.
    for (const r of runs) if (r.length === 1) g.append(svg('circle', { cx: f1(r[0][0]), cy: f1(r[0][1]), r: s.main ? 2.2 : 1.6, class: 'dot ' + cls }));
    const lastRun = runs[runs.length - 1];
    if (s.main && lastRun && lastRun.length > 1) {
      const [px, py] = lastRun[lastRun.length - 1];
      g.append(svg('circle', { cx: f1(px), cy: f1(py), r: 2.2, class: 'dot main' }));
    }
  }
  fig.append(g);
  if (series.length > 1) fig.append(h('div', { class: 'legend' }, h('span', { class: 'key main' }, 'all'),
    series.slice(1).map((s) => h('span', { class: 'key c' + (s.i % 6), title: s.name }, s.name.slice(s.name.lastIndexOf('-') + 1)))));
  return fig;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const e = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * e) return m * e;
  return 10 * e;
}

// ---------------------------------------------------------------------------------------
// A node

async function nodePage(c, main, id) {
  document.title = id + ' · Dash';
  const load = () => Promise.all([api('/v1/nodes/' + encodeURIComponent(id)), api('/v1/replicas'),
    api('/v1/stats').catch((e) => { if (e.status === 401) throw e; return []; })]);
  let data;
  try {
    [data] = await Promise.all([load(), whoami()]);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return notFound(main, 'No node “' + id + '”.');
    throw e;
  }
  if (!c.alive()) return;
  const admin = await can('admin');
  const title = h('div', { class: 'title' });
  const actions = h('div', { class: 'actions' });
  const caps = h('section', { class: 'panel', id: 'capacity' });
  const labels = h('section', { class: 'panel', id: 'labels' });
  const repBody = h('tbody');
  let drain = null;
  let activate = null;
  if (admin) {
    drain = h('button', { id: 'drain', type: 'button', class: 'danger' }, 'Drain');
    activate = h('button', { id: 'activate', type: 'button' }, 'Activate');
    drain.addEventListener('click', () => act(drain, `Drain ${id}? Its replicas move to other nodes.`, 'Drain',
      () => api('/v1/nodes/' + encodeURIComponent(id) + '/drain', { method: 'POST' }),
      () => { refresh(); return `${id} is draining`; }));
    activate.addEventListener('click', () => act(activate, `Activate ${id}? It takes new replicas again.`, 'Activate',
      () => api('/v1/nodes/' + encodeURIComponent(id) + '/activate', { method: 'POST' }),
      () => { refresh(); return `${id} is active again`; }));
    actions.append(drain, activate);
  }
  main.replaceChildren(h('div', { class: 'head' }, title, actions.childElementCount ? actions : null),
    h('div', { class: 'cols2' }, caps, labels),
    section('Replicas on it', { id: 'replicas' }, h('table', null, h('thead', null, h('tr', null,
      ['Replica', 'Service', 'State', 'IP', 'Restarts', 'Age', 'CPU', 'Memory', 'Message'].map((x) => h('th', null, x)))), repBody)));

  const render = ([n, replicas, stats]) => {
    const mine = replicas.filter((r) => r.node === id).sort((a, b) => a.service.localeCompare(b.service) || a.id.localeCompare(b.id));
    const st = Object.fromEntries(stats.filter((s) => s.node === id).map((s) => [s.replica, s]));
    const usedCpu = Object.values(st).reduce((a, s) => a + (s.cpu_percent || 0) * 10, 0);
    const usedMem = Object.values(st).reduce((a, s) => a + (s.memory_bytes || 0), 0);
    title.replaceChildren(h('h1', null, n.id, ' ', stateChip(n.state)),
      h('div', { class: 'facts' },
        h('span', null, 'role ', h('b', null, n.role + (n.raft ? ' (' + n.raft + ')' : ''))),
        h('span', null, 'address ', h('b', { class: 'mono' }, n.address)),
        h('span', null, 'subnet ', h('b', { class: 'mono' }, n.subnet)),
        h('span', null, 'runtime ', h('b', null, n.runtime)),
        h('span', null, 'replicas ', h('b', null, n.replicas)),
        h('span', { class: 'muted' }, 'seen ' + age(n.last_seen_ms) + ' ago')));
    if (drain) { drain.disabled = n.state === 'drained'; activate.disabled = n.state !== 'drained'; }
    const meterRow = (what, cap, alloc, used, fmt) => h('tr', null, h('th', null, what),
      h('td', { class: 'num' }, cap ? fmt(cap) : 'unlimited'),
      h('td', { class: 'num' }, fmt(alloc)), h('td', null, cap ? h('meter', { min: '0', max: String(cap), value: String(alloc) }) : null),
      h('td', { class: 'num' }, fmt(used)), h('td', null, cap ? h('meter', { min: '0', max: String(cap), value: String(used), high: String(cap * 0.8) }) : null));
    caps.replaceChildren(h('h2', null, 'Capacity and use'), h('table', { class: 'capacity' },
      h('thead', null, h('tr', null, ['', 'Capacity', 'Reserved', '', 'In use', ''].map((x) => h('th', null, x)))),
      h('tbody', null,
        meterRow('CPU', n.capacity.cpu_millis, n.allocated.cpu_millis || 0, Math.round(usedCpu), (m) => (m / 1000).toFixed(2) + ' cores'),
        meterRow('Memory', n.capacity.memory_bytes, n.allocated.memory_bytes || 0, usedMem, bytes))),
      h('p', { class: 'muted' }, 'Reserved: what its replicas\u2019 resources ask for; in use: as last measured.'));
    const lab = Object.entries(n.labels || {}).sort();
    labels.replaceChildren(h('h2', null, 'Labels'), lab.length
      ? table(['Label', 'Value'], lab.map(([k, v]) => h('tr', null, h('td', { class: 'mono' }, k), h('td', { class: 'mono' }, v))))
      : empty('No labels.'));
    repBody.replaceChildren(...(mine.length ? mine.map((r) => h('tr', { 'data-replica': r.id },
      h('td', { class: 'mono' }, r.id),
      h('td', null, link(serviceHref(r.service), r.service)),
      h('td', { class: 'state' }, stateChip(r.state)),
      h('td', { class: 'mono' }, r.ip || dash),
      h('td', { class: 'num restarts' }, r.restarts),
      h('td', { class: 'num' }, age(r.created_ms)),
      h('td', { class: 'num' }, pct(st[r.id] && st[r.id].cpu_percent)),
      h('td', { class: 'num' }, bytes(st[r.id] && st[r.id].memory_bytes)),
      h('td', { class: 'msg' }, r.message))) : [empty('No replicas on this node.', 9)]));
  };
  render(data);
  // At most every 3 s: each reload reads every replica and measurement of the cluster.
  let gone = false;
  const refresh = coalesce(c, 3000, async () => {
    if (gone) return;
    let d;
    try {
      d = await load();
    } catch (e) {
      // Removed while shown: say so once, and stop asking.
      if (e instanceof ApiError && e.status === 404) {
        gone = true;
        return notFound(main, 'Node “' + id + '” is no longer in the cluster.');
      }
      throw e;
    }
    if (c.alive()) render(d);
  });
  c.every(10000, refresh);
  let connects = 0;
  follow(c, () => '/v1/events', (e) => {
    if (e.node ? e.node === id : (e.replica || e.kind.startsWith('node_'))) refresh();
  },
    { onConnect: () => { if (connects++) refresh(); } });
}

// ---------------------------------------------------------------------------------------
// Events

async function eventsPage(c, main, q) {
  document.title = 'Events · Dash';
  const svcIn = h('input', { id: 'filter-service', type: 'search', list: 'service-names', placeholder: 'any service', value: q.get('service') || '' });
  const names = h('datalist', { id: 'service-names' });
  const kind = h('select', { id: 'filter-type' }, h('option', { value: '' }, 'any type'),
    EVENT_KINDS.map((k) => h('option', { value: k }, k)));
  kind.value = EVENT_KINDS.includes(q.get('type')) ? q.get('type') : '';
  const body = h('tbody');
  const count = h('span', { class: 'muted' });
  main.replaceChildren(h('h1', null, 'Events'),
    h('div', { class: 'filters' }, h('label', null, 'Service ', svcIn), names, h('label', null, 'Type ', kind), count),
    h('section', { class: 'panel' }, h('table', { id: 'events-table' }, h('thead', null, h('tr', null,
      ['Time', 'Type', 'Service', 'Replica', 'Node', 'Message'].map((x) => h('th', null, x)))), body)));
  api('/v1/services').then((list) => names.replaceChildren(...list.map((s) => h('option', { value: s.spec.name }))), showError);
  const all = [];
  const draw = coalesce(c, 80, () => {
    const s = svcIn.value.trim();
    const k = kind.value;
    const shown = all.filter((e) => (!s || e.service === s) && (!k || e.kind === k));
    count.textContent = shown.length + ' of ' + all.length + ' kept';
    body.replaceChildren(...(shown.length ? shown.slice(-500).reverse().map((e) => h('tr', { class: 'ev-' + eventClass(e.kind), 'data-kind': e.kind },
      h('td', { class: 'mono nowrap', title: e.time_ms ? new Date(e.time_ms).toISOString() : '' }, e.time_ms ? stamp(e.time_ms) : ''),
      h('td', null, h('span', { class: 'chip s-' + eventClass(e.kind) }, e.kind)),
      h('td', null, e.service ? link(serviceHref(e.service), e.service) : dash),
      h('td', { class: 'mono' }, e.replica ? (e.service ? link(logsHref(e.service, e.replica), e.replica) : e.replica) : dash),
      h('td', null, e.node ? link(nodeHref(e.node), e.node) : dash),
      h('td', { class: 'msg' }, e.message || ''))) : [empty(all.length ? 'No event matches.' : 'No events yet.', 6)]));
  });
  const onFilter = () => {
    const u = new URLSearchParams();
    if (svcIn.value.trim()) u.set('service', svcIn.value.trim());
    if (kind.value) u.set('type', kind.value);
    history.replaceState(null, '', '/ui/events' + (u.toString() ? '?' + u : ''));
    draw();
  };
  svcIn.addEventListener('input', onFilter);
  kind.addEventListener('change', onFilter);
  draw();
  followEvents(c, '', (e) => {
    all.push(e);
    if (all.length > EVENT_CAP) all.splice(0, all.length - EVENT_CAP);
    draw();
  });
}

// ---------------------------------------------------------------------------------------
// Routes

async function routesPage(c, main) {
  document.title = 'Routes · Dash';
  const body = h('tbody');
  main.replaceChildren(h('h1', null, 'Routes'),
    h('p', { class: 'muted' }, 'The built-in proxy\u2019s routing table, its counters summed over the nodes (updated every 2 s).'),
    h('section', { class: 'panel' }, h('table', { id: 'routes-table' }, h('thead', null, h('tr', null,
      ['Service', 'Host', 'Path', 'Port', 'Requests', 'Req/s', '2xx', '3xx', '4xx', '5xx', 'Errors', 'p50', 'p99', 'Upstreams']
        .map((x) => h('th', null, x)))), body)));
  const load = async () => {
    const routes = await api('/v1/routes');
    if (!c.alive()) return;
    body.replaceChildren(...(routes.length ? routes.map((r) => h('tr', { 'data-route': r.service + ' ' + r.host + r.path_prefix },
      h('td', null, link(serviceHref(r.service), r.service)),
      h('td', { class: 'mono' }, r.host || '*'),
      h('td', { class: 'mono' }, r.path_prefix || '/', r.strip_prefix ? h('span', { class: 'muted' }, ' (stripped)') : null),
      h('td', { class: 'num' }, r.port),
      h('td', { class: 'num' }, num(r.requests)),
      h('td', { class: 'num' }, r.requests_per_second == null ? dash : r.requests_per_second.toFixed(1)),
      [1, 2, 3, 4].map((i) => h('td', { class: 'num' + (i >= 3 && r.status[i] ? ' warn' : '') }, num(r.status[i]))),
      h('td', { class: 'num' + (r.errors ? ' bad' : '') }, num(r.errors)),
      h('td', { class: 'num' }, quantile(r, 0.5)),
      h('td', { class: 'num' }, quantile(r, 0.99)),
      h('td', null, r.upstreams.length ? h('ul', { class: 'upstreams' }, r.upstreams.map((u) => h('li', null,
        h('span', { class: 'chip s-' + stateClass(u.state) }, u.state), ' ', h('span', { class: 'mono' }, u.addr), ' ',
        h('span', { class: 'muted' }, u.replica + ' · ' + num(u.requests) + ' req · ' + num(u.failures) + ' failed · ' + num(u.in_flight) + ' in flight'))))
        : h('span', { class: 'warn' }, 'no upstream')))) : [empty('No routes: a service gets one with [[routes]] in its service file.', 14)]));
  };
  await load();
  // The next load 2 s after the last answer: slow answers never overlap or land out of order.
  (async () => {
    while (c.alive()) {
      await c.sleep(2000);
      if (!c.alive()) return;
      try { await load(); } catch (e) { if (c.alive()) showError(e); }
    }
  })();
}

function quantile(r, q) {
  const counts = r.latency_counts || [];
  const bounds = r.latency_buckets_ms || [];
  const total = counts.reduce((a, b) => a + b, 0);
  if (!total) return dash;
  let acc = 0;
  for (let i = 0; i < counts.length; i++) {
    acc += counts[i];
    if (acc >= q * total) {
      const b = bounds[i];
      return b == null || b > 1e12 ? '> ' + (bounds[i - 1] || 0) + ' ms' : '≤ ' + b + ' ms';
    }
  }
  return dash;
}

route();
