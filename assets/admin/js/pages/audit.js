// pages/audit.js — the audit log (admin): filters, CSV export link, "Verify chain" with a
// prominent result.

import { el, compactJson, fmtNumber } from '../dom.js';
import { badge, pageHeader, card, dataTable, errorBox, filterForm, filtersFrom, pager, withBusy, timeEl } from '../ui.js';
import { buildUrl } from '../api.js';

export const title = 'Audit';

const TYPES = ['login_success', 'login_failure', 'logout', 'access_denied', 'account_locked', 'account_unlocked',
  'user_created', 'user_modified', 'user_deactivated', 'apikey_created', 'apikey_revoked', 'message_retried',
  'backup_downloaded', 'backup_restored', 'delivery_paused', 'delivery_resumed', 'config_reloaded',
  'config_reload_failed', 'password_changed'];

const FIELDS = [
  { name: 'type', label: 'Event type', type: 'select', options: [['', 'Any type'], ...TYPES.map((t) => [t, t.replace(/_/g, ' ')])] },
  { name: 'user_id', label: 'User id' },
  { name: 'ip', label: 'IP address' },
  { name: 'since', label: 'Since', type: 'datetime' },
  { name: 'until', label: 'Until', type: 'datetime' },
];

function verifyResult(res) {
  if (res.ok) {
    return el('div', { class: 'alert alert--ok verify', id: 'verify-result', 'data-ok': 'true', role: 'status', tabindex: '-1' },
      el('strong', null, 'Audit chain intact. '), `${fmtNumber(res.checked)} events checked.`);
  }
  const broken = res.first_broken || {};
  return el('div', { class: 'alert alert--error verify', id: 'verify-result', 'data-ok': 'false', role: 'alert', tabindex: '-1' },
    el('strong', null, 'Audit chain broken! '),
    `The first broken event is ${broken.id !== undefined ? `#${broken.id}` : 'unknown'}` +
    `${broken.ts ? ` (${broken.ts})` : ''}; ${fmtNumber(res.checked)} events checked.`);
}

export async function render(ctx) {
  const q = ctx.query;
  const filters = filtersFrom(q, FIELDS.map((f) => f.name));
  const data = await ctx.api('GET', '/api/v1/management/audit', {
    query: { ...filters, limit: q.get('limit') || 100, cursor: q.get('cursor') },
  });
  if (!ctx.alive()) return;

  const csv = el('a', {
    class: 'btn btn--secondary', id: 'export-csv', 'data-action': 'export-csv',
    href: buildUrl('/api/v1/management/audit', { ...filters, format: 'csv' }),
    download: 'energyload-audit.csv',
  }, 'Export CSV');
  const verifySlot = el('div', { class: 'verify-slot', id: 'verify-slot' });
  const verify = el('button', { type: 'button', class: 'btn btn--primary', id: 'verify-chain', 'data-action': 'verify-chain' }, 'Verify chain');
  verify.addEventListener('click', () => withBusy(verify, async () => {
    verifySlot.replaceChildren(el('p', { class: 'loading', role: 'status' }, 'Verifying the audit chain…'));
    try {
      const res = await ctx.api('GET', '/api/v1/management/audit/verify');
      if (!ctx.alive()) return;
      verifySlot.replaceChildren(verifyResult(res));
    } catch (e) {
      if (e.name === 'AbortError' || e.status === 401) throw e;
      verifySlot.replaceChildren(errorBox(e, { id: 'verify-result', 'data-ok': 'error', tabindex: '-1' }));
    }
    verifySlot.firstChild.focus();
  }));

  ctx.view.replaceChildren(
    pageHeader('Audit', verify, csv),
    verifySlot,
    card(null, { class: 'card filters-card' }, filterForm({ route: 'audit', fields: FIELDS, query: q })),
    card(null, null,
      dataTable({
        testid: 'audit-table', caption: 'Audit events', items: data.items || [], empty: 'No audit event matches this filter.',
        rowAttrs: (a) => ({ 'data-id': a.id, 'data-type': a.type }),
        columns: [
          { label: 'Time', render: (a) => timeEl(a.ts) },
          { label: 'Type', render: (a) => badge(a.type) },
          { label: 'User', render: (a) => (a.username || a.user_id
            ? el('span', { title: a.user_id ? `user id ${a.user_id}` : null }, a.username || a.user_id) : null) },
          { label: 'IP', render: (a) => (a.ip || a.msisdn ? [a.ip ? el('span', { class: 'mono nowrap' }, a.ip) : null,
            a.msisdn ? el('span', { class: 'sub', title: 'MSISDN' }, `MSISDN ${a.msisdn}`) : null] : null) },
          { label: 'Path', render: (a) => (a.path ? el('span', { class: 'mono breakword' }, a.path) : null) },
          { label: 'Detail', render: (a) => (a.detail && Object.keys(a.detail).length
            ? el('span', { class: 'mono small breakword detail' }, compactJson(a.detail)) : null) },
          { label: 'Request', render: (a) => (a.request_id || a.api_key_id ? [
            a.request_id ? el('span', { class: 'mono small' }, a.request_id) : null,
            a.api_key_id ? el('span', { class: 'sub' }, `key ${a.api_key_id}`) : null] : null) },
        ],
      }),
      pager('audit', q, data.next_cursor)),
  );
}
