/* Switchboard admin console: one page over the admin API (/admin/*).
   Plain DOM and no build step. API data only ever goes in through textContent. */
(function () {
  'use strict';

  const TOKEN_KEY = 'switchboard.adminToken';
  const ORIGIN = location.origin;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const REFRESH_MS = { agents: 5000, sessions: 2000, session: 2000, clients: 2000, client: 2000, traffic: 5000, audit: 5000, approvals: 2000, tasks: 2000 };
  const TRANSPORTS = { sse: 'Legacy SSE', streamable_http: 'Streamable HTTP' };
  const TITLES = { agents: 'Agents', sessions: 'Sessions', session: 'Session', clients: 'Clients', client: 'Client', traffic: 'Traffic', audit: 'Audit', call: 'Call', approvals: 'Approvals', tasks: 'Tasks' };

  const $ = (id) => document.getElementById(id);
  const viewEl = $('view');
  const bannerEl = $('banner');
  const noticeEl = $('notice');
  const tokenDlg = $('token-dialog');
  const tokenForm = $('token-form');
  const tokenInput = $('token-input');
  const tokenErr = $('token-error');
  const confirmDlg = $('confirm');
  const confirmText = $('confirm-text');
  const confirmYes = $('confirm-yes');
  const confirmNo = $('confirm-no');
  const signoutBtn = $('signout');

  /* DOM helpers */

  function add(el, kids) {
    for (const k of kids.flat(Infinity)) {
      if (k == null || k === false) continue;
      el.append(k instanceof Node ? k : String(k));
    }
    return el;
  }

  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    setProps(el, props);
    return add(el, kids);
  }

  // <button type="button" class="btn cls">
  const button = (cls, props, ...kids) => h('button', Object.assign({ type: 'button', class: cls ? 'btn ' + cls : 'btn' }, props), kids);

  function sv(tag, props, ...kids) {
    const el = document.createElementNS(SVG_NS, tag);
    setProps(el, props);
    return add(el, kids);
  }

  function setProps(el, props) {
    if (!props) return;
    for (const k of Object.keys(props)) {
      const v = props[k];
      if (v == null || v === false) continue;
      if (k === 'class') el.setAttribute('class', v);
      else if (k === 'text') el.textContent = v;
      else if (k === 'value') el.value = v;
      else if (k === 'hidden') el.hidden = !!v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function fill(el, ...kids) {
    el.replaceChildren();
    return add(el, kids);
  }

  function setText(el, t) {
    t = String(t);
    if (el.textContent !== t) el.textContent = t;
  }

  // Replace an element's children only when they would render differently: keeps focus,
  // selection and hover on refreshes that change nothing.
  function patch(el, ...kids) {
    const tmp = add(document.createElement('div'), kids);
    if (tmp.innerHTML !== el.innerHTML) el.replaceChildren(...tmp.childNodes);
  }

  function setAttr(el, name, value) {
    if (el.getAttribute(name) !== value) el.setAttribute(name, value);
  }

  /* formatting */

  const nf = new Intl.NumberFormat('en-US');
  const num = (n) => (n == null ? '\u2014' : nf.format(n));
  const plural = (n, word, many) => num(n) + ' ' + (n === 1 ? word : many || word + 's');
  const pad = (n) => String(n).padStart(2, '0');

  function trimNum(v) {
    const r = Math.round(v * 100) / 100;
    return String(r);
  }

  function compact(v) {
    const a = Math.abs(v);
    if (a >= 1e9) return trimNum(v / 1e9) + 'G';
    if (a >= 1e6) return trimNum(v / 1e6) + 'M';
    if (a >= 1e3) return trimNum(v / 1e3) + 'k';
    return trimNum(v);
  }

  function fmtMs(v) {
    if (v == null || !isFinite(v)) return '\u2014';
    if (v < 1) return v.toFixed(2) + ' ms';
    if (v < 100) return v.toFixed(1) + ' ms';
    if (v < 1000) return Math.round(v) + ' ms';
    if (v < 60000) return (v / 1000).toFixed(2) + ' s';
    return fmtDur(v / 1000);
  }

  function axisMs(v) {
    return v >= 1000 ? trimNum(v / 1000) + ' s' : compact(v) + ' ms';
  }

  function pct(part, whole) {
    if (!whole) return '\u2014';
    const p = (part / whole) * 100;
    if (p === 0) return '0%';
    return (p < 10 ? p.toFixed(1) : String(Math.round(p))) + '%';
  }

  function fmtDur(secs) {
    let s = Math.max(0, Math.floor(secs));
    if (s < 60) return s + ' s';
    const m = Math.floor(s / 60);
    s %= 60;
    if (m < 60) return m + ' min' + (m < 10 && s ? ' ' + s + ' s' : '');
    const hr = Math.floor(m / 60);
    if (hr < 24) return hr + ' h' + (m % 60 ? ' ' + (m % 60) + ' min' : '');
    const d = Math.floor(hr / 24);
    return d + ' d' + (hr % 24 ? ' ' + (hr % 24) + ' h' : '');
  }

  function fmtAgo(secs) {
    if (!isFinite(secs)) return '\u2014';
    const s = Math.max(0, Math.floor(secs));
    if (s < 1) return 'just now';
    if (s < 60) return s + ' s ago';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    if (s < 86400) return Math.floor(s / 3600) + ' h ago';
    return Math.floor(s / 86400) + ' d ago';
  }

  function localIso(d) {
    const off = -d.getTimezoneOffset();
    const sign = off >= 0 ? '+' : '-';
    const ao = Math.abs(off);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + 'T' +
      pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()) +
      sign + pad(Math.floor(ao / 60)) + ':' + pad(ao % 60);
  }

  function clock(d) {
    return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }

  // The server's clock, estimated from the Date header, so "ago" holds under clock skew.
  let skewMs = 0;
  const serverNow = () => Date.now() + skewMs;
  function noteClock(res) {
    const d = Date.parse(res.headers.get('date') || '');
    if (!isNaN(d)) {
      const skew = d - Date.now();
      skewMs = Math.abs(skew) > 3000 ? skew : 0;
    }
  }

  function secsSince(iso) {
    const t = Date.parse(iso);
    return isNaN(t) ? NaN : (serverNow() - t) / 1000;
  }

  // <time datetime=ISO title="local ISO">text</time>
  function timeEl(iso, text) {
    const d = new Date(iso);
    return h('time', { datetime: iso, title: isNaN(d) ? iso : localIso(d) }, text);
  }

  const agoEl = (iso) => (iso ? timeEl(iso, fmtAgo(secsSince(iso))) : muted('never'));
  // Cluster mode names a legacy session's replica in its id (`<node>~<uuid>`): the node is
  // shown beside it, so the short form is the uuid's.
  const shortId = (id) => {
    const own = id.includes('~') ? id.slice(id.lastIndexOf('~') + 1) : id;
    return own.length > 12 ? own.slice(0, 8) : own;
  };
  const absUrl = (p) => (/^[a-z][a-z0-9+.-]*:/i.test(p) ? p : ORIGIN + p);
  const muted = (...kids) => h('span', { class: 'muted' }, kids);
  const faint = (...kids) => h('span', { class: 'muted small' }, kids);
  const dash = () => muted('\u2014');
  const orDash = (v) => (v == null || v === '' ? dash() : v);
  const badge = (text, kind, props) => h('span', Object.assign({ class: 'badge' + (kind ? ' ' + kind : '') }, props || {}), text);

  /* token */

  function getToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }

  function setToken(t) {
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage unavailable: the token lives as long as the call */ }
    signoutBtn.hidden = !getToken();
  }

  let tokenWait = null;      // {promise, resolve, reject} while the dialog asks
  let tokenDismissed = false; // the user closed the dialog: do not pop it up again by itself

  function askToken(refused) {
    if (!tokenWait) {
      let resolve, reject;
      const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
      promise.catch(() => {});
      tokenWait = { promise, resolve, reject };
      tokenInput.value = '';
      showTokenError(refused ? 'The admin token was refused.' : '');
      if (!tokenDlg.open) tokenDlg.showModal();
      tokenInput.focus();
    } else if (refused) {
      showTokenError('The admin token was refused.');
    }
    return tokenWait.promise;
  }

  function showTokenError(msg) {
    tokenErr.textContent = msg;
    tokenErr.hidden = !msg;
  }

  tokenForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const t = tokenInput.value.trim();
    if (!t) { showTokenError('Enter the admin token.'); tokenInput.focus(); return; }
    setToken(t);
    tokenDismissed = false;
    banner.auth = false;
    renderBanner();
    const w = tokenWait;
    tokenWait = null;
    tokenDlg.close('ok');
    if (w) w.resolve();
    else refreshNow();
  });

  $('token-cancel').addEventListener('click', () => tokenDlg.close('cancel'));

  tokenDlg.addEventListener('close', () => {
    if (tokenWait) {
      const w = tokenWait;
      tokenWait = null;
      tokenDismissed = true;
      banner.auth = true;
      renderBanner();
      w.reject(new ApiError(401, 'unauthorized', 'An admin token is needed.'));
    }
  });

  signoutBtn.addEventListener('click', () => {
    setToken('');
    tokenDismissed = false;
    notice('Signed out: this tab forgot the admin token.');
    refreshNow();
  });

  /* banner and notices */

  const banner = { net: false, auth: false, errors: new Map() };
  let bannerSig = '';

  function renderBanner() {
    let kind = '', msg = '', action = false;
    if (banner.net) { kind = 'warn'; msg = 'Cannot reach the gateway \u2014 retrying'; }
    else if (banner.errors.size) { kind = 'error'; msg = banner.errors.values().next().value; }
    else if (banner.auth) { kind = 'warn'; msg = 'An admin token is needed to use the console.'; action = true; }
    const sig = kind + '|' + msg + '|' + action;
    if (sig === bannerSig) return;
    bannerSig = sig;
    bannerEl.className = 'banner ' + kind;
    bannerEl.replaceChildren();
    if (msg) {
      bannerEl.append(h('span', { class: 'banner-msg' }, msg));
      if (action) {
        bannerEl.append(button('small', { onclick: () => askToken(false).then(refreshNow, () => {}) }, 'Enter token'));
      }
    }
    bannerEl.hidden = !msg;
  }

  function setNetDown(down) {
    if (banner.net !== down) { banner.net = down; renderBanner(); }
  }

  let noticeTimer = 0;
  function notice(msg, kind) {
    noticeEl.textContent = msg;
    noticeEl.className = 'notice' + (kind ? ' ' + kind : '');
    noticeEl.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { noticeEl.hidden = true; }, 4000);
  }

  /* API */

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // fetch + JSON (opts.body goes as JSON) + the error rules: 401 asks for the token and retries,
  // network failures and other errors go to the banner (except statuses the caller expects, e.g. 404).
  async function api(path, opts) {
    opts = opts || {};
    const method = opts.method || 'GET';
    const key = method + ' ' + path.split('?')[0];
    for (;;) {
      const token = getToken();
      const headers = { Accept: 'application/json' };
      if (token) headers.Authorization = 'Bearer ' + token;
      if (opts.body) headers['Content-Type'] = 'application/json';
      let res, text;
      try {
        res = await fetch(path, { method, headers, body: opts.body && JSON.stringify(opts.body), cache: 'no-store', credentials: 'same-origin' });
        text = res.status === 204 ? '' : await res.text();
      } catch (e) {
        setNetDown(true);
        throw new ApiError(0, 'network', 'Cannot reach the gateway');
      }
      setNetDown(false);
      noteClock(res);
      if (res.status === 401) {
        const now = getToken();
        if (now && now !== token) continue; // a new token arrived meanwhile
        if (token) setToken('');
        if (tokenDismissed && !tokenWait) {
          banner.auth = true;
          renderBanner();
          throw new ApiError(401, 'unauthorized', 'An admin token is needed.');
        }
        await askToken(!!token);
        continue;
      }
      if (banner.auth) { banner.auth = false; renderBanner(); }
      let body = null;
      if (text) { try { body = JSON.parse(text); } catch (e) { body = null; } }
      if (res.ok) {
        if (banner.errors.delete(key)) renderBanner();
        return body;
      }
      const code = (body && body.code) || 'http_' + res.status;
      const message = (body && body.message) || res.status + ' ' + (res.statusText || 'error') + ' from ' + path.split('?')[0];
      if ((opts.expect || []).includes(res.status)) {
        if (banner.errors.delete(key)) renderBanner();
      } else {
        banner.errors.set(key, message);
        renderBanner();
      }
      throw new ApiError(res.status, code, message);
    }
  }

  /* router and refresh loops */

  let gen = 0;
  let ctx = null;

  function parseRoute() {
    const raw = location.hash.replace(/^#\/?/, '');
    const qi = raw.indexOf('?');
    const path = qi < 0 ? raw : raw.slice(0, qi);
    const params = new URLSearchParams(qi < 0 ? '' : raw.slice(qi + 1));
    let parts;
    try { parts = path.split('/').filter(Boolean).map(decodeURIComponent); } catch (e) { return null; }
    if (!parts.length) return { view: 'agents', params };
    if (parts[0] === 'sessions' && parts.length > 1) return { view: 'session', id: parts.slice(1).join('/'), params };
    if (parts[0] === 'clients' && parts.length > 1) return { view: 'client', name: parts.slice(1).join('/'), params };
    if (parts[0] === 'audit' && parts.length > 1) return { view: 'call', id: parts.slice(1).join('/'), params };
    if (parts.length === 1 && VIEWS[parts[0]]) return { view: parts[0], params };
    return null;
  }

  function route() {
    const r = parseRoute();
    if (!r) { location.replace('#/agents'); return; }
    if (ctx) ctx.stop();
    gen++;
    const my = gen;
    const loops = [];
    const cleanups = [];
    ctx = {
      route: r,
      loops,
      loaded: false,
      alive: () => my === gen,
      stop() { loops.forEach((l) => l.stop()); cleanups.forEach((f) => f()); },
      onCleanup(f) { cleanups.push(f); },
      markLoaded() {
        if (my !== gen) return;
        this.loaded = true;
        setAttr(viewEl, 'data-view', r.view);
      },
    };
    viewEl.removeAttribute('data-view');
    viewEl.replaceChildren();
    banner.errors.clear();
    renderBanner();
    const navName = r.view === 'session' ? 'sessions' : r.view === 'client' ? 'clients' : r.view === 'call' ? 'audit' : r.view;
    for (const a of document.querySelectorAll('[data-nav]')) {
      if (a.getAttribute('data-nav') === navName) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    document.title = TITLES[r.view] + ' \u00b7 Switchboard';
    VIEWS[r.view](r, ctx);
  }

  // A refresh loop: runs fn now and every ms after it finishes; skips while a dialog is open
  // or the tab is hidden; stops with the view.
  function startLoop(c, fn, ms, onError) {
    let timer = 0, running = false, again = false, stopped = false;
    async function tick() {
      clearTimeout(timer);
      timer = 0;
      if (stopped || !c.alive()) return;
      if (running) { again = true; return; }
      if (confirmDlg.open || tokenDlg.open || document.hidden) { timer = setTimeout(tick, 500); return; }
      running = true;
      try { await fn(); } catch (e) { if (!stopped && c.alive() && onError) onError(e); }
      running = false;
      if (stopped || !c.alive()) return;
      if (again) { again = false; tick(); return; }
      timer = setTimeout(tick, ms);
    }
    const loop = { now: tick, stop() { stopped = true; clearTimeout(timer); } };
    c.loops.push(loop);
    tick();
    return loop;
  }

  function refreshNow() {
    if (ctx) ctx.loops.forEach((l) => l.now());
  }

  // What a view says before its first load when a call fails.
  function loadFailed(statusEl, c) {
    return (e) => {
      if (c.loaded) return;
      let msg;
      if (e instanceof ApiError) {
        if (e.status === 401) msg = 'Sign in with the admin token to see this page.';
        else if (e.status === 0) msg = 'Waiting for the gateway\u2026';
        else msg = 'Could not load this page: ' + e.message;
      } else {
        msg = 'Could not show this page: ' + (e && e.message ? e.message : String(e));
      }
      statusEl.hidden = false;
      setText(statusEl, msg);
    };
  }

  function pageHead(title, sub, actions) {
    return h('div', { class: 'page-head' },
      h('div', { class: 'titles' }, h('h1', null, title), sub || null),
      actions ? h('div', { class: 'page-actions' }, actions) : null);
  }

  const loadingEl = (what) => h('p', { class: 'loading', role: 'status' }, 'Loading ' + what + '\u2026');

  // Keyed table rows: create the missing ones, update all, drop the gone, keep order.
  function syncRows(tbody, items, keyOf, create, update) {
    const existing = new Map();
    for (const tr of tbody.children) existing.set(tr._key, tr);
    let i = 0;
    for (const it of items) {
      const k = keyOf(it);
      let tr = existing.get(k);
      if (tr) existing.delete(k);
      else { tr = create(it); tr._key = k; }
      update(tr, it);
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
      i++;
    }
    for (const tr of existing.values()) tr.remove();
  }

  function table(cls, headRow) {
    const tbody = h('tbody');
    const t = h('table', { class: 'table ' + (cls || '') }, h('thead', null, headRow), tbody);
    return { wrap: h('div', { class: 'table-wrap' }, t), table: t, tbody };
  }

  /* copy */

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      try { await navigator.clipboard.writeText(text); return true; } catch (e) { /* fall back */ }
    }
    const ta = h('textarea', { class: 'offscreen', readonly: true, 'aria-hidden': 'true', tabindex: '-1' });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
    ta.remove();
    return ok;
  }

  function copyButton(label, getText, targetEl) {
    const btn = button('small copy', { 'aria-label': 'Copy ' + label }, 'Copy');
    let timer = 0;
    btn.addEventListener('click', async () => {
      const ok = await copyText(getText());
      btn.focus();
      clearTimeout(timer);
      if (ok) {
        btn.textContent = 'Copied';
        btn.classList.add('copied');
      } else {
        btn.textContent = 'Press Ctrl+C';
        const range = document.createRange();
        range.selectNodeContents(targetEl);
        const sel = getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
      }
      timer = setTimeout(() => { btn.textContent = 'Copy'; btn.classList.remove('copied'); }, 1600);
    });
    return btn;
  }

  /* dialogs */

  function confirmDialog(message, yesLabel) {
    return new Promise((resolve) => {
      confirmText.textContent = message;
      confirmYes.textContent = yesLabel;
      confirmDlg.returnValue = '';
      const onClose = () => {
        confirmDlg.removeEventListener('close', onClose);
        const yes = confirmDlg.returnValue === 'yes';
        resolve(yes);
      };
      confirmDlg.addEventListener('close', onClose);
      confirmDlg.showModal();
      confirmNo.focus();
    });
  }

  confirmYes.addEventListener('click', () => confirmDlg.close('yes'));
  confirmNo.addEventListener('click', () => confirmDlg.close('no'));
  for (const dlg of [confirmDlg, tokenDlg]) {
    // A click on the backdrop (the dialog box itself, outside its body) cancels.
    dlg.addEventListener('click', (e) => { if (e.target === dlg) dlg.close('cancel'); });
  }

  const endingIds = new Set();

  // Confirm, then DELETE. Resolves 'ended', 'gone' (it had already ended) or null.
  async function endSession(s) {
    const yes = await confirmDialog('End session ' + shortId(s.id) + ' of ' + s.agent +
      '? Its stream closes and its running calls are cancelled.', 'End session');
    if (!yes) { refreshNow(); return null; }
    endingIds.add(s.id);
    try {
      await api('/admin/sessions/' + encodeURIComponent(s.id), { method: 'DELETE', expect: [404] });
      notice('Session ' + shortId(s.id) + ' of ' + s.agent + ' ended.');
      return 'ended';
    } catch (e) {
      if (e.status === 404) {
        notice('Session ' + shortId(s.id) + ' had already ended.');
        return 'gone';
      }
      endingIds.delete(s.id);
      notice('Could not end session ' + shortId(s.id) + ': ' + e.message, 'error');
      return null;
    } finally {
      setTimeout(() => endingIds.delete(s.id), 10000);
    }
  }

  /* view: agents */

  function viewAgents(r, c) {
    const status = loadingEl('agents');
    const countEl = h('p', { class: 'sub' });
    const reloadBtn = button('', { 'data-testid': 'reload' }, 'Reload agents');
    const reloadResult = h('div', { class: 'reload-result', 'data-testid': 'reload-result', role: 'status', hidden: true });
    const fileErrs = h('section', { class: 'panel danger-panel file-errors', 'aria-labelledby': 'file-errors-title', hidden: true });
    const grid = h('div', { class: 'agent-grid' });
    viewEl.append(pageHead('Agents', countEl, reloadBtn), reloadResult, fileErrs, status, grid);

    let sig = '';
    let live = new Map();
    let busy = false;

    reloadBtn.addEventListener('click', async () => {
      if (busy) return;
      busy = true;
      reloadBtn.setAttribute('aria-busy', 'true');
      reloadBtn.textContent = 'Reloading\u2026';
      try {
        const res = await api('/admin/reload', { method: 'POST' });
        showReload(res);
        loop.now();
      } catch (e) {
        reloadResult.hidden = false;
        reloadResult.className = 'reload-result panel danger-panel';
        reloadResult.replaceChildren(h('strong', null, 'Reload failed: '), e.message);
      } finally {
        busy = false;
        reloadBtn.removeAttribute('aria-busy');
        reloadBtn.textContent = 'Reload agents';
      }
    });

    function showReload(res) {
      const parts = [];
      const group = (label, names, kind) => {
        if (names && names.length) parts.push(h('span', { class: 'reload-group' }, badge(label, kind), ' ', names.join(', ')));
      };
      group('added', res.added, 'ok');
      group('changed', res.changed, 'info');
      group('removed', res.removed, 'warn');
      if (res.policies_changed) group('rules', ['[[policies]] reloaded'], 'info');
      group('restart needed', res.restart_needed, 'warn');
      const errors = (res.errors || []).concat((res.warnings || []).map((w) => 'warning: ' + w));
      reloadResult.className = 'reload-result panel' + (errors.length ? ' danger-panel' : '');
      fill(reloadResult,
        h('div', { class: 'reload-line' },
          h('strong', null, 'Reloaded at ' + clock(new Date()) + ': '),
          parts.length ? parts : 'no changes.',
          (res.unchanged || []).length ? muted(plural(res.unchanged.length, 'agent') + ' unchanged') : null),
        errors.length ? h('ul', { class: 'error-list' }, errors.map((e) => h('li', { class: 'load-error' }, e))) : null);
      reloadResult.hidden = false;
    }

    function card(a) {
      const sseUrl = absUrl(a.urls.sse), mcpUrl = absUrl(a.urls.mcp);
      const urlRow = (label, testid, url) => {
        const code = h('code', { class: 'url', 'data-testid': testid }, url);
        return [h('dt', null, label), h('dd', { class: 'url-row' }, code, copyButton(label + ' URL of ' + a.name, () => url, code))];
      };
      const exposed = [];
      if (a.expose_agent) exposed.push(h('span', { class: 'chip agent-tool', title: 'The agent tool: takes a task and runs the agent\u2019s model' }, a.name));
      if (a.expose_tools) for (const t of a.tools) exposed.push(h('span', { class: 'chip', title: t.description || t.name }, t.name));
      const fed = a.federation;
      if (fed) for (const t of fed.tools) exposed.push(h('span', { class: 'chip', 'data-testid': 'federated-tool', title: t.description || t.name }, t.name));
      const servers = fed
        ? [h('dt', null, 'Federated servers'), h('dd', { class: 'chips' }, fed.servers.map((s) => h('span', { class: 'chip', 'data-testid': 'federated-server', title: 'prefix: ' + (s.prefix || '(none)') }, s.upstream)),
            fed.tools.length ? null : faint('tools listed once a session lists them'))]
        : null;
      const inner = !a.expose_tools && a.tools.length
        ? [h('dt', null, 'Inner tools'), h('dd', { class: 'chips' }, a.tools.map((t) => h('span', { class: 'chip muted-chip', title: t.description || t.name }, t.name)), faint('model only'))]
        : null;
      const model = a.model
        ? [h('span', null, a.model.provider + ' \u00b7 ', h('strong', null, a.model.model)), ' ',
            a.model.api_key_set ? badge('API key set', 'ok') : badge('no API key', 'warn')]
        : muted(a.workflow ? 'none: a workflow runs its steps' : 'none');
      // A workflow's steps in order (sequential: each on the last one's output), what each
      // runs in its title, and how a concurrent one merges or how far a handoff may go.
      const wf = a.workflow;
      const stepChip = (st) => h('span', {
        class: 'chip', 'data-testid': 'workflow-step', 'data-step': st.name,
        title: (st.agent ? 'runs agent ' + st.agent : 'calls tool ' + st.tool)
          + (st.on_error === 'continue' ? '; the workflow goes on if it fails' : '')
          + (st.handoffs && st.handoffs.length ? '; may hand off to ' + st.handoffs.join(', ') : ''),
      }, st.name);
      const workflow = wf
        ? [h('dt', null, 'Workflow'), h('dd', { class: 'chips', 'data-testid': 'workflow', 'data-kind': wf.kind },
            h('strong', null, wf.kind), ' ',
            wf.steps.map((st, i) => [i > 0 && wf.kind === 'sequential' ? faint('\u2192') : null, stepChip(st)]),
            wf.aggregator ? [faint('merged by'), stepChip(wf.aggregator)] : null,
            wf.max_handoffs != null ? faint('at most ' + wf.max_handoffs + ' handoffs') : null)]
        : null;
      const sessLink = h('a', { href: '#/sessions?agent=' + encodeURIComponent(a.name) });
      const sessDetail = muted();
      const calls = h('strong', { class: 'num' });
      const errRate = h('strong', { class: 'num' });
      const lat = muted();
      const el = h('article', { class: 'card agent' + (a.load_errors.length ? ' has-errors' : ''), 'data-testid': 'agent', 'data-agent': a.name },
        h('header', { class: 'card-head' },
          h('h2', { class: 'agent-name' }, a.name),
          h('span', { class: 'file', title: 'Agent file' }, a.file)),
        h('p', { class: 'desc' }, a.description || muted('No description.')),
        h('dl', { class: 'facts urls' }, urlRow('Streamable HTTP', 'url-mcp', mcpUrl), urlRow('Legacy SSE', 'url-sse', sseUrl)),
        h('dl', { class: 'facts' },
          h('dt', null, 'MCP tools'),
          h('dd', { class: 'chips' }, exposed.length ? exposed : muted('none exposed')),
          inner,
          servers,
          workflow,
          h('dt', null, 'Model'), h('dd', null, model),
          h('dt', null, 'Sessions'), h('dd', null, sessLink, ' ', sessDetail),
          h('dt', null, 'Last minute'), h('dd', null, calls, ' calls/min \u00b7 error rate ', errRate, ' ', lat)),
        a.load_errors.length
          ? h('div', { class: 'agent-errors' },
              h('h3', null, 'Load errors'),
              h('p', { class: 'small' }, 'The file has problems: the last good version keeps serving.'),
              h('ul', { class: 'error-list' }, a.load_errors.map((e) => h('li', { class: 'load-error', 'data-testid': 'load-error' }, e))))
          : null);
      live.set(a.name, { sessLink, sessDetail, calls, errRate, lat });
      return el;
    }

    function renderFileErrors(list) {
      fileErrs.hidden = !list.length;
      if (!list.length) { fileErrs.replaceChildren(); return; }
      fill(fileErrs,
        h('h2', { id: 'file-errors-title' }, 'Files with problems'),
        list.map((f) => h('div', { class: 'file-error', 'data-testid': 'file-error', 'data-file': f.file },
          h('div', { class: 'file-error-head' },
            h('code', null, f.file), ' ',
            f.serving_previous_version ? badge('previous version keeps serving', 'warn') : badge('not served until fixed', 'err')),
          h('ul', { class: 'error-list' }, f.errors.map((e) => h('li', { class: 'load-error', 'data-testid': 'load-error' }, e))))));
    }

    const loop = startLoop(c, async () => {
      const [agents, loadErrors, traffic] = await Promise.all([
        api('/admin/agents'),
        api('/admin/load-errors', { expect: [404] }).catch((e) => { if (e.status === 404) return []; throw e; }),
        api('/admin/traffic', { expect: [404] }).catch(() => null),
      ]);
      if (!c.alive()) return;
      const s = JSON.stringify([agents.map((a) => Object.assign({}, a, { sessions: null })), loadErrors]);
      if (s !== sig) {
        sig = s;
        live = new Map();
        renderFileErrors(loadErrors);
        grid.replaceChildren(...agents.map(card));
        if (!agents.length) {
          grid.append(h('div', { class: 'empty' }, 'No agents are loaded. Add a file to the agents directory (see the README, \u201cAdd an agent\u201d).'));
        }
      }
      setText(countEl, plural(agents.length, 'agent') + ' served from this gateway at ' + ORIGIN);
      const byAgent = new Map(((traffic && traffic.agents) || []).map((t) => [t.agent, t.last_minute]));
      for (const a of agents) {
        const l = live.get(a.name);
        if (!l) continue;
        setText(l.sessLink, plural(a.sessions.total, 'live session'));
        setText(l.sessDetail, '(' + num(a.sessions.sse) + ' SSE \u00b7 ' + num(a.sessions.streamable_http) + ' Streamable HTTP)');
        const lm = byAgent.get(a.name);
        setText(l.calls, lm ? num(lm.calls) : '\u2014');
        setText(l.errRate, lm ? pct(lm.errors, lm.calls) : '\u2014');
        l.errRate.classList.toggle('bad', !!(lm && lm.errors));
        setText(l.lat, lm && lm.p50_ms != null ? '\u00b7 p50 ' + fmtMs(lm.p50_ms) + ' \u00b7 p99 ' + fmtMs(lm.p99_ms) : '');
      }
      status.hidden = true;
      c.markLoaded();
    }, REFRESH_MS.agents, loadFailed(status, c));
  }

  /* view: sessions */

  const SESSION_COLS = [
    { key: 'id', label: 'Session', get: (s) => s.id },
    { key: 'agent', label: 'Agent', get: (s) => s.agent },
    { key: 'transport', label: 'Transport', get: (s) => s.transport },
    { key: 'client', label: 'Client', get: (s) => s.client || '' },
    { key: 'ip', label: 'IP', get: (s) => s.client_ip || '' },
    { key: 'mcp', label: 'MCP client', get: (s) => ((s.mcp_client_name || '') + ' ' + (s.mcp_client_version || '')).trim() },
    { key: 'protocol', label: 'Protocol', get: (s) => s.protocol_version || '' },
    { key: 'age', label: 'Age', num: true, get: (s) => s.age_secs },
    { key: 'active', label: 'Last activity', num: true, get: (s) => -s.idle_secs },
    { key: 'requests', label: 'Requests', num: true, get: (s) => s.requests },
    { key: 'errors', label: 'Errors', num: true, get: (s) => s.errors },
    { key: 'inflight', label: 'In flight', num: true, get: (s) => s.calls_in_flight },
  ];
  const sessionSort = { key: 'age', dir: 'desc' };
  const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });

  function viewSessions(r, c) {
    const f = {
      agent: r.params.get('agent') || '',
      client: r.params.get('client') || '',
      transport: r.params.get('transport') || '',
    };
    let agentNames = null;
    const clientNames = new Set();
    let lastTotal = 0;
    let lastShown = 0;
    let tick = 0;

    const status = loadingEl('sessions');
    const count = h('span', { class: 'count', 'data-testid': 'session-count' });
    const capped = faint();
    const agentSel = h('select', { id: 'f-agent' });
    const clientSel = h('select', { id: 'f-client' });
    const transportSel = h('select', { id: 'f-transport' },
      h('option', { value: '' }, 'All transports'),
      h('option', { value: 'streamable_http' }, TRANSPORTS.streamable_http),
      h('option', { value: 'sse' }, TRANSPORTS.sse));
    transportSel.value = f.transport;
    const clearBtn = button('small', { hidden: true }, 'Clear filters');
    const filters = h('div', { class: 'filters', role: 'search', 'aria-label': 'Filter sessions' },
      h('label', { class: 'filter' }, h('span', null, 'Agent'), agentSel),
      h('label', { class: 'filter' }, h('span', null, 'Client'), clientSel),
      h('label', { class: 'filter' }, h('span', null, 'Transport'), transportSel),
      clearBtn);

    const sortBtns = new Map();
    const headRow = h('tr', null, SESSION_COLS.map((col) => {
      const ind = h('span', { class: 'sort-ind', 'aria-hidden': 'true' });
      const btn = h('button', { type: 'button', class: 'sort' }, col.label, ind);
      const th = h('th', { scope: 'col', class: col.num ? 'num' : null }, btn);
      btn.addEventListener('click', () => {
        if (sessionSort.key === col.key) sessionSort.dir = sessionSort.dir === 'asc' ? 'desc' : 'asc';
        else { sessionSort.key = col.key; sessionSort.dir = col.num ? 'desc' : 'asc'; }
        paintSort();
        if (lastPage) render(lastPage);
      });
      sortBtns.set(col.key, { th, ind, btn, col });
      return th;
    }), h('th', { scope: 'col', class: 'actions-col' }, h('span', { class: 'visually-hidden' }, 'Actions')));
    const t = table('sessions-table', headRow);
    const emptyHost = h('div');
    viewEl.append(
      pageHead('Sessions', h('p', { class: 'sub' }, count, ' ', capped), null),
      filters, status, t.wrap, emptyHost);
    t.wrap.hidden = true;

    function paintSort() {
      for (const [key, s] of sortBtns) {
        const on = key === sessionSort.key;
        if (on) s.th.setAttribute('aria-sort', sessionSort.dir === 'asc' ? 'ascending' : 'descending');
        else s.th.removeAttribute('aria-sort');
        s.ind.textContent = on ? (sessionSort.dir === 'asc' ? '\u25b2' : '\u25bc') : '';
        s.btn.setAttribute('aria-label', s.col.label + (on ? ', sorted ' + (sessionSort.dir === 'asc' ? 'ascending' : 'descending') : ', sort'));
      }
    }
    paintSort();

    function fillSelect(sel, allLabel, values, current) {
      const want = [''].concat(values);
      if (current && !want.includes(current)) want.push(current);
      const have = Array.from(sel.options).map((o) => o.value);
      if (have.length !== want.length || have.join('\n') !== want.join('\n')) {
        sel.replaceChildren(...want.map((v) => h('option', { value: v }, v || allLabel)));
      }
      if (sel.value !== current) sel.value = current;
    }

    function paintFilters() {
      fillSelect(agentSel, 'All agents', agentNames || [], f.agent);
      fillSelect(clientSel, clientNames.size ? 'All clients' : 'All clients (open access)', Array.from(clientNames).sort(collator.compare), f.client);
      if (transportSel.value !== f.transport) transportSel.value = f.transport;
      clearBtn.hidden = !(f.agent || f.client || f.transport);
    }

    function setFilters(next) {
      Object.assign(f, next);
      const q = new URLSearchParams();
      if (f.agent) q.set('agent', f.agent);
      if (f.client) q.set('client', f.client);
      if (f.transport) q.set('transport', f.transport);
      const qs = q.toString();
      history.replaceState(null, '', '#/sessions' + (qs ? '?' + qs : ''));
      paintFilters();
      loop.now();
    }

    agentSel.addEventListener('change', () => setFilters({ agent: agentSel.value }));
    clientSel.addEventListener('change', () => setFilters({ client: clientSel.value }));
    transportSel.addEventListener('change', () => setFilters({ transport: transportSel.value }));
    clearBtn.addEventListener('click', () => { setFilters({ agent: '', client: '', transport: '' }); agentSel.focus(); });

    function createRow(s) {
      const tr = h('tr', { 'data-testid': 'session', 'data-session-id': s.id, 'data-agent': s.agent, 'data-transport': s.transport });
      tr._cells = SESSION_COLS.map((col) => h('td', { class: col.num ? 'num' : null }));
      const endBtn = button('small danger-outline', { 'data-testid': 'end-session', 'aria-label': 'End session ' + shortId(s.id) + ' of ' + s.agent }, 'End session');
      endBtn.addEventListener('click', async () => {
        const res = await endSession(s);
        if (res) removeRow(tr);
      });
      tr.append(...tr._cells, h('td', { class: 'actions-col' }, endBtn));
      return tr;
    }

    function removeRow(tr) {
      if (!tr.isConnected) return;
      const next = tr.nextElementSibling || tr.previousElementSibling;
      const hadFocus = tr.contains(document.activeElement) || document.activeElement === document.body;
      tr.remove();
      lastTotal = Math.max(0, lastTotal - 1);
      lastShown = Math.max(0, lastShown - 1);
      paintCount();
      if (!t.tbody.children.length) paintEmpty(0);
      if (hadFocus) {
        const btn = next && next.querySelector('[data-testid="end-session"]');
        if (btn) btn.focus();
        else viewEl.focus();
      }
    }

    function updateRow(tr, s) {
      const [cId, cAgent, cTransport, cClient, cIp, cMcp, cProto, cAge, cActive, cReq, cErr, cFlight] = tr._cells;
      patch(cId,
        h('a', { href: '#/sessions/' + encodeURIComponent(s.id), class: 'mono', title: s.id }, shortId(s.id)),
        s.node ? h('span', { class: 'muted', title: 'Cluster mode: the replica serving it' }, ' @ ' + s.node) : null,
        s.parked ? [' ', badge('parked', null, { title: 'Idle: its engine is parked and restarts on its next request' })] : null);
      patch(cAgent, s.agent);
      patch(cTransport, badge(TRANSPORTS[s.transport] || s.transport, s.transport === 'sse' ? 'sse' : 'http'));
      patch(cClient, orDash(s.client));
      patch(cIp, s.client_ip ? h('span', { class: 'mono' }, s.client_ip) : dash());
      patch(cMcp, s.mcp_client_name
        ? h('span', { title: s.user_agent || '' }, s.mcp_client_name, s.mcp_client_version ? muted(' ' + s.mcp_client_version) : null)
        : (s.user_agent ? h('span', { class: 'muted', title: s.user_agent }, 'not initialized') : dash()));
      patch(cProto, orDash(s.protocol_version));
      patch(cAge, timeEl(s.created_at, fmtDur(s.age_secs)));
      patch(cActive, timeEl(s.last_active_at, fmtAgo(s.idle_secs)));
      patch(cReq, num(s.requests));
      patch(cErr, s.errors ? h('span', { class: 'bad' }, num(s.errors)) : '0');
      patch(cFlight, s.calls_in_flight ? h('strong', { class: 'busy' }, num(s.calls_in_flight)) : '0');
    }

    function paintCount() {
      setText(count, plural(lastTotal, 'live session'));
      setText(capped, lastTotal > lastShown ? '(showing the first ' + num(lastShown) + ')' : '');
    }

    function paintEmpty(n) {
      if (n) { emptyHost.replaceChildren(); t.wrap.hidden = false; return; }
      t.wrap.hidden = true;
      let content;
      if (f.agent || f.client || f.transport) {
        content = [h('p', null, 'Nothing to show: no sessions match the filters.'),
          button('small', { onclick: () => setFilters({ agent: '', client: '', transport: '' }) }, 'Clear filters')];
      } else if (agentNames && agentNames.length) {
        const base = ORIGIN + '/agents/' + encodeURIComponent(agentNames[0]);
        content = h('p', null, 'No live sessions: connect a client to ', h('code', null, base + '/sse'), ' (or ', h('code', null, base + '/mcp'), ').');
      } else {
        content = h('p', null, 'No live sessions: connect a client to ' + ORIGIN + '/agents/<agent>/sse (or /mcp).');
      }
      const el = h('div', { class: 'empty', 'data-testid': 'empty' }, content);
      patch(emptyHost, el);
    }

    let lastPage = null;
    function render(page) {
      const items = page.sessions.filter((s) => !endingIds.has(s.id));
      const col = SESSION_COLS.find((x) => x.key === sessionSort.key) || SESSION_COLS[7];
      const dir = sessionSort.dir === 'asc' ? 1 : -1;
      const order = new Map(items.map((s, i) => [s.id, i]));
      items.sort((a, b) => {
        const va = col.get(a), vb = col.get(b);
        const d = col.num ? va - vb : collator.compare(va, vb);
        return d ? d * dir : order.get(a.id) - order.get(b.id);
      });
      lastTotal = page.total - (page.sessions.length - items.length);
      lastShown = items.length;
      syncRows(t.tbody, items, (s) => s.id, createRow, updateRow);
      paintCount();
      paintEmpty(items.length);
    }

    const loop = startLoop(c, async () => {
      const q = new URLSearchParams();
      if (f.agent) q.set('agent', f.agent);
      if (f.client) q.set('client', f.client);
      if (f.transport) q.set('transport', f.transport);
      q.set('offset', '0');
      q.set('limit', '1000');
      const needLists = !agentNames || tick % 15 === 0;
      tick++;
      const [page, agents, clients] = await Promise.all([
        api('/admin/sessions?' + q.toString()),
        needLists ? api('/admin/agents').catch(() => null) : null,
        needLists ? api('/admin/clients', { expect: [404] }).catch(() => null) : null,
      ]);
      if (!c.alive()) return;
      if (agents) agentNames = agents.map((a) => a.name);
      if (clients && clients.clients) clients.clients.forEach((x) => clientNames.add(x.name));
      page.sessions.forEach((s) => { if (s.client) clientNames.add(s.client); });
      paintFilters();
      lastPage = page;
      render(page);
      status.hidden = true;
      c.markLoaded();
    }, REFRESH_MS.sessions, loadFailed(status, c));
  }

  /* view: one session */

  function viewSession(r, c) {
    const id = r.id;
    const status = loadingEl('the session');
    const endBtn = button('danger-outline', { 'data-testid': 'end-session', hidden: true }, 'End session');
    const back = h('a', { class: 'back', href: '#/sessions' }, '\u2190 All sessions');
    const sub = h('p', { class: 'sub' }, h('code', { class: 'mono wrap' }, id));
    const body = h('div', { class: 'session-detail' });
    viewEl.append(back, pageHead(h('span', null, 'Session ', h('span', { class: 'mono' }, shortId(id))), sub, endBtn), status, body);
    let current = null;
    let ended = false;

    function showEnded() {
      ended = true;
      endBtn.hidden = true;
      status.hidden = true;
      body.replaceChildren(h('div', { class: 'empty ended' },
        h('p', null, h('strong', null, 'This session has ended.')),
        h('p', null, h('a', { href: '#/sessions' }, 'Back to the live sessions'))));
      loop.stop();
      c.markLoaded();
    }

    endBtn.addEventListener('click', async () => {
      if (!current) return;
      const res = await endSession(current);
      if (res) showEnded();
    });

    const field = (label, value) => [h('dt', null, label), h('dd', null, value)];

    function render(s) {
      current = s;
      endBtn.hidden = false;
      const mcp = s.mcp_client_name ? s.mcp_client_name + (s.mcp_client_version ? ' ' + s.mcp_client_version : '') : null;
      const facts = h('dl', { class: 'facts detail-grid' },
        field('Agent', h('a', { href: '#/sessions?agent=' + encodeURIComponent(s.agent) }, s.agent)),
        field('Transport', badge(TRANSPORTS[s.transport] || s.transport, s.transport === 'sse' ? 'sse' : 'http')),
        s.node ? field('Replica', h('span', { class: 'mono' }, s.node)) : null,
        field('Client', s.client ? h('a', { href: '#/sessions?client=' + encodeURIComponent(s.client) }, s.client) : muted('none (open access)')),
        field('Client IP', s.client_ip ? h('span', { class: 'mono' }, s.client_ip) : dash()),
        field('User agent', orDash(s.user_agent)),
        field('MCP client', orDash(mcp)),
        field('Protocol version', orDash(s.protocol_version)),
        field('Started', [timeEl(s.created_at, fmtAgo(s.age_secs)), muted(' \u00b7 age ' + fmtDur(s.age_secs))]),
        field('Last activity', [timeEl(s.last_active_at, fmtAgo(s.idle_secs)), muted(' \u00b7 idle ' + fmtDur(s.idle_secs))]),
        field('Requests', num(s.requests)),
        field('Errors', s.errors ? h('span', { class: 'bad' }, num(s.errors)) : '0'),
        field('Calls in flight', num(s.calls_in_flight)),
        field('LLM tokens', num(s.llm_prompt_tokens) + ' prompt \u00b7 ' + num(s.llm_completion_tokens) + ' completion'),
        field('State', s.parked
          ? [badge('parked'), muted(' idle: its engine restarts on its next request')]
          : badge('active', 'ok')));
      const calls = (s.recent_calls || []).slice().reverse();
      const outcomeKind = { ok: 'ok', error: 'err', invalid_arguments: 'warn', cancelled: null };
      let callsEl;
      if (!calls.length) {
        callsEl = h('p', { class: 'empty small-empty' }, 'No tool calls yet.');
      } else {
        const traced = calls.some((call) => call.trace_id);
        const tb = table('calls-table', h('tr', null,
          h('th', { scope: 'col' }, 'Tool'), h('th', { scope: 'col' }, 'Outcome'),
          h('th', { scope: 'col', class: 'num' }, 'Duration'), h('th', { scope: 'col' }, 'When'),
          traced ? h('th', { scope: 'col' }, 'Trace') : null));
        // [telemetry]: the call's trace, linked to the tracing backend when trace_url is set.
        const traceCell = (call) => !call.trace_id ? muted('\u2014')
          : call.trace_url ? h('a', { href: call.trace_url, class: 'mono', target: '_blank', rel: 'noopener', 'data-testid': 'trace-link', title: call.trace_id }, shortId(call.trace_id))
            : h('span', { class: 'mono', title: call.trace_id }, shortId(call.trace_id));
        for (const call of calls) {
          tb.tbody.append(h('tr', null,
            h('td', null, h('code', null, call.tool)),
            h('td', null, badge(call.outcome.replace(/_/g, ' '), outcomeKind[call.outcome])),
            h('td', { class: 'num' }, fmtMs(call.duration_ms)),
            h('td', null, timeEl(call.finished_at, fmtAgo(secsSince(call.finished_at)))),
            traced ? h('td', null, traceCell(call)) : null));
        }
        callsEl = tb.wrap;
      }
      patch(body,
        h('section', { class: 'panel' }, facts),
        h('section', { class: 'panel-plain' },
          h('h2', null, 'Recent calls ', faint('newest first, the last 20')),
          callsEl));
    }

    const loop = startLoop(c, async () => {
      if (ended) return;
      let s;
      try {
        s = await api('/admin/sessions/' + encodeURIComponent(id), { expect: [404] });
      } catch (e) {
        if (e.status === 404) { if (c.alive()) showEnded(); return; }
        throw e;
      }
      if (!c.alive() || ended) return;
      render(s);
      status.hidden = true;
      c.markLoaded();
    }, REFRESH_MS.session, loadFailed(status, c));
  }

  /* view: clients */

  function viewClients(r, c) {
    const status = loadingEl('clients');
    const access = h('section', { class: 'panel access' });
    const limitsEl = h('section', { class: 'panel-plain' });
    const alertEl = h('div');
    const clientsSec = h('section', { class: 'panel-plain' });
    const peersSec = h('section', { class: 'panel-plain' });
    const rulesSec = h('section', { class: 'panel-plain', 'data-testid': 'policies' });
    const spendSec = h('section', { class: 'panel-plain', 'data-testid': 'client-spend' });
    viewEl.append(pageHead('Clients', h('p', { class: 'sub' }, 'Who may use the MCP endpoints, their limits, what they used and which tools they may call.'), null),
      status, alertEl, access, limitsEl, clientsSec, spendSec, peersSec, rulesSec);

    const usageHead = () => [
      h('th', { scope: 'col', class: 'num' }, 'Live sessions'),
      h('th', { scope: 'col', class: 'num' }, 'Requests'),
      h('th', { scope: 'col', class: 'num' }, 'Last minute'),
      h('th', { scope: 'col', class: 'num' }, 'Agent runs'),
      h('th', { scope: 'col', class: 'num' }, '429s'),
      h('th', { scope: 'col', class: 'num' }, '429s last min'),
      h('th', { scope: 'col' }, 'Last 429'),
    ];

    const ct = table('clients-table', h('tr', null,
      h('th', { scope: 'col' }, 'Client'), h('th', { scope: 'col' }, 'Agents'), h('th', { scope: 'col' }, 'Limits'), usageHead()));
    const pt = table('clients-table', h('tr', null, h('th', { scope: 'col' }, 'IP address'), usageHead()));
    clientsSec.append(h('h2', null, 'Clients'), ct.wrap);
    peersSec.append(h('h2', null, 'Peers ', faint('recent client IP addresses, each with the default limits')), pt.wrap);
    const peersEmpty = h('p', { class: 'empty small-empty' }, 'No MCP client has connected recently.');
    peersSec.append(peersEmpty);

    function limitsText(l, d) {
      const part = (v, dv, text) => h('span', { class: v !== dv ? 'override' : null, title: v !== dv ? 'overrides the default ' + num(dv) : null }, text);
      return h('span', { class: 'limits' },
        part(l.requests_per_minute, d.requests_per_minute, num(l.requests_per_minute) + '/min'), ' \u00b7 ',
        part(l.burst, d.burst, 'burst ' + num(l.burst)), ' \u00b7 ',
        part(l.agent_runs_per_minute, d.agent_runs_per_minute, num(l.agent_runs_per_minute) + ' runs/min'), ' \u00b7 ',
        part(l.max_sessions, d.max_sessions, num(l.max_sessions) + ' sessions'));
    }

    function usageCells(tr, u, sessionsHref, maxSessions, offset) {
      const cells = tr._cells;
      patch(cells[offset], sessionsHref && u.sessions
        ? h('a', { href: sessionsHref }, num(u.sessions))
        : num(u.sessions), maxSessions != null ? muted(' / ' + num(maxSessions)) : null);
      patch(cells[offset + 1], num(u.requests));
      patch(cells[offset + 2], num(u.requests_last_minute));
      patch(cells[offset + 3], num(u.agent_runs));
      patch(cells[offset + 4], u.rate_limited ? h('span', { class: 'bad' }, num(u.rate_limited)) : '0');
      patch(cells[offset + 5], u.rate_limited_last_minute ? h('strong', { class: 'bad' }, num(u.rate_limited_last_minute)) : '0');
      patch(cells[offset + 6], u.last_rate_limited_at ? agoEl(u.last_rate_limited_at) : muted('never'));
    }

    function nameCell(td, name, u, mono) {
      const limited = u.rate_limited_last_minute > 0;
      patch(td, h('span', { class: 'client-name' + (mono ? ' mono' : '') }, name),
        limited ? [' ', h('span', { class: 'badge err strong', 'data-testid': 'rate-limited-now', title: num(u.rate_limited_last_minute) + ' requests refused with 429 in the last minute' }, 'rate-limited now')] : null);
    }

    const mkRow = (n, key) => (x) => {
      const tr = h('tr', { 'data-testid': 'client', 'data-client': key(x) });
      tr._cells = Array.from({ length: n }, (_, i) => h('td', { class: i >= n - 7 && i < n - 1 ? 'num' : n === 10 && i === 2 ? 'limits-cell' : null }));
      tr.append(...tr._cells);
      return tr;
    };

    const stat = (label, value, note) => h('div', { class: 'stat' }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value), note ? h('div', { class: 'stat-note' }, note) : null);

    startLoop(c, async () => {
      const [v, p, costs] = await Promise.all([api('/admin/clients'), api('/admin/policies', { expect: [404] }).catch(() => null),
        api('/admin/costs', { expect: [404] }).catch(() => null)]);
      if (!c.alive()) return;
      spendPanel(spendSec, costs, 'clients', 'Client', v.open ? null : clientHref);
      if (p) patch(rulesSec, h('h2', null, 'Policies ', faint(p.file ? 'from ' + p.file + ', loaded ' : 'since ', agoEl(p.loaded_at))), policiesPanel(p));
      const d = v.default_limits;
      patch(access, v.open
        ? [h('h2', null, badge('open access', 'warn'), ' No clients are configured'),
           h('p', null, 'Any MCP client may connect without a token. The default limits below apply to each client IP address. To hand out tokens, add ', h('code', null, '[[clients]]'), ' to ', h('code', null, 'switchboard.toml'), ' (or set ', h('code', null, 'MCP_SECRET_TOKEN'), ').')]
        : [h('h2', null, badge('token access', 'ok'), ' ' + plural(v.clients.length, 'client') + ' configured'),
           h('p', null, 'Every MCP request needs a client\u2019s bearer token: missing or unknown \u2192 401, an agent the client may not use \u2192 403, over a limit \u2192 429. Each client has its own limits; tokens are never shown.')]);
      patch(limitsEl,
        h('h2', null, 'Default limits ', faint(v.open ? 'per client IP' : 'for clients that do not override them')),
        h('div', { class: 'stats' },
          stat('Requests', num(d.requests_per_minute), 'per minute, sustained'),
          stat('Burst', num(d.burst), 'requests at once'),
          stat('Agent runs', num(d.agent_runs_per_minute), 'per minute'),
          stat('Sessions', num(d.max_sessions), 'at the same time')));

      const limited = v.clients.filter((x) => x.usage.rate_limited_last_minute > 0).map((x) => x.name)
        .concat(v.peers.filter((x) => x.usage.rate_limited_last_minute > 0).map((x) => x.ip));
      patch(alertEl, limited.length
        ? h('div', { class: 'panel danger-panel alert' }, h('strong', null, 'Being rate-limited now: '), limited.join(', '))
        : null);

      clientsSec.hidden = v.open && !v.clients.length;
      syncRows(ct.tbody, v.clients, (x) => x.name, mkRow(10, (x) => x.name), (tr, x) => {
        const limitedNow = x.usage.rate_limited_last_minute > 0;
        tr.classList.toggle('limited', limitedNow);
        nameCell(tr._cells[0], h('a', { href: clientHref(x.name) }, x.name), x.usage, false);
        patch(tr._cells[1], x.agents.includes('*')
          ? muted('all agents')
          : h('span', { class: 'chips' }, x.agents.map((a) => h('span', { class: 'chip' }, a))));
        patch(tr._cells[2], limitsText(x.limits, d));
        usageCells(tr, x.usage, '#/sessions?client=' + encodeURIComponent(x.name), x.limits.max_sessions, 3);
      });

      peersSec.hidden = !v.open;
      pt.wrap.hidden = !v.peers.length;
      peersEmpty.hidden = !!v.peers.length;
      syncRows(pt.tbody, v.peers, (x) => x.ip, mkRow(8, (x) => x.ip), (tr, x) => {
        tr.classList.toggle('limited', x.usage.rate_limited_last_minute > 0);
        nameCell(tr._cells[0], x.ip, x.usage, true);
        usageCells(tr, x.usage, null, d.max_sessions, 1);
      });
      status.hidden = true;
      c.markLoaded();
    }, REFRESH_MS.clients, loadFailed(status, c));
  }

  // [costs]: tokens and cost per client or agent (GET /admin/costs): the days' total, then
  // each day's, newest first.
  function spendPanel(sec, costs, key, label, href) {
    const rows = costs ? costs[key] : [];
    const one = key.slice(0, -1);
    const money = (v) => costs.currency + ' ' + (v < 0.01 && v > 0 ? v.toPrecision(2) : v.toFixed(2));
    const fields = ['prompt_tokens', 'completion_tokens', 'cost'];
    const cells = (x) => fields.map((f, i) => h('td', { class: 'num' }, i < 2 ? num(x[f]) : money(x[f])));
    patch(sec, h('h2', null, 'Spend ', faint('LLM tokens and their cost, the last ' + (costs ? costs.days : 7) + ' days (UTC)')),
      !rows.length ? h('p', { class: 'empty small-empty' }, 'No agent run has spent tokens yet.')
        : (() => {
          const t = table('spend-table', h('tr', null, h('th', { scope: 'col' }, label), h('th', { scope: 'col' }, 'Day'),
            h('th', { scope: 'col', class: 'num' }, 'Prompt tokens'), h('th', { scope: 'col', class: 'num' }, 'Completion tokens'),
            h('th', { scope: 'col', class: 'num' }, 'Cost')));
          for (const x of rows) {
            t.tbody.append(h('tr', { 'data-testid': 'spend', 'data-name': x.name },
              h('td', null, href ? h('a', { href: href(x.name) }, x.name) : x.name), h('td', null, faint('all')), ...cells(x)));
            const days = new Map();
            for (const r of costs.rows) {
              if (r[one] !== x.name) continue;
              const d = days.get(r.day) || { prompt_tokens: 0, completion_tokens: 0, cost: 0 };
              for (const f of fields) d[f] += r[f];
              days.set(r.day, d);
            }
            for (const [day, d] of [...days].reverse()) {
              t.tbody.append(h('tr', { 'data-testid': 'spend-day', 'data-name': x.name, 'data-day': day }, h('td'), h('td', null, day), ...cells(d)));
            }
          }
          return t.wrap;
        })());
  }

  const clientHref = (n) => '#/clients/' + encodeURIComponent(n);
  const chipList = (xs, link) => h('span', { class: 'chips' }, xs.map((x) => link ? h('a', { class: 'chip', href: clientHref(x) }, x) : h('span', { class: 'chip' }, x)));

  // The [[policies]] rules as a table; with the file's problems and pending keys above it.
  function rulesTable(rules) {
    const t = table('policies-table', h('tr', null, ['Rule', 'Effect', 'About', 'Tools'].map((x) => h('th', { scope: 'col' }, x))));
    const about = (r) => [['client', r.clients, true], ['subject', r.subjects], ['scope', r.scopes], ['group', r.groups]]
      .filter((a) => a[1].length).map((a) => h('div', null, faint(a[0] + ' '), chipList(a[1], a[2])));
    t.tbody.append(...rules.map((r) => h('tr', { 'data-testid': 'policy', 'data-policy': r.key },
      h('td', null, h('code', null, r.key), r.name ? [' ', h('strong', null, r.name)] : null),
      h('td', null, badge(r.effect, r.effect === 'allow' ? 'ok' : 'err')),
      h('td', null, about(r)),
      h('td', null, chipList(r.tools)))));
    return t.wrap;
  }

  function policiesPanel(p) {
    return [
      p.errors.length ? h('div', { class: 'panel danger-panel', 'data-testid': 'policies-errors' }, h('strong', null, 'switchboard.toml was not applied; these rules stay in force:'),
        h('ul', { class: 'error-list' }, p.errors.map((e) => h('li', { class: 'load-error' }, e)))) : null,
      p.restart_needed.length ? h('p', { class: 'small' }, badge('restart needed', 'warn'), ' changed keys apply on restart only: ', p.restart_needed.join(', ')) : null,
      p.warnings.length ? h('ul', { class: 'error-list small' }, p.warnings.map((w) => h('li', null, 'warning: ' + w))) : null,
      p.enforced ? rulesTable(p.rules)
        : h('p', { class: 'muted', 'data-testid': 'no-policies' }, 'No [[policies]] rules: every caller may call every tool.'),
    ];
  }

  /* view: client */

  function viewClient(r, c) {
    const status = loadingEl('client');
    const body = h('div');
    viewEl.append(pageHead('Client ' + r.name, h('p', { class: 'sub' }, h('a', { href: '#/clients' }, '← All clients')), null), status, body);
    startLoop(c, async () => {
      const v = await api('/admin/clients/' + encodeURIComponent(r.name), { expect: [404] });
      if (!c.alive()) return;
      const tool = (a, t, ok) => h('span', { class: 'chip' + (ok ? '' : ' denied'), 'data-testid': 'client-tool', 'data-agent': a, 'data-tool': t.tool || t, 'data-allowed': String(ok), title: ok ? 'may call' : t.reason }, t.tool || t);
      patch(body,
        h('p', null, v.configured ? badge('[[clients]]', 'ok') : badge('OAuth client id', 'info'), ' agents: ',
          v.agents.includes('*') ? 'all' : v.agents.join(', '),
          v.configured ? null : faint(' — as far as rules about client ids go; rules about a token’s subject, scopes and groups apply too')),
        h('section', { class: 'panel-plain' }, h('h2', null, 'Rules about it'),
          v.policies.length ? rulesTable(v.policies) : h('p', { class: 'muted' }, 'No rule names this client.')),
        h('section', { class: 'panel-plain', 'data-testid': 'client-tools' }, h('h2', null, 'Tools it may call'),
          h('dl', { class: 'facts' }, v.tools.map((a) => [h('dt', null, a.agent),
            h('dd', { class: 'chips' }, a.allowed.map((t) => tool(a.agent, t, true)),
              a.allowed.length ? null : faint(a.agent_allowed ? 'none' : 'none: [[clients]] agents leaves it out'),
              a.denied.length ? [faint('\u00b7 not allowed:'), a.denied.map((t) => tool(a.agent, t, false))] : null)]))));
      status.hidden = true;
      c.markLoaded();
    }, REFRESH_MS.client, loadFailed(status, c));
  }

  /* charts */

  function niceStep(raw) {
    if (!(raw > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
  }

  function maxOf(series, n) {
    let m = 0;
    for (let i = 0; i < n; i++) {
      let stack = 0;
      for (const s of series) {
        const v = s.values[i];
        if (v == null) continue;
        if (s.kind === 'bar') stack += v;
        else m = Math.max(m, v);
      }
      m = Math.max(m, stack);
    }
    return m;
  }

  // A small time-series chart: bars (stacked), lines and areas over n buckets, left axis and
  // an optional right axis, time labels, and a hover/keyboard tooltip.
  function drawChart(host, cfg) {
    const W = Math.max(260, Math.floor(host.clientWidth || 520));
    const H = cfg.height || 168;
    const n = cfg.n;
    const leftS = cfg.series.filter((s) => s.axis !== 'r');
    const rightS = cfg.series.filter((s) => s.axis === 'r');
    const pl = 48, pr = rightS.length ? 54 : 12, pt = 10, pb = 22;
    const iw = W - pl - pr, ih = H - pt - pb, step = iw / n;

    const ticks = 4;
    const mL = maxOf(leftS, n);
    let stepL = niceStep((mL || 1) / ticks);
    if (cfg.integer) stepL = Math.max(1, Math.ceil(stepL));
    const kL = Math.max(1, Math.ceil((mL || 1) / stepL - 1e-9));
    const topL = stepL * kL;
    const stepR = rightS.length ? niceStep((maxOf(rightS, n) || 1) / kL) : 1;
    const topR = stepR * kL;
    const yL = (v) => pt + ih - (v / topL) * ih;
    const yR = (v) => pt + ih - (v / topR) * ih;

    const svg = sv('svg', {
      class: 'chart', width: W, height: H, viewBox: '0 0 ' + W + ' ' + H,
      'data-testid': 'chart', 'data-chart': cfg.id, 'data-agent': cfg.agent,
      role: 'img', 'aria-label': cfg.label + ': use the arrow keys to read the values', tabindex: '0',
    }, sv('title', null, cfg.label));

    const grid = sv('g', { class: 'grid' });
    const axis = sv('g', { class: 'axis' });
    for (let k = 0; k <= kL; k++) {
      const y = Math.round(yL(k * stepL)) + 0.5;
      grid.append(sv('line', { x1: pl, x2: W - pr, y1: y, y2: y, class: k === 0 ? 'base' : null }));
      axis.append(sv('text', { x: pl - 6, y: y + 3.5, 'text-anchor': 'end' }, cfg.fmtL(k * stepL)));
      if (rightS.length) axis.append(sv('text', { x: W - pr + 6, y: y + 3.5, 'text-anchor': 'start' }, cfg.fmtR(k * stepR)));
    }
    const perLabel = 300 / cfg.bucket; // five minutes
    for (let m = 0; ; m += 5) {
      const i = n - m * 60 / cfg.bucket;
      if (i < -1e-9) break;
      const x = pl + i * step;
      const anchor = m === 0 ? 'end' : i < perLabel / 3 ? 'start' : 'middle';
      axis.append(sv('text', { x: x, y: H - 6, 'text-anchor': anchor }, m === 0 ? 'now' : '-' + m + ' min'));
      if (m) grid.append(sv('line', { class: 'vtick', x1: Math.round(x) + 0.5, x2: Math.round(x) + 0.5, y1: pt + ih, y2: pt + ih + 4 }));
    }
    svg.append(grid);

    const plot = sv('g', { class: 'plot' });
    // Bars, stacked in series order.
    const bars = cfg.series.filter((s) => s.kind === 'bar');
    if (bars.length) {
      const gap = step > 4 ? 1 : 0;
      const bw = Math.max(1, step - gap);
      const groups = bars.map((s) => sv('g', { class: 'bars ' + s.cls }));
      for (let i = 0; i < n; i++) {
        let base = 0;
        bars.forEach((s, j) => {
          const v = s.values[i];
          if (!v) return;
          const y = s.axis === 'r' ? yR : yL;
          const y1 = y(base + v), y0 = y(base);
          groups[j].append(sv('rect', {
            class: 'bar' + (i === n - 1 ? ' partial' : ''),
            x: (pl + i * step + gap / 2).toFixed(2), y: y1.toFixed(2),
            width: bw.toFixed(2), height: Math.max(0.5, y0 - y1).toFixed(2),
          }));
          base += v;
        });
      }
      groups.forEach((g) => plot.append(g));
    }
    // Lines and areas, with gaps where a bucket has no value.
    for (const s of cfg.series.filter((x) => x.kind !== 'bar')) {
      const y = s.axis === 'r' ? yR : yL;
      let d = '', area = '', runStart = -1;
      const dots = [];
      const close = (end) => {
        if (runStart < 0) return;
        if (s.kind === 'area') {
          area += 'L' + (pl + (end + 0.5) * step).toFixed(2) + ' ' + yL(0).toFixed(2) +
            'L' + (pl + (runStart + 0.5) * step).toFixed(2) + ' ' + yL(0).toFixed(2) + 'Z';
        }
        if (end === runStart) dots.push(runStart);
        runStart = -1;
      };
      for (let i = 0; i < n; i++) {
        const v = s.values[i];
        if (v == null) { close(i - 1); continue; }
        const x = (pl + (i + 0.5) * step).toFixed(2), yy = y(v).toFixed(2);
        if (runStart < 0) {
          runStart = i;
          d += 'M' + x + ' ' + yy;
          area += 'M' + x + ' ' + yy;
        } else {
          d += 'L' + x + ' ' + yy;
          area += 'L' + x + ' ' + yy;
        }
      }
      close(n - 1);
      const g = sv('g', { class: 'series ' + s.cls });
      if (s.kind === 'area' && area) g.append(sv('path', { class: 'area', d: area }));
      if (d) g.append(sv('path', { class: 'line', d: d }));
      for (const i of dots) g.append(sv('circle', { class: 'dot', cx: (pl + (i + 0.5) * step).toFixed(2), cy: y(s.values[i]).toFixed(2), r: 2 }));
      plot.append(g);
    }
    svg.append(plot, axis);

    const guide = sv('line', { class: 'guide', x1: 0, x2: 0, y1: pt, y2: pt + ih, visibility: 'hidden' });
    const overlay = sv('rect', { class: 'overlay', x: pl, y: pt, width: iw, height: ih });
    svg.append(guide, overlay);

    const tip = h('div', { class: 'tip', hidden: true, 'aria-live': 'polite' });

    function show(i) {
      host._hover = i;
      const x = pl + (i + 0.5) * step;
      guide.setAttribute('x1', x.toFixed(2));
      guide.setAttribute('x2', x.toFixed(2));
      guide.setAttribute('visibility', 'visible');
      const from = new Date((cfg.start + i * cfg.bucket) * 1000);
      const to = new Date((cfg.start + (i + 1) * cfg.bucket) * 1000);
      const back = (n - 1 - i) * cfg.bucket;
      fill(tip,
        h('div', { class: 'tip-time' }, clock(from) + '\u2013' + clock(to),
          muted(i === n - 1 ? ' now, still filling' : ' ' + fmtDur(back) + ' ago')),
        cfg.series.map((s) => h('div', { class: 'tip-row' },
          h('span', { class: 'sw ' + s.cls + (s.kind === 'bar' ? '' : ' sw-line') }), s.label + ': ',
          h('strong', null, s.values[i] == null ? '\u2014' : s.fmt(s.values[i])))),
        cfg.extra ? cfg.extra(i) : null);
      tip.hidden = false;
      const tw = tip.offsetWidth;
      const left = x + 12 + tw > W ? Math.max(0, x - 12 - tw) : x + 12;
      tip.style.left = left + 'px';
      tip.style.top = pt + 'px';
    }
    function hide() {
      host._hover = null;
      guide.setAttribute('visibility', 'hidden');
      tip.hidden = true;
    }
    const at = (e) => {
      const rect = svg.getBoundingClientRect();
      const i = Math.floor((e.clientX - rect.left - pl) / step);
      if (i < 0 || i >= n) hide(); else show(i);
    };
    svg.addEventListener('pointermove', at);
    svg.addEventListener('pointerdown', at);
    svg.addEventListener('pointerleave', hide);
    svg.addEventListener('focus', () => show(host._kbd != null ? host._kbd : n - 1));
    svg.addEventListener('blur', hide);
    svg.addEventListener('keydown', (e) => {
      let i = host._hover != null ? host._hover : n - 1;
      if (e.key === 'ArrowLeft') i = Math.max(0, i - 1);
      else if (e.key === 'ArrowRight') i = Math.min(n - 1, i + 1);
      else if (e.key === 'Home') i = 0;
      else if (e.key === 'End') i = n - 1;
      else return;
      e.preventDefault();
      host._kbd = i;
      show(i);
    });

    const hadFocus = host.contains(document.activeElement);
    const hover = host._hover;
    host.replaceChildren(svg, tip);
    if (hadFocus) svg.focus({ preventScroll: true });
    if (hover != null && hover < n) show(hover);
  }

  /* view: traffic */

  function viewTraffic(r, c) {
    let selected = r.params.get('agent') || '';
    const status = loadingEl('traffic');
    const sel = h('select', { id: 'traffic-agent' });
    const picker = h('label', { class: 'filter' }, h('span', null, 'Agent'), sel);
    const sub = h('p', { class: 'sub' }, 'The last 15 minutes in 10-second buckets; the last bucket is still filling.');
    const list = h('div', { class: 'traffic-list' });
    const emptyHost = h('div');
    const spendSec = h('section', { class: 'panel-plain', 'data-testid': 'agent-spend' });
    viewEl.append(pageHead('Traffic', sub, picker), status, emptyHost, list, spendSec);
    const sections = new Map();
    let data = null;

    sel.addEventListener('change', () => {
      selected = sel.value;
      history.replaceState(null, '', '#/traffic' + (selected ? '?agent=' + encodeURIComponent(selected) : ''));
      render();
    });

    const hasTraffic = (a) => a.points.some((p) => p.calls || p.errors || p.llm_requests || p.llm_prompt_tokens || p.llm_completion_tokens);

    function chartCard(title, legend) {
      const host = h('div', { class: 'chart-host' });
      const card = h('figure', { class: 'chart-card' },
        h('figcaption', null, h('span', { class: 'chart-title' }, title),
          h('span', { class: 'legend' }, legend.map((l) => h('span', { class: 'legend-item' }, h('span', { class: 'sw ' + l[1] + (l[2] ? ' sw-line' : '') }), l[0])))),
        host);
      return { card, host };
    }

    function section(name) {
      let s = sections.get(name);
      if (s) return s;
      const summary = h('p', { class: 'traffic-summary' });
      const calls = chartCard('Calls per second', [['calls/s', 'c-calls', true]]);
      const latency = chartCard('Call latency', [['p50', 'c-p50', true], ['p99', 'c-p99', true]]);
      const errors = chartCard('Errors per bucket', [['errors', 'c-err']]);
      const llm = chartCard('LLM tokens and latency', [['prompt', 'c-prompt'], ['completion', 'c-compl'], ['LLM p50', 'c-llm', true]]);
      const el = h('section', { class: 'traffic-agent', 'data-agent': name },
        h('div', { class: 'traffic-head' }, h('h2', null, name), summary),
        h('div', { class: 'chart-grid' }, calls.card, latency.card, errors.card, llm.card));
      s = { el, summary, hosts: { calls: calls.host, latency: latency.host, errors: errors.host, llm: llm.host } };
      sections.set(name, s);
      return s;
    }

    function draw(s, a) {
      const pts = a.points;
      const n = pts.length;
      const base = { agent: a.agent, n, start: data.start_unix, bucket: data.bucket_secs };
      const val = (k) => pts.map((p) => (p[k] == null ? null : p[k]));
      const callsExtra = (i) => h('div', { class: 'tip-row muted' }, num(pts[i].calls) + ' calls in the bucket');
      drawChart(s.hosts.calls, Object.assign({}, base, {
        id: 'calls', label: 'Calls per second of ' + a.agent, fmtL: compact,
        series: [{ label: 'calls/s', cls: 'c-calls', kind: 'area', values: pts.map((p) => p.calls / data.bucket_secs), fmt: (v) => trimNum(v) }],
        extra: callsExtra,
      }));
      drawChart(s.hosts.latency, Object.assign({}, base, {
        id: 'latency', label: 'p50 and p99 call latency of ' + a.agent, fmtL: axisMs,
        series: [
          { label: 'p50', cls: 'c-p50', kind: 'line', values: val('p50_ms'), fmt: fmtMs },
          { label: 'p99', cls: 'c-p99', kind: 'line', values: val('p99_ms'), fmt: fmtMs },
        ],
        extra: callsExtra,
      }));
      drawChart(s.hosts.errors, Object.assign({}, base, {
        id: 'errors', label: 'Errors per 10 seconds of ' + a.agent, fmtL: compact, integer: true,
        series: [{ label: 'errors', cls: 'c-err', kind: 'bar', values: val('errors'), fmt: num }],
        extra: (i) => h('div', { class: 'tip-row muted' }, 'of ' + plural(pts[i].calls, 'call') + (pts[i].calls ? ' (' + pct(pts[i].errors, pts[i].calls) + ')' : '')),
      }));
      drawChart(s.hosts.llm, Object.assign({}, base, {
        id: 'llm', label: 'LLM tokens and LLM p50 latency of ' + a.agent, fmtL: compact, fmtR: axisMs, integer: true,
        series: [
          { label: 'prompt tokens', cls: 'c-prompt', kind: 'bar', values: val('llm_prompt_tokens'), fmt: num },
          { label: 'completion tokens', cls: 'c-compl', kind: 'bar', values: val('llm_completion_tokens'), fmt: num },
          { label: 'LLM p50', cls: 'c-llm', kind: 'line', axis: 'r', values: val('llm_p50_ms'), fmt: fmtMs },
        ],
        extra: (i) => h('div', { class: 'tip-row muted' }, plural(pts[i].llm_requests, 'LLM request') + (pts[i].llm_errors ? ', ' + num(pts[i].llm_errors) + ' failed' : '')),
      }));
      const lm = a.last_minute;
      patch(s.summary,
        h('span', null, h('strong', null, num(lm.calls)), ' calls/min'),
        h('span', null, h('strong', { class: lm.errors ? 'bad' : null }, pct(lm.errors, lm.calls)), ' errors'),
        h('span', null, 'p50 ', h('strong', null, fmtMs(lm.p50_ms))),
        h('span', null, 'p99 ', h('strong', null, fmtMs(lm.p99_ms))),
        h('span', null, h('strong', null, num(lm.llm_requests)), ' LLM requests/min',
          lm.llm_errors ? h('span', { class: 'bad' }, ' (' + num(lm.llm_errors) + ' failed)') : null),
        h('span', null, h('strong', null, compact(lm.llm_prompt_tokens + lm.llm_completion_tokens)), ' tokens/min'));
    }

    function render() {
      if (!data) return;
      const names = data.agents.map((a) => a.agent);
      const want = [''].concat(names);
      if (selected && !names.includes(selected)) want.push(selected);
      const have = Array.from(sel.options).map((o) => o.value);
      if (have.length !== want.length || have.join('\n') !== want.join('\n')) {
        sel.replaceChildren(...want.map((v) => h('option', { value: v }, v || 'All agents with traffic')));
      }
      if (sel.value !== selected) sel.value = selected;
      const shown = selected ? data.agents.filter((a) => a.agent === selected) : data.agents.filter(hasTraffic);
      for (const [name, s] of sections) {
        if (!shown.some((a) => a.agent === name)) { s.el.remove(); sections.delete(name); }
      }
      if (!shown.length) {
        const first = names[0];
        patch(emptyHost, h('div', { class: 'empty', 'data-testid': 'empty' },
          h('p', null, selected ? 'No agent named ' + selected + ' is served.' : 'No calls in the last 15 minutes.'),
          !selected && first ? h('p', { class: 'muted' }, 'Charts appear here once a client calls a tool, e.g. through ', h('code', null, ORIGIN + '/agents/' + encodeURIComponent(first) + '/mcp'), '.') : null));
      } else {
        emptyHost.replaceChildren();
      }
      shown.forEach((a, i) => {
        const s = section(a.agent);
        if (list.children[i] !== s.el) list.insertBefore(s.el, list.children[i] || null);
        draw(s, a);
      });
    }

    let resizeTimer = 0;
    let lastWidth = window.innerWidth;
    const onResize = () => {
      if (window.innerWidth === lastWidth) return;
      lastWidth = window.innerWidth;
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(render, 120);
    };
    window.addEventListener('resize', onResize);
    c.onCleanup(() => { window.removeEventListener('resize', onResize); clearTimeout(resizeTimer); });

    startLoop(c, async () => {
      const [d, costs] = await Promise.all([api('/admin/traffic'), api('/admin/costs', { expect: [404] }).catch(() => null)]);
      if (!c.alive()) return;
      spendPanel(spendSec, costs, 'agents', 'Agent', null);
      data = d;
      status.hidden = true;
      render();
      c.markLoaded();
    }, REFRESH_MS.traffic, loadFailed(status, c));
  }

  /* view: audit */

  const OUTCOMES = ['ok', 'error', 'refused', 'cancelled', 'timeout'];
  // A mark besides the colour, so outcomes differ without colour too.
  const OUTCOME_MARK = { ok: '\u2713', error: '\u2715', refused: '\u2298', cancelled: '\u25a0', timeout: '\u29d7' };
  const AUDIT_FILTERS = ['from', 'to', 'principal', 'client', 'agent', 'tool', 'outcome', 'root_id'];
  const AUDIT_PAGE = 50;

  const outcomeBadge = (o, title) => h('span', { class: 'badge outcome o-' + o, 'data-testid': 'outcome', 'data-outcome': o, title: title || null },
    h('span', { 'aria-hidden': 'true' }, (OUTCOME_MARK[o] || '?') + ' '), o);

  // "14:03:07.123", with the date when it is not today.
  function fmtWhen(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return String(iso);
    const day = d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate());
    return (d.toDateString() === new Date().toDateString() ? '' : day + ' ') + clock(d) + '.' + String(d.getMilliseconds()).padStart(3, '0');
  }

  // An RFC 3339 time as a datetime-local input's value (local time), and back.
  function toLocalInput(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return '';
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + 'T' + clock(d);
  }
  function fromLocalInput(v) {
    const d = v ? new Date(v) : null;
    return d && !isNaN(d) ? d.toISOString() : '';
  }

  function auditHash(f, limit) {
    const q = new URLSearchParams();
    for (const k of AUDIT_FILTERS) if (f[k]) q.set(k, f[k]);
    if (limit && limit !== AUDIT_PAGE) q.set('limit', String(limit));
    const qs = q.toString();
    return '#/audit' + (qs ? '?' + qs : '');
  }

  const callHref = (rootId) => '#/audit/' + encodeURIComponent(rootId);

  function viewAudit(r, c) {
    const f = {};
    for (const k of AUDIT_FILTERS) f[k] = r.params.get(k) || '';
    const limit = Math.min(1000, Math.max(1, parseInt(r.params.get('limit'), 10) || AUDIT_PAGE));
    let records = [];
    let cursor = null;
    let pagedOlder = false;
    let seq = 0;

    const status = loadingEl('the audit trail');
    const count = h('span', { class: 'count', 'data-testid': 'audit-count' });
    const note = faint();
    const inputs = {};
    const field = (k, label, el) => { inputs[k] = el; return h('label', { class: 'filter' }, h('span', null, label), el); };
    const textInput = (k, list) => h('input', { type: 'search', id: 'af-' + k, 'data-testid': 'filter-' + k, value: f[k], list: list || null, spellcheck: 'false', autocomplete: 'off' });
    const timeInput = (k) => h('input', { type: 'datetime-local', step: '1', id: 'af-' + k, 'data-testid': 'filter-' + k, value: f[k] ? toLocalInput(f[k]) : '' });
    const outcomeSel = h('select', { id: 'af-outcome', 'data-testid': 'filter-outcome' },
      h('option', { value: '' }, 'Any outcome'), OUTCOMES.map((o) => h('option', { value: o }, o)));
    outcomeSel.value = f.outcome;
    const RANGES = [['900', 'Last 15 minutes'], ['3600', 'Last hour'], ['86400', 'Last 24 hours'], ['604800', 'Last 7 days']];
    const rangeSel = h('select', { id: 'af-range', 'data-testid': 'filter-range' },
      h('option', { value: '' }, 'Choose\u2026'), RANGES.map((x) => h('option', { value: x[0] }, x[1])));
    const agentList = h('datalist', { id: 'af-agents' });
    const clientList = h('datalist', { id: 'af-clients' });
    const clearBtn = button('small', null, 'Clear filters');
    const form = h('form', { class: 'filters audit-filters', role: 'search', 'aria-label': 'Filter the audit trail', 'data-testid': 'audit-filters' },
      h('label', { class: 'filter' }, h('span', null, 'Time range'), rangeSel),
      field('from', 'From', timeInput('from')),
      field('to', 'To', timeInput('to')),
      field('principal', 'Principal', textInput('principal')),
      field('client', 'Client', textInput('client', 'af-clients')),
      field('agent', 'Agent', textInput('agent', 'af-agents')),
      field('tool', 'Tool', textInput('tool')),
      field('outcome', 'Outcome', outcomeSel),
      field('root_id', 'Call (root id)', textInput('root_id')),
      h('div', { class: 'filter-actions' },
        h('button', { type: 'submit', class: 'btn small primary', 'data-testid': 'filter-apply' }, 'Apply'), clearBtn),
      agentList, clientList);

    const t = table('audit-table', h('tr', null,
      ['Time', 'Outcome', 'Principal', 'Client', 'Agent', 'Tool', 'Duration', 'Error'].map((x, i) =>
        h('th', { scope: 'col', class: i === 6 ? 'num' : null }, x))));
    const emptyHost = h('div');
    const olderBtn = button('', { 'data-testid': 'audit-older', hidden: true }, 'Older records');
    const newestBtn = button('', { 'data-testid': 'audit-newest', hidden: true }, 'Back to the newest');
    const more = h('div', { class: 'more' }, olderBtn, newestBtn);
    viewEl.append(pageHead('Audit trail', h('p', { class: 'sub' }, count, ' ', note), null), form, status, t.wrap, emptyHost, more);
    t.wrap.hidden = true;

    const anyFilter = () => AUDIT_FILTERS.some((k) => f[k]);

    function apply(next) {
      Object.assign(f, next);
      const hash = auditHash(f, limit);
      if (location.hash !== hash) history.pushState(null, '', hash);
      for (const k of AUDIT_FILTERS) {
        const el = inputs[k];
        const v = k === 'from' || k === 'to' ? (f[k] ? toLocalInput(f[k]) : '') : f[k];
        if (el.value !== v) el.value = v;
      }
      reset();
    }

    function reset() {
      records = [];
      cursor = null;
      pagedOlder = false;
      seq++;
      t.tbody.replaceChildren();
      loop.now();
    }

    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const next = {};
      for (const k of AUDIT_FILTERS) {
        const v = inputs[k].value.trim();
        // An untouched time keeps the linked value (the input shows whole seconds only).
        if (k === 'from' || k === 'to') next[k] = f[k] && v === toLocalInput(f[k]) ? f[k] : fromLocalInput(v);
        else next[k] = v;
      }
      apply(next);
    });
    outcomeSel.addEventListener('change', () => form.requestSubmit());
    rangeSel.addEventListener('change', () => {
      const secs = Number(rangeSel.value);
      rangeSel.value = '';
      if (secs) apply({ from: new Date(serverNow() - secs * 1000).toISOString(), to: '' });
    });
    clearBtn.addEventListener('click', () => apply(Object.fromEntries(AUDIT_FILTERS.map((k) => [k, '']))));
    newestBtn.addEventListener('click', reset);

    // A cell's value as a link that adds it to the filters.
    const filterLink = (k, v) => (v == null || v === '' ? dash()
      : h('a', { href: auditHash(Object.assign({}, f, { [k]: v }), limit), title: 'Only ' + k + ' ' + v }, v));

    function createRow(x) {
      return h('tr', { 'data-testid': 'audit-record', 'data-id': x.id, 'data-root-id': x.root_id, 'data-outcome': x.outcome, 'data-tool': x.tool, 'data-agent': x.agent },
        h('td', null, timeEl(x.time, fmtWhen(x.time)), h('span', { class: 'muted small ago' })),
        h('td', null, outcomeBadge(x.outcome, x.error)),
        h('td', null, filterLink('principal', x.principal)),
        h('td', null, filterLink('client', x.client)),
        h('td', null, filterLink('agent', x.agent)),
        h('td', null, h('a', { href: callHref(x.root_id), class: 'tool-link', 'data-testid': 'open-call', title: 'Open the call\u2019s tree' },
          x.depth ? h('span', { class: 'depth', title: 'Inside ' + plural(x.depth, 'agent run') }, '\u21b3'.repeat(Math.min(x.depth, 3)) + ' ') : null,
          h('code', null, x.tool))),
        h('td', { class: 'num' }, fmtMs(x.duration_ms)),
        h('td', { class: 'err-cell' }, x.error ? h('span', { class: 'bad', title: x.error }, x.error) : null));
    }

    function render() {
      syncRows(t.tbody, records, (x) => x.id, createRow, (tr, x) => setText(tr.querySelector('.ago'), ' ' + fmtAgo(secsSince(x.time))));
      t.wrap.hidden = !records.length;
      setText(count, plural(records.length, 'record') + (cursor ? ' shown' : ''));
      setText(note, (anyFilter() ? 'matching the filters, ' : '') + 'newest first' +
        (pagedOlder ? '; not refreshing while older records are shown' : '') + '.');
      olderBtn.hidden = !cursor;
      newestBtn.hidden = !pagedOlder;
      clearBtn.hidden = !anyFilter();
      if (records.length) { emptyHost.replaceChildren(); return; }
      patch(emptyHost, h('div', { class: 'empty', 'data-testid': 'empty' }, anyFilter()
        ? [h('p', null, 'No records match the filters.'), button('small', { onclick: () => clearBtn.click() }, 'Clear filters')]
        : h('p', null, 'No tool calls recorded yet: every call a client makes, and each call an agent makes for it, appears here.')));
    }

    function showProblem(msg) {
      status.hidden = true;
      t.wrap.hidden = true;
      more.hidden = true;
      patch(emptyHost, h('div', { class: 'empty', 'data-testid': 'empty' }, h('p', null, msg)));
      c.markLoaded();
    }

    async function fetchPage(after) {
      const q = new URLSearchParams();
      for (const k of AUDIT_FILTERS) if (f[k]) q.set(k, f[k]);
      q.set('limit', String(limit));
      if (after) q.set('cursor', after);
      return api('/admin/audit?' + q.toString(), { expect: [400, 404] });
    }

    olderBtn.addEventListener('click', async () => {
      if (!cursor) return;
      const my = seq;
      olderBtn.setAttribute('aria-busy', 'true');
      try {
        const page = await fetchPage(cursor);
        if (!c.alive() || my !== seq) return;
        const have = new Set(records.map((x) => x.id));
        records = records.concat(page.records.filter((x) => !have.has(x.id)));
        cursor = page.next_cursor;
        pagedOlder = true;
        render();
      } catch (e) {
        notice('Could not load older records: ' + e.message, 'error');
      } finally {
        olderBtn.removeAttribute('aria-busy');
      }
    });

    let listsLoaded = false;
    const loop = startLoop(c, async () => {
      if (pagedOlder) return; // keep the pages the user went through
      const my = seq;
      let page;
      try {
        page = await fetchPage(null);
      } catch (e) {
        if (!c.alive() || my !== seq) return;
        if (e.status === 404) return showProblem('No audit trail is kept: [audit] enabled = false in switchboard.toml.');
        if (e.status === 400) return showProblem('The filters are not valid: ' + e.message);
        throw e;
      }
      if (!c.alive() || my !== seq || pagedOlder) return;
      more.hidden = false;
      records = page.records;
      cursor = page.next_cursor;
      render();
      status.hidden = true;
      c.markLoaded();
      if (!listsLoaded) {
        listsLoaded = true;
        const [agents, clients] = await Promise.all([
          api('/admin/agents').catch(() => null),
          api('/admin/clients', { expect: [404] }).catch(() => null),
        ]);
        if (agents) fill(agentList, agents.map((a) => h('option', { value: a.name })));
        if (clients && clients.clients) fill(clientList, clients.clients.map((x) => h('option', { value: x.name })));
      }
    }, REFRESH_MS.audit, loadFailed(status, c));
  }

  /* view: one call's tree */

  function viewCall(r, c) {
    const id = r.id;
    const status = loadingEl('the call');
    const back = h('a', { class: 'back', href: '#/audit' }, '\u2190 Audit trail');
    const sub = h('p', { class: 'sub' });
    const body = h('div', { class: 'call-detail' });
    viewEl.append(back, pageHead('Call', sub, h('a', { class: 'btn', href: auditHash({ root_id: id }), 'data-testid': 'call-records' }, 'Its records in the list')), status, body);

    const field = (label, value) => h('div', { class: 'call-fact' }, h('span', { class: 'call-fact-label' }, label), h('span', null, value));

    function render(tree) {
      const recs = tree.records;
      const byId = new Map(recs.map((x) => [x.id, x]));
      const kids = new Map();
      const tops = [];
      for (const x of recs) {
        if (x.parent_id && x.parent_id !== x.id && byId.has(x.parent_id)) {
          if (!kids.has(x.parent_id)) kids.set(x.parent_id, []);
          kids.get(x.parent_id).push(x);
        } else {
          tops.push(x);
        }
      }
      const root = byId.get(tree.root_id) || null;
      const startOf = (x) => Date.parse(x.time);
      const t0 = Math.min(...recs.map(startOf));
      const end = Math.max(...recs.map((x) => startOf(x) + x.duration_ms));
      // The root's duration is the scale; times have millisecond precision, so a child may
      // seem to end a little after its parent: the scale covers that too.
      const scale = Math.max(end - t0, root ? root.duration_ms : 0) || 1;

      function node(x) {
        const offset = startOf(x) - t0;
        const bar = h('div', { class: 'span-bar o-' + x.outcome });
        bar.style.left = (offset / scale * 100).toFixed(3) + '%';
        bar.style.width = Math.max(0.3, x.duration_ms / scale * 100).toFixed(3) + '%';
        const track = h('div', { class: 'span-track', 'data-testid': 'duration-bar', title: 'Starts ' + fmtMs(offset) + ' into the call, takes ' + fmtMs(x.duration_ms) + ' (' + pct(x.duration_ms, scale) + ')' }, bar);
        const ch = kids.get(x.id) || [];
        const kind = x.depth === 0 && !x.parent_id ? 'client call' : x.model ? 'agent run' : 'tool call';
        const runFacts = x.model
          ? [h('span', null, 'model ', h('strong', null, x.model)),
             x.turns != null ? h('span', null, plural(x.turns, 'turn')) : null,
             x.prompt_tokens != null || x.completion_tokens != null
               ? h('span', null, num(x.prompt_tokens) + ' prompt \u00b7 ' + num(x.completion_tokens) + ' completion tokens') : null]
          : null;
        const args = JSON.stringify(x.arguments, null, 2);
        return h('li', { class: 'tnode', 'data-testid': 'call-node', 'data-id': x.id, 'data-parent-id': x.parent_id || '', 'data-tool': x.tool, 'data-agent': x.agent, 'data-outcome': x.outcome, 'data-duration-ms': String(x.duration_ms) },
          h('div', { class: 'tnode-row' },
            h('div', { class: 'tnode-main' },
              h('span', { class: 'kind' }, kind),
              h('code', { class: 'tnode-tool', 'data-testid': 'node-tool' }, x.tool),
              muted('of ', h('span', { 'data-testid': 'node-agent' }, x.agent)),
              outcomeBadge(x.outcome),
              h('span', { class: 'tnode-dur', 'data-testid': 'duration' }, fmtMs(x.duration_ms))),
            track),
          h('div', { class: 'tnode-facts' },
            h('span', null, badge(x.decision, x.decision === 'allow' ? 'ok' : 'err'),
              x.rule ? [' by ', h('code', { 'data-testid': 'node-rule' }, x.rule)] : muted(' no rule')),
            h('span', { class: 'muted', title: 'When it began, from the start of the client\u2019s call' }, 'at +' + fmtMs(offset)),
            runFacts),
          x.error ? h('p', { class: 'tnode-error', 'data-testid': 'node-error' }, x.error) : null,
          h('details', { class: 'args' },
            h('summary', null, 'Arguments ', faint('as recorded (redacted)')),
            h('pre', { class: 'args-json', 'data-testid': 'node-arguments' }, args === undefined ? 'null' : args),
            h('p', { class: 'muted small mono wrap' }, 'sha256 ' + x.arguments_sha256)),
          ch.length ? h('ol', { class: 'tchildren' }, ch.map(node)) : null);
      }

      const head = root || tops[0];
      fill(sub, h('code', null, head.tool), ' of ' + head.agent + ' \u00b7 ', timeEl(head.time, fmtWhen(head.time)), ' \u00b7 ' + plural(recs.length, 'record'));
      fill(body,
        root ? null : h('p', { class: 'panel', 'data-testid': 'call-unfinished' }, 'The client\u2019s call has no record yet: it is still running, or its record is not written yet. Its calls so far:'),
        h('section', { class: 'panel' }, h('div', { class: 'call-facts' },
          field('Outcome', [outcomeBadge(head.outcome), ' ', fmtMs(head.duration_ms)]),
          field('Started', [timeEl(head.time, fmtWhen(head.time)), muted(' \u00b7 ' + fmtAgo(secsSince(head.time)))]),
          field('Principal', orDash(head.principal)),
          field('Client', head.client ? h('a', { href: clientHref(head.client) }, head.client) : dash()),
          field('Transport', head.transport ? badge(TRANSPORTS[head.transport] || head.transport, head.transport === 'sse' ? 'sse' : 'http') : dash()),
          field('Session', head.session ? h('a', { class: 'mono', href: '#/sessions/' + encodeURIComponent(head.session), title: head.session }, shortId(head.session)) : dash()),
          field('Root id', h('code', { class: 'mono wrap' }, tree.root_id)))),
        h('ol', { class: 'tree', 'data-testid': 'call-tree' }, tops.map(node)));
    }

    const loop = startLoop(c, async () => {
      let tree;
      try {
        tree = await api('/admin/audit/' + encodeURIComponent(id), { expect: [404] });
      } catch (e) {
        if (e.status !== 404) throw e;
        if (!c.alive()) return;
        status.hidden = true;
        patch(body, h('div', { class: 'empty', 'data-testid': 'empty' }, h('p', null, e.message),
          h('p', null, h('a', { href: '#/audit' }, 'Back to the audit trail'))));
        c.markLoaded();
        return;
      }
      if (!c.alive()) return;
      render(tree);
      status.hidden = true;
      c.markLoaded();
      // Records are final once written: stop once the client's call has its own.
      if (tree.records.some((x) => x.id === tree.root_id)) loop.stop();
    }, REFRESH_MS.audit, loadFailed(status, c));
  }

  /* view: approvals */

  const pendingEl = $('approvals-count');
  const showPending = (n) => { setText(pendingEl, n); pendingEl.hidden = !n; };

  // The nav's count on the other views too (the view keeps it itself), every 2 s while shown.
  async function pollPending() {
    if (!document.hidden && !tokenDlg.open && !banner.auth && ctx && ctx.route.view !== 'approvals') {
      try { showPending((await api('/admin/approvals')).approvals.length); } catch (e) { /* the view says why */ }
    }
    setTimeout(pollPending, REFRESH_MS.approvals);
  }

  function viewApprovals(r, c) {
    const status = loadingEl('the calls waiting');
    const count = h('span', { class: 'count' });
    const opInput = h('input', { type: 'text', 'data-testid': 'operator', placeholder: 'admin@<your address>' });
    try { opInput.value = localStorage.getItem('switchboard.operator') || ''; } catch (e) { /* not kept */ }
    const list = h('div', { class: 'approvals' });
    const empty = h('p', { class: 'empty', 'data-testid': 'empty', hidden: true },
      'No calls wait for an operator: they appear here as they come.');
    viewEl.append(pageHead('Approvals', h('p', { class: 'sub' }, count, ' oldest first'),
      h('label', { class: 'filter' }, 'Deciding as', opInput)), status, list, empty);
    const gone = new Set(); // decided here: a list fetched before must not bring them back
    let sig = '';

    function card(p) {
      const reason = h('input', { type: 'text', 'data-testid': 'reason', placeholder: 'Reason (a denial tells the caller)' });
      const btn = (yes) => button(yes ? 'primary' : 'danger-outline', { 'data-testid': yes ? 'approve' : 'deny',
        onclick: () => decide(p, yes, el, reason.value.trim()) }, yes ? 'Approve' : 'Deny');
      const el = h('article', { class: 'card', 'data-testid': 'approval', 'data-id': p.id },
        h('header', { class: 'card-head' },
          h('h2', null, h('code', null, p.tool), muted(' of ' + p.agent)),
          faint('waiting ', h('strong'), ' \u00b7 denied in ', h('strong'))),
        p.message ? h('p', { class: 'appr-msg' }, p.message) : null,
        h('dl', { class: 'facts' },
          h('dt', null, 'For'), h('dd', null, p.caller),
          h('dt', null, 'Rule'), h('dd', null, h('code', null, p.rule), p.conditions ? [' when ', h('code', null, p.conditions)] : null),
          h('dt', null, 'Arguments'), h('dd', null, h('pre', { class: 'args-json' }, JSON.stringify(p.arguments, null, 2))),
          p.root_id ? [h('dt', null, 'Audit'), h('dd', null, h('a', { href: callHref(p.root_id) }, 'The call\u2019s tree'))] : null),
        h('div', { class: 'appr-act' }, reason, btn(true), btn(false)));
      return el;
    }

    // How long each has waited and has left, every second.
    function tick() {
      const now = serverNow();
      for (const el of list.children) {
        const [waited, left] = el.querySelectorAll('strong');
        const secs = (el._p.expires_ms - now) / 1000;
        setText(waited, fmtDur((now - el._p.requested_ms) / 1000));
        setText(left, secs > 0 ? fmtDur(secs) : 'now');
        left.classList.toggle('bad', secs < 30);
      }
    }
    const timer = setInterval(tick, 1000);
    c.onCleanup(() => clearInterval(timer));

    async function decide(p, yes, el, reason) {
      const operator = opInput.value.trim();
      try { localStorage.setItem('switchboard.operator', operator); } catch (e) { /* not kept */ }
      const btns = el.querySelectorAll('button');
      btns.forEach((b) => { b.disabled = true; });
      const what = p.tool + ' of ' + p.agent;
      try {
        const d = await api('/admin/approvals/' + encodeURIComponent(p.id), { method: 'POST', expect: [404, 409],
          body: { decision: yes ? 'approve' : 'deny', reason: reason || undefined, operator: operator || undefined } });
        notice(what + ' ' + d.decision + ' by ' + d.decided_by + (d.reason ? ': ' + d.reason : '.'));
      } catch (e) {
        if (e.status !== 404 && e.status !== 409) {
          btns.forEach((b) => { b.disabled = false; });
          return notice('Could not decide: ' + e.message, 'error');
        }
        notice(what + ' is no longer waiting: decided, timed out or withdrawn.', 'error');
      }
      gone.add(p.id);
      el.remove();
      showPending(list.children.length);
      loop.now();
    }

    const loop = startLoop(c, async () => {
      const all = (await api('/admin/approvals')).approvals.filter((p) => !gone.has(p.id));
      if (!c.alive()) return;
      showPending(all.length);
      const s = JSON.stringify(all);
      if (s !== sig) { // only what changed touches the page
        sig = s;
        syncRows(list, all, (p) => p.id, card, (el, p) => { el._p = p; });
        setText(count, plural(all.length, 'call') + ' waiting,');
        empty.hidden = !!all.length;
      }
      tick();
      status.hidden = true;
      c.markLoaded();
    }, REFRESH_MS.approvals, loadFailed(status, c));
  }

  /* view: tasks */

  function viewTasks(r, c) {
    const status = loadingEl('tasks');
    const t = table('tasks', h('tr', null, ['Task', 'Agent', 'Caller', 'Status', 'Progress', 'Age', ''].map((x) => h('th', null, x))));
    viewEl.append(pageHead('Tasks', h('p', { class: 'sub' }, 'Running and recent, newest first')), status, t.wrap);
    const ended = (k) => /^(completed|failed|cancelled)$/.test(k.status);
    function row(k) {
      const tr = h('tr', { 'data-testid': 'task', 'data-id': k.id });
      tr._td = [0, 1, 2, 3, 4, 5].map(() => h('td'));
      tr._b = button('small danger-outline', { 'data-testid': 'cancel-task', onclick: () => cancel(tr._k, tr._b) }, 'Cancel');
      tr.append(...tr._td, h('td', null, tr._b));
      return tr;
    }
    function update(tr, k) {
      tr._k = k;
      const v = [h('span', { class: 'mono' }, shortId(k.id)), k.agent, orDash(k.principal),
        badge(k.status, { working: 'http', input_required: 'warn', completed: 'ok', failed: 'err' }[k.status]),
        orDash(k.status_message), timeEl(k.created_at, fmtDur(k.age_secs))];
      tr._td.forEach((td, i) => patch(td, v[i]));
      tr._b.hidden = ended(k);
    }
    async function cancel(k, btn) {
      if (!await confirmDialog('Cancel task ' + shortId(k.id) + ' of ' + k.agent + '?', 'Cancel task')) return;
      btn.disabled = true;
      try {
        await api('/admin/tasks/' + encodeURIComponent(k.id) + '/cancel', { method: 'POST', expect: [404, 409] });
        notice('Task ' + shortId(k.id) + ' cancelled.');
      } catch (e) {
        notice(e.status === 404 || e.status === 409 ? 'Task ' + shortId(k.id) + ' had ended.' : e.message, 'error');
      }
      loop.now();
    }
    const loop = startLoop(c, async () => {
      const all = (await api('/admin/tasks')).tasks;
      if (!c.alive()) return;
      syncRows(t.tbody, all, (k) => k.id, row, update);
      status.hidden = true;
      c.markLoaded();
    }, REFRESH_MS.tasks, loadFailed(status, c));
  }

  /* start */

  const VIEWS = { agents: viewAgents, sessions: viewSessions, session: viewSession, clients: viewClients, client: viewClient, traffic: viewTraffic, audit: viewAudit, call: viewCall, approvals: viewApprovals, tasks: viewTasks };

  $('origin').textContent = ORIGIN;
  $('origin').title = 'The gateway this console manages';
  $('skip').addEventListener('click', (e) => { e.preventDefault(); viewEl.focus(); });
  setToken(getToken());
  window.addEventListener('hashchange', route);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) refreshNow(); });
  if (!parseRoute() || !location.hash) history.replaceState(null, '', '#/agents');
  route();
  pollPending();
})();
