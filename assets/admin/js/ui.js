// ui.js — shared page components: page header, cards, status badges, tables, alerts,
// notices (live region), filter forms bound to the hash query, pager, inline confirm panel.

import { el, timeEl, toLocalInput, fromLocalInput } from './dom.js';

const BADGE_KIND = {
  pending: 'info', delivering: 'info', delivered: 'ok', failed: 'bad', rejected: 'warn',
  active: 'ok', deactivated: 'neutral', revoked: 'neutral', expired: 'neutral',
  ok: 'ok', fail: 'bad', error: 'bad', reachable: 'ok', unreachable: 'bad', unknown: 'neutral',
  running: 'ok', paused: 'warn', esight_unreachable: 'bad', not_configured: 'neutral',
  retry: 'warn', login_success: 'ok', logout: 'neutral', InvalidJsonReceived: 'warn', EmptyJson: 'warn', admin: 'accent', backoffice: 'info', esight: 'neutral', user: 'neutral',
};

/** A status badge: colour and the status text (never colour alone). */
export function badge(status, label) {
  const s = status === null || status === undefined ? 'unknown' : String(status);
  const kind = BADGE_KIND[s] || (/fail|error|denied|locked/i.test(s) ? 'bad' : 'neutral');
  return el('span', { class: `badge badge--${kind}`, 'data-status': s }, label || s.replace(/_/g, ' '));
}

/** <h1> (focus target on navigation) with optional action elements on the right. */
export function pageHeader(title, ...actions) {
  return el('div', { class: 'page-header' },
    el('h1', { tabindex: '-1', class: 'page-title' }, title),
    el('div', { class: 'page-actions' }, ...actions));
}

export function card(title, attrs, ...children) {
  return el('section', { class: 'card', ...(attrs || {}) },
    title ? el('h2', { class: 'card__title' }, title) : null,
    ...children);
}

export function button(label, attrs = {}, onClick) {
  const cls = ['btn', attrs.class || 'btn--secondary'];
  return el('button', { type: 'button', ...attrs, class: cls, on: onClick ? { click: onClick } : undefined }, label);
}

/** A definition list from [[term, value], …]; value may be a node or text. */
export function defList(pairs, attrs = {}) {
  return el('dl', { class: 'deflist', ...attrs },
    pairs.filter(Boolean).map(([k, v]) => [el('dt', null, k), el('dd', null, v === null || v === undefined || v === '' ? '—' : v)]));
}

/**
 * A table wrapped for horizontal scrolling on narrow screens.
 * columns: [{label, render(item) → node|text, class}], items: array.
 */
export function dataTable({ columns, items, testid, caption, empty = 'Nothing to show.', rowAttrs }) {
  if (!items || items.length === 0) {
    return el('p', { class: 'empty', 'data-testid': testid ? `${testid}-empty` : null }, empty);
  }
  const head = el('thead', null, el('tr', null, columns.map((c) => el('th', { scope: 'col', class: c.class }, c.label))));
  const body = el('tbody', null, items.map((item) => el('tr', rowAttrs ? rowAttrs(item) : null,
    columns.map((c) => {
      const v = c.render(item);
      const none = v === null || v === undefined || v === '';
      return el('td', { class: c.class, 'data-label': c.label }, none ? (c.blank ? '' : '—') : v);
    }))));
  return el('div', { class: 'table-wrap' },
    el('table', { class: 'table', 'data-testid': testid, id: testid },
      caption ? el('caption', { class: 'sr-only' }, caption) : null, head, body));
}

/** The contract's error message in a visible alert (with the request id for support). */
export function errorBox(err, attrs = {}) {
  const msg = (err && err.message) || 'Something went wrong.';
  return el('div', { class: 'alert alert--error', role: 'alert', 'data-testid': 'error', ...attrs },
    el('strong', null, msg),
    err && err.code && !String(err.code).startsWith('HTTP') && err.code !== 'NetworkError'
      ? el('span', { class: 'alert__meta' }, ` (${err.code}${err.requestId ? `, request ${err.requestId}` : ''})`)
      : null);
}

export function loading(text = 'Loading…') {
  return el('p', { class: 'loading', role: 'status' }, text);
}

let noticeTimer = null;
/** Announces a short message in the polite live region (also shown as a toast). */
export function notify(message, kind = 'ok') {
  const region = document.getElementById('notice');
  if (!region) return;
  region.textContent = '';
  region.className = `notice notice--${kind} is-visible`;
  // A separate text node set on the next frame so screen readers announce repeated messages.
  requestAnimationFrame(() => { region.textContent = message; });
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { region.className = 'notice'; region.textContent = ''; }, 8000);
}

/**
 * A filter form bound to the route's query string.
 * fields: [{name, label, type: 'text'|'select'|'datetime', options: [[value, label]]}]
 * Submitting navigates to `#/<route>?<filters>` (datetimes as RFC 3339 UTC).
 */
export function filterForm({ route, fields, query, testid = 'filter-form', extra = [] }) {
  const inputs = fields.map((f) => {
    const id = `filter-${f.name.replace(/_/g, '-')}`;
    let input;
    if (f.type === 'select') {
      input = el('select', { id, name: f.name, value: query.get(f.name) || '' },
        f.options.map(([v, l]) => el('option', { value: v }, l)));
    } else if (f.type === 'datetime') {
      input = el('input', { id, name: f.name, type: 'datetime-local', step: '60', value: toLocalInput(query.get(f.name)) });
    } else {
      input = el('input', { id, name: f.name, type: 'text', value: query.get(f.name) || '', autocomplete: 'off', spellcheck: 'false' });
    }
    return el('div', { class: 'field' }, el('label', { for: id }, f.label), input);
  });
  const form = el('form', { class: 'filter-form', 'data-testid': testid, id: testid, role: 'search' },
    el('div', { class: 'filter-grid' }, inputs),
    el('div', { class: 'form-actions' },
      el('button', { type: 'submit', class: 'btn btn--primary', id: `${testid}-apply` }, 'Apply filters'),
      el('a', { href: `#/${route}`, class: 'btn btn--ghost', id: `${testid}-clear` }, 'Clear'),
      ...extra));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const params = new URLSearchParams();
    for (const f of fields) {
      const raw = form.elements[f.name].value.trim();
      const v = f.type === 'datetime' ? fromLocalInput(raw) : raw;
      if (v) params.set(f.name, v);
    }
    if (query.get('limit')) params.set('limit', query.get('limit'));
    const qs = params.toString();
    location.hash = `#/${route}${qs ? `?${qs}` : ''}`;
  });
  // Folded on narrow screens unless a filter is active; always open on wide ones.
  const active = fields.filter((f) => query.get(f.name)).length;
  const narrow = window.matchMedia('(max-width: 800px)').matches;
  return el('details', { class: 'filters', open: !narrow || active > 0 },
    el('summary', null, active ? `Filters (${active} active)` : 'Filters'), form);
}

/** The current filters as an object (no cursor), for API calls. */
export function filtersFrom(query, names) {
  const out = {};
  for (const n of names) if (query.get(n)) out[n] = query.get(n);
  return out;
}

/** "Next page" (via the opaque cursor) and "First page" links for a list route. */
export function pager(route, query, nextCursor) {
  const base = new URLSearchParams(query);
  base.delete('cursor');
  const links = [];
  if (query.get('cursor')) {
    const qs = base.toString();
    links.push(el('a', { href: `#/${route}${qs ? `?${qs}` : ''}`, class: 'btn btn--ghost', 'data-action': 'first-page', id: 'first-page' }, '« First page'));
  }
  if (nextCursor) {
    const next = new URLSearchParams(base);
    next.set('cursor', nextCursor);
    links.push(el('a', { href: `#/${route}?${next.toString()}`, class: 'btn btn--secondary', 'data-action': 'next-page', id: 'next-page' }, 'Next page »'));
  }
  return links.length ? el('nav', { class: 'pager', 'aria-label': 'Pages' }, links) : document.createDocumentFragment();
}

/**
 * An inline confirmation panel inserted after `anchor`; focus moves to its confirm button,
 * Escape or Cancel removes it and returns focus to `opener`. Resolves true/false.
 */
export function confirmInline(anchor, opener, { message, confirmLabel = 'Confirm', danger = false }) {
  return new Promise((resolve) => {
    const existing = anchor.parentNode.querySelector(':scope > .confirm-panel');
    if (existing) existing.remove();
    const done = (ok) => {
      panel.remove();
      if (!ok && opener && opener.isConnected) opener.focus();
      resolve(ok);
    };
    const yes = el('button', { type: 'button', class: ['btn', danger ? 'btn--danger' : 'btn--primary'], 'data-action': 'confirm', id: 'confirm-yes' }, confirmLabel);
    const no = el('button', { type: 'button', class: 'btn btn--ghost', 'data-action': 'cancel', id: 'confirm-no' }, 'Cancel');
    const panel = el('div', { class: 'confirm-panel', role: 'group', 'aria-label': 'Confirm action', 'data-testid': 'confirm-panel' },
      el('p', null, message), el('div', { class: 'form-actions' }, yes, no));
    yes.addEventListener('click', () => done(true));
    no.addEventListener('click', () => done(false));
    panel.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.preventDefault(); done(false); } });
    anchor.after(panel);
    yes.focus();
  });
}

/** Runs an async action from a button: disables it meanwhile, shows errors as a notice. */
export async function withBusy(btn, fn) {
  if (btn) btn.disabled = true;
  try {
    return await fn();
  } catch (e) {
    if (e && e.name === 'AbortError') return undefined;
    if (e && e.status !== 401) notify(e.message || 'The action failed.', 'error');
    return undefined;
  } finally {
    if (btn && btn.isConnected) btn.disabled = false;
  }
}

export { timeEl };
