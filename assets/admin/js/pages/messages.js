// pages/messages.js — the message list: filters bound to the hash query, cursor paging,
// per-row Retry for failed/rejected where a retry can help (with a confirmation saying why it
// fails again unless fixed), "Retry all matching" with confirmation (admin only), and for
// failed/rejected a "by cause" view: the messages grouped by error code, each group linking to
// its messages.

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
  { name: 'error_code', label: 'Error code' },
];
const FILTER_NAMES = FIELDS.map((f) => f.name);

/** Whether to offer Retry: failed/rejected, unless a retry fails again whatever happens. */
export const retryable = (m) => (m.status === 'failed' || m.status === 'rejected') && m.retry !== 'fails_again';

/**
 * A Retry button for one message (`m` as listed: id, status, retry, retry_note); `after` runs
 * once the message is queued again. When a retry fails again unless something is fixed first,
 * the button asks for confirmation and says why.
 */
export function retryButton(ctx, m, after, attrs = {}) {
  const { id } = m;
  const btn = el('button', {
    type: 'button', class: 'btn btn--secondary btn--small', 'data-action': 'retry', 'data-id': id,
    'data-retry': m.retry || '', 'aria-label': `Retry message ${id}`, ...attrs,
  }, m.retry === 'after_fix' ? 'Retry…' : 'Retry');
  btn.addEventListener('click', async () => {
    if (m.retry === 'after_fix') {
      const ok = await confirmInline(btn, btn, {
        message: `This retry will fail again unless fixed first: ${m.retry_note}. Retry anyway?`,
        confirmLabel: 'Retry anyway',
      });
      if (!ok) return;
    }
    await withBusy(btn, async () => {
      await ctx.api('POST', `/api/v1/service/send/messages/${encodeURIComponent(id)}/retry`);
      notify(`Message ${id} queued for retry.`);
      if (after) await after();
    });
  });
  return btn;
}

/** Why there is no Retry for a message whose retry fails again whatever happens. */
export function noRetryNote(m, attrs = {}) {
  if (m.retry !== 'fails_again') return null;
  return el('span', { class: 'muted small no-retry', 'data-testid': 'no-retry', title: m.retry_note, ...attrs },
    `No retry: ${m.retry_note}`);
}

/**
 * Failure groups (GET /api/v1/service/send/failures or the stats' failure_groups) as a table:
 * "39 × reason", the code, the newest, and a link to the group's messages.
 */
export function failureGroupsTable(groups, { testid = 'failure-groups', empty = 'No failures.' } = {}) {
  return dataTable({
    testid, caption: 'Failures by cause', items: groups, empty,
    rowAttrs: (g) => ({ 'data-error-code': g.error_code, 'data-retry': g.retry, 'data-count': g.count }),
    columns: [
      { label: 'Cause', render: (g) => [el('span', { class: 'group-title' }, `${fmtNumber(g.count)} × ${g.reason}`),
        el('span', { class: 'sub mono' }, g.error_code)] },
      { label: 'Newest', render: (g) => [timeEl(g.newest), ' ', el('a', { href: `#/messages/${encodeURIComponent(g.newest_id)}` }, g.newest_id)] },
      { label: 'Retry', render: (g) => (g.retry === 'can_succeed' ? 'can succeed'
        : el('span', { class: 'sub' }, g.retry === 'after_fix' ? `only after a fix: ${g.retry_note}` : `fails again: ${g.retry_note}`)) },
      { label: 'What to do', render: (g) => el('span', { class: 'wrap' }, g.fix) },
      { label: 'Messages', render: (g) => el('a', {
        href: `#/messages?status=${encodeURIComponent(g.status)}&error_code=${encodeURIComponent(g.error_code)}`,
        'data-action': 'show-group',
      }, 'Show messages') },
    ],
  });
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
  const status = filters.status;
  const byCause = q.get('view') === 'causes' && (status === 'failed' || status === 'rejected');
  const groups = byCause
    ? await ctx.api('GET', '/api/v1/service/send/failures', { query: { status } })
    : null;
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
      render: (m) => (retryable(m) ? retryButton(ctx, m, ctx.reload) : noRetryNote(m)),
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
  // The "by cause" view of failed or rejected messages, and the switch between the two views.
  const views = [];
  for (const s of ['failed', 'rejected']) {
    const causes = new URLSearchParams({ status: s, view: 'causes' });
    views.push(el('a', {
      href: `#/messages?${causes}`, class: ['btn', 'btn--ghost', byCause && status === s ? 'is-current' : null],
      id: `view-causes-${s}`, 'data-action': 'group-by-cause', 'aria-current': byCause && status === s ? 'page' : null,
    }, `${s[0].toUpperCase()}${s.slice(1)} by cause`));
  }
  const causesCard = byCause
    ? card(`${status === 'failed' ? 'Failed' : 'Rejected'} messages by cause`, { id: 'causes-card' },
      failureGroupsTable(groups.items || [], { testid: 'messages-by-cause', empty: `No ${status} messages.` }))
    : null;
  ctx.view.replaceChildren(
    pageHeader('Messages', ...views),
    card(null, { class: 'card filters-card' }, form),
    ...[causesCard].filter(Boolean),
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
