// pages/errors.js — eSight's error reports: the filtered list and one report's detail, with a
// link to the correlated message when there is one.

import { el, fmtNumber } from '../dom.js';
import { pageHeader, card, dataTable, defList, filterForm, filtersFrom, pager, timeEl } from '../ui.js';

const FIELDS = [
  { name: 'message_id', label: 'Message id' },
  { name: 'esight_id', label: 'eSight id' },
  { name: 'since', label: 'Since', type: 'datetime' },
  { name: 'until', label: 'Until', type: 'datetime' },
];

const messageLink = (id) => (id === null || id === undefined
  ? el('span', { class: 'muted' }, 'not correlated')
  : el('a', { href: `#/messages/${encodeURIComponent(id)}` }, `Message ${id}`));

/** The individual errors of one report as a table. */
export function errorItemsTable(errors) {
  return dataTable({
    testid: null, caption: 'Errors', items: errors || [], empty: 'The report lists no errors.',
    columns: [
      { label: 'Code', render: (e) => el('span', { class: 'mono' }, e.errorCode) },
      { label: 'Message', render: (e) => el('span', { class: 'wrap' }, e.errorMessage) },
      { label: 'Datapoint', render: (e) => e.datapointKey },
      { label: 'Value', render: (e) => (e.value === null || e.value === undefined ? null : (typeof e.value === 'object' ? JSON.stringify(e.value) : String(e.value))) },
      { label: 'Timestamp', render: (e) => e.tsIso8601 },
    ],
  });
}

export const list = {
  title: 'eSight errors',
  async render(ctx) {
    const q = ctx.query;
    const filters = filtersFrom(q, FIELDS.map((f) => f.name));
    const data = await ctx.api('GET', '/api/v1/service/receive/errors', {
      query: { ...filters, limit: q.get('limit') || 50, cursor: q.get('cursor') },
    });
    if (!ctx.alive()) return;
    ctx.view.replaceChildren(
      pageHeader('eSight errors'),
      card(null, { class: 'card filters-card' }, filterForm({ route: 'errors', fields: FIELDS, query: q })),
      card(null, null,
        dataTable({
          testid: 'errors-table', caption: 'eSight error reports', items: data.items || [],
          empty: 'No error report matches this filter.',
          rowAttrs: (r) => ({ 'data-id': r.id }),
          columns: [
            { label: 'Received', render: (r) => timeEl(r.received_at) },
            { label: 'eSight id', render: (r) => el('a', { href: `#/errors/${encodeURIComponent(r.id)}`, class: 'mono' }, r.eSightId || r.id) },
            { label: 'messageId', render: (r) => el('span', { class: 'mono wrap' }, r.messageId) },
            { label: 'Message', render: (r) => messageLink(r.message_id) },
            { label: 'Errors', render: (r) => fmtNumber((r.errors || []).length), class: 'num' },
            { label: 'First error', render: (r) => {
              const e = (r.errors || [])[0];
              return e ? `${e.errorCode || ''}${e.errorMessage ? `: ${e.errorMessage}` : ''}` : null;
            } },
          ],
        }),
        pager('errors', q, data.next_cursor)),
    );
  },
};

export const detail = {
  title: 'eSight error report',
  async render(ctx) {
    const [id] = ctx.params;
    const r = await ctx.api('GET', `/api/v1/service/receive/errors/${encodeURIComponent(id)}`);
    if (!ctx.alive()) return;
    ctx.view.replaceChildren(
      el('p', { class: 'breadcrumb' }, el('a', { href: '#/errors' }, '← eSight errors')),
      pageHeader(`Error report ${r.eSightId || r.id}`),
      el('div', { id: 'error-detail', 'data-id': r.id },
        card('Report', null, defList([
          ['Id', r.id],
          ['eSight id', el('span', { class: 'mono' }, r.eSightId)],
          ['eSight messageId', el('span', { class: 'mono wrap' }, r.messageId)],
          ['Message', messageLink(r.message_id)],
          ['Received', timeEl(r.received_at)],
        ])),
        card('Errors', { id: 'error-items' }, errorItemsTable(r.errors))),
    );
  },
};
