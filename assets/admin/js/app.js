// app.js — entry point of the admin page: session (cookie + CSRF token in memory), sign-in /
// sign-out, role-aware navigation, and the hash router that renders one page module at a time.
//
// Hash routes:
//   #/dashboard  #/messages?status=&message_id=&meter_id=&site_id=&local_market=&data_feed_type=&since=&until=&cursor=
//   #/messages/{id}  #/errors?message_id=&esight_id=&since=&until=&cursor=  #/errors/{id}
//   #/quarantine  #/users  #/users/{id}  #/apikeys  #/audit?type=&user_id=&ip=&since=&until=  #/system
//
// Stable hooks for browser tests (ids are unique on the page where they appear):
//   shell:     #sign-in-form #username #password #sign-in-submit #sign-in-error #sign-in-message
//              #sign-out #current-user #nav-toggle #app-nav a[data-nav=dashboard|messages|errors|
//              quarantine|users|apikeys|audit|system] #view (main) #notice (live region)
//   any page:  h1.page-title, [data-testid=error] (error alert), #next-page #first-page,
//              #filter-form (+ #filter-<name>, #filter-form-apply), confirm panel
//              [data-testid=confirm-panel] with #confirm-yes / #confirm-no
//   dashboard: #stats-by-status [data-status-count=<status>], #delivered-last-hour,
//              #oldest-pending-age, #esight-reachability, #delivery-state, #deliveries-chart,
//              #latest-failures, #pause-delivery / #resume-delivery (admin), #last-updated
//   messages:  #messages-table, tr[data-id], [data-action=retry][data-id] (admin),
//              #retry-all (admin; then #confirm-yes)
//   message:   #message-detail[data-status], #message-status, #message-json, #attempt-log,
//              #message-esight-errors, #retry-message [data-action=retry] (admin)
//   errors:    #errors-table, #error-detail, #error-items
//   quarantine:#quarantine-list, .quarantine-item[data-id] details > pre.quarantine-body
//   users:     #users-table, tr [data-testid=locked-until] + [data-action=unlock-user] (locked users),
//              #new-user (opens form), #create-user-form #new-username #new-password
//              #new-role-admin|backoffice|esight|user #create-user-submit #create-user-error;
//              user page #user-detail #edit-roles-form #edit-role-<role> #save-roles,
//              #reset-password-form #reset-password #save-password, #deactivate-user,
//              #reactivate-user, #user-status [data-testid=locked-until] + #unlock-user (while locked),
//              #sessions-table [data-action=end-session][data-jti]
//   apikeys:   #apikeys-table, #create-key-form #new-key-name #new-key-expires #create-key-submit,
//              #new-key-panel #new-api-key #copy-api-key #new-key-done,
//              [data-action=revoke-key][data-id]
//   audit:     #audit-table, #export-csv, #verify-chain, #verify-result[data-ok=true|false]
//   system:    #version-info, #readiness[data-status], [data-check=<name>], #config, #download-backup

import { get, post, del, request, setCsrfToken, onUnauthorized } from './api.js';
import { el, clear } from './dom.js';
import { errorBox, loading, notify } from './ui.js';

import * as dashboard from './pages/dashboard.js';
import * as messages from './pages/messages.js';
import * as messageDetail from './pages/message-detail.js';
import * as errors from './pages/errors.js';
import * as quarantine from './pages/quarantine.js';
import * as users from './pages/users.js';
import * as userDetail from './pages/user-detail.js';
import * as apikeys from './pages/apikeys.js';
import * as audit from './pages/audit.js';
import * as system from './pages/system.js';

// [pattern, module, nav key, admin only]
const ROUTES = [
  [/^dashboard$/, dashboard, 'dashboard', false],
  [/^messages$/, messages, 'messages', false],
  [/^messages\/([^/]+)$/, messageDetail, 'messages', false],
  [/^errors$/, errors.list, 'errors', false],
  [/^errors\/([^/]+)$/, errors.detail, 'errors', false],
  [/^quarantine$/, quarantine, 'quarantine', false],
  [/^users$/, users, 'users', true],
  [/^users\/([^/]+)$/, userDetail, 'users', true],
  [/^apikeys$/, apikeys, 'apikeys', true],
  [/^audit$/, audit, 'audit', true],
  [/^system$/, system, 'system', true],
];

const $ = (id) => document.getElementById(id);
const state = { user: null, current: null };

const isAdmin = () => !!state.user && (state.user.roles || []).includes('admin');

// ---------- session ----------

function showSignIn({ message = '', error = '' } = {}) {
  stopCurrent();
  state.user = null;
  setCsrfToken(null);
  document.body.classList.remove('is-booting', 'is-signed-in');
  $('app-shell').hidden = true;
  $('user-box').hidden = true;
  $('sign-in').hidden = false;
  clear($('view'));
  const msg = $('sign-in-message');
  msg.textContent = message;
  msg.hidden = !message;
  const err = $('sign-in-error');
  err.textContent = error;
  err.hidden = !error;
  $('password').value = '';
  document.title = 'Sign in · energyload';
  ($('username').value ? $('password') : $('username')).focus();
}

function startSession(body) {
  state.user = body.user;
  setCsrfToken(body.csrf_token);
  document.body.classList.remove('is-booting');
  document.body.classList.add('is-signed-in');
  $('sign-in').hidden = true;
  $('app-shell').hidden = false;
  $('user-box').hidden = false;
  const roles = (state.user.roles || []).join(', ');
  $('current-user').textContent = `${state.user.username} (${roles})`;
  for (const li of document.querySelectorAll('[data-admin-only]')) li.hidden = !isAdmin();
  route(true);
}

async function signIn(e) {
  e.preventDefault();
  const username = $('username').value.trim();
  const password = $('password').value;
  const err = $('sign-in-error');
  $('sign-in-message').hidden = true;
  if (!username || !password) {
    err.textContent = 'Enter your username and password.';
    err.hidden = false;
    (username ? $('password') : $('username')).focus();
    return;
  }
  const btn = $('sign-in-submit');
  btn.disabled = true;
  btn.textContent = 'Signing in…';
  try {
    const body = await post('/admin/session', { username, password }, { auth: false });
    err.hidden = true;
    $('password').value = '';
    startSession(body);
  } catch (ex) {
    let text = ex.message || 'Sign-in failed.';
    if (ex.status === 429 && ex.retryAfter) text += ` Try again in ${ex.retryAfter} s.`;
    err.textContent = text;
    err.hidden = false;
    $('password').value = '';
    $('password').focus();
  } finally {
    btn.disabled = false;
    btn.textContent = 'Sign in';
  }
}

async function signOut() {
  const btn = $('sign-out');
  btn.disabled = true;
  try {
    await del('/admin/session', { auth: false });
  } catch (ex) {
    if (ex.status !== 401) notify(ex.message, 'error');
  } finally {
    btn.disabled = false;
  }
  showSignIn({ message: 'You have signed out.' });
}

// ---------- router ----------

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const q = raw.indexOf('?');
  const path = decodeURIComponent(q >= 0 ? raw.slice(0, q) : raw).replace(/\/+$/, '');
  const query = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : '');
  return { path, query };
}

function stopCurrent() {
  const cur = state.current;
  state.current = null;
  if (!cur) return;
  cur.controller.abort();
  for (const fn of cur.cleanups) {
    try { fn(); } catch { /* ignore */ }
  }
}

function setActiveNav(key) {
  for (const a of document.querySelectorAll('#app-nav a[data-nav]')) {
    if (a.dataset.nav === key) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function route(focusHeading = true) {
  if (!state.user) return;
  const { path, query } = parseHash();
  if (!path) {
    history.replaceState(null, '', '#/dashboard');
    return route(focusHeading);
  }
  stopCurrent();
  closeNav();
  const view = $('view');
  clear(view);

  const match = ROUTES.map(([re, mod, nav, adminOnly]) => ({ m: path.match(re), mod, nav, adminOnly })).find((r) => r.m);
  if (!match) {
    setActiveNav(null);
    view.append(el('h1', { class: 'page-title', tabindex: '-1' }, 'Page not found'),
      el('p', null, 'There is no page here. ', el('a', { href: '#/dashboard' }, 'Go to the dashboard'), '.'));
    document.title = 'Not found · energyload';
    if (focusHeading) view.querySelector('h1').focus();
    return undefined;
  }
  setActiveNav(match.nav);
  if (match.adminOnly && !isAdmin()) {
    view.append(el('h1', { class: 'page-title', tabindex: '-1' }, 'Not available'),
      errorBox({ message: 'This page is for administrators only.' }));
    if (focusHeading) view.querySelector('h1').focus();
    return undefined;
  }

  const controller = new AbortController();
  const current = { controller, cleanups: [] };
  state.current = current;
  const ctx = {
    view,
    params: match.m.slice(1).map(decodeURIComponent),
    query,
    user: state.user,
    isAdmin: isAdmin(),
    signal: controller.signal,
    alive: () => state.current === current,
    api: (method, p, opts = {}) => request(method, p, { ...opts, signal: controller.signal }),
    onCleanup: (fn) => current.cleanups.push(fn),
    reload: () => route(true),
  };
  view.append(loading());
  document.title = `${match.mod.title || 'energyload'} · energyload`;
  try {
    await match.mod.render(ctx);
  } catch (ex) {
    if (ex && ex.name === 'AbortError') return undefined;
    if (!ctx.alive() || (ex && ex.status === 401)) return undefined;
    clear(view);
    view.append(el('h1', { class: 'page-title', tabindex: '-1' }, match.mod.title || 'Error'),
      errorBox(ex),
      el('p', null, el('button', { type: 'button', class: 'btn btn--secondary', id: 'try-again', on: { click: () => route(true) } }, 'Try again')));
  }
  if (focusHeading && ctx.alive()) {
    const h1 = view.querySelector('h1');
    if (h1) h1.focus({ preventScroll: false });
  }
  return undefined;
}

// ---------- navigation toggle (narrow screens) ----------

function closeNav() {
  document.body.classList.remove('nav-open');
  $('nav-toggle').setAttribute('aria-expanded', 'false');
}

function toggleNav() {
  const open = !document.body.classList.contains('nav-open');
  document.body.classList.toggle('nav-open', open);
  $('nav-toggle').setAttribute('aria-expanded', String(open));
  if (open) {
    const first = document.querySelector('#app-nav li:not([hidden]) a');
    if (first) first.focus();
  }
}

// ---------- boot ----------

async function boot() {
  $('sign-in-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', signOut);
  $('nav-toggle').addEventListener('click', toggleNav);
  $('skip-link').addEventListener('click', () => {
    const target = $('view').querySelector('h1') || $('username');
    if (target) target.focus();
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && document.body.classList.contains('nav-open')) {
      closeNav();
      $('nav-toggle').focus();
    }
  });
  window.addEventListener('hashchange', () => route(true));
  onUnauthorized(() => {
    if (state.user) showSignIn({ error: 'Your session has ended. Please sign in again.' });
  });

  try {
    const body = await get('/admin/session', { auth: false });
    startSession(body);
  } catch (ex) {
    $('boot').hidden = true;
    if (ex.status === 401) showSignIn();
    else showSignIn({ error: ex.message });
  }
  $('boot').hidden = true;
}

boot();
