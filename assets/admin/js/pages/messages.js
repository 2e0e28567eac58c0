// pages/messages.js — the message list: filters bound to the hash query, cursor paging,
// per-row Retry for failed/rejected and "Retry all matching" with confirmation (admin only).

import { el, fmtNumber } from '../dom.js';
import {
  badge, pageHeader, card, dataTable, filterForm, filtersFrom, pager, confirmInline, notify, withBusy, timeEl,
} from '../ui.js';

export const title = 'Messages';

export const STATUS_OPTIONS = [
  ['', 'Any status'], ['pending', 'pending'], ['delivering', 'delivering'], ['delivered', 'delivered'],
  ['failed', 'failed'], ['rejected', 'rejected'],
];

const FIELDS = [
  { name: 'status', label: 'Status', type: 'select', options: STATUS_OPTIONS },
  { name: 'message_id', label: 'messageId' },
  { name: 'meter_id', label: 'Meter' },
  { name: 'site_id', label: 'Site' },
  { name: 'local_market', label: 'Market' },
  { name: 'data_feed_type', label: 'Feed type' },
  { name: 'since', label: 'Since', type: 'datetime' },
  { name: 'until', label: 'Until', type: 'datetime' },
];
const FILTER_NAMES = FIELDS.map((f) => f.name);

export const retryable = (status) => status === 'failed' || status === 'rejected';

/** A Retry button for one message; `after` runs once the message is queued again. */
export function retryButton(ctx, id, after, attrs = {}) {
  const btn = el('button', {
    type: 'button', class: 'btn btn--secondary btn--small', 'data-action': 'retry', 'data-id': id,
    'aria-label': `Retry message ${id}`, ...attrs,
  }, 'Retry');
  btn.addEventListener('click', () => withBusy(btn, async () => {
    await ctx.api('POST', `/api/v1/service/send/messages/${encodeURIComponent(id)}/retry`);
    notify(`Message ${id} queued for retry.`);
    if (after) await after();
  }));
  return btn;
}

function describeFilters(filters) {
  const parts = Object.entries(filters).map(([k, v]) => `${k} = ${v}`);
  return parts.length ? parts.join(', ') : 'no filter (every failed or rejected message)';
}

export async function render(ctx) {
  const q = ctx.query;
  const filters = filtersFrom(q, FILTER_NAMES);
  const data = await ctx.api('GET', '/api/v1/service/send/messages', {
    query: { ...filters, limit: q.get('limit') || 50, cursor: q.get('cursor') },
  });
  if (!ctx.alive()) return;

  const columns = [
    { label: 'Id', render: (m) => el('a', { href: `#/messages/${encodeURIComponent(m.id)}` }, m.id) },
    { label: 'messageId', render: (m) => el('span', { class: 'mono' }, m.messageId) },
    { label: 'Status', render: (m) => [badge(m.status), m.error_code ? el('span', { class: 'sub mono' }, m.error_code) : null] },
    { label: 'Meter / site', render: (m) => [el('span', { class: 'nowrap' }, m.meter_id || '—'),
      el('span', { class: 'sub' }, [m.site_id, m.local_market, m.data_feed_type].filter(Boolean).join(' · '))] },
    { label: 'Points', render: (m) => fmtNumber(m.datapoints), class: 'num' },
    { label: 'Tries', render: (m) => fmtNumber(m.attempts), class: 'num' },
    { label: 'Created', render: (m) => timeEl(m.created_at) },
  ];
  if (ctx.isAdmin) {
    columns.push({
      label: 'Actions',
      blank: true,
      render: (m) => (retryable(m.status) ? retryButton(ctx, m.id, ctx.reload) : null),
    });
  }

  const extra = [];
  let retryAll = null;
  if (ctx.isAdmin) {
    retryAll = el('button', { type: 'button', class: 'btn btn--secondary', id: 'retry-all', 'data-action': 'retry-all' }, 'Retry all matching…');
    retryAll.addEventListener('click', async () => {
      const ok = await confirmInline(form, retryAll, {
        message: `Send every failed or rejected message matching the current filter back to delivery? Filter: ${describeFilters(filters)}.`,
        confirmLabel: 'Retry all matching',
      });
      if (!ok) return;
      await withBusy(retryAll, async () => {
        const res = await ctx.api('POST', '/api/v1/management/messages/retry', { body: filters });
        notify(`${fmtNumber(res && res.retried !== undefined ? res.retried : 0)} message(s) queued for retry.`);
        await ctx.reload();
      });
    });
    extra.push(retryAll);
  }

  const form = filterForm({ route: 'messages', fields: FIELDS, query: q, extra });
  const items = data.items || [];
  ctx.view.replaceChildren(
    pageHeader('Messages'),
    card(null, { class: 'card filters-card' }, form),
    card(null, null,
      el('p', { class: 'muted small', id: 'messages-count' },
        `${items.length} message${items.length === 1 ? '' : 's'} on this page${q.get('cursor') ? ' (not the first page)' : ''}.`),
      dataTable({
        testid: 'messages-table', caption: 'Messages', items, columns,
        empty: 'No messages match this filter.',
        rowAttrs: (m) => ({ 'data-id': m.id, 'data-status': m.status }),
      }),
      pager('messages', q, data.next_cursor)),
  );
}
