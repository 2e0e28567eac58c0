// pages/message-detail.js — one message: fields, the JSON as received, the attempt log and the
// correlated eSight error reports; Retry for failed/rejected messages where a retry can help
// (admin only; otherwise why not).

import { el, fmtNumber } from '../dom.js';
import { badge, pageHeader, card, dataTable, defList, timeEl } from '../ui.js';
import { retryable, retryButton, noRetryNote } from './messages.js';
import { errorItemsTable } from './errors.js';

export const title = 'Message';

function prettyJson(value) {
  if (typeof value === 'string') {
    try {
      return JSON.stringify(JSON.parse(value), null, 2);
    } catch {
      return value;
    }
  }
  return JSON.stringify(value, null, 2);
}

export async function render(ctx) {
  const [id] = ctx.params;
  const m = await ctx.api('GET', `/api/v1/service/send/messages/${encodeURIComponent(id)}`);
  if (!ctx.alive()) return;
  document.title = `Message ${m.id} · energyload`;

  const actions = [];
  if (ctx.isAdmin && retryable(m)) {
    actions.push(retryButton(ctx, m, ctx.reload, { id: 'retry-message', class: 'btn btn--primary' }));
  } else if (ctx.isAdmin) {
    actions.push(noRetryNote(m, { id: 'no-retry' }));
  }

  const attempts = dataTable({
    testid: 'attempt-log', caption: 'Attempt log', items: m.attempt_log || [], empty: 'No delivery attempt yet.',
    columns: [
      { label: 'At', render: (a) => timeEl(a.at) },
      { label: 'Outcome', render: (a) => badge(a.outcome) },
      { label: 'HTTP status', render: (a) => (a.http_status === null || a.http_status === undefined ? null : String(a.http_status)), class: 'num' },
      { label: 'Error', render: (a) => (a.error ? el('span', { class: 'wrap' }, a.error) : null) },
      { label: 'Duration', render: (a) => (a.duration_ms === null || a.duration_ms === undefined ? null : `${fmtNumber(a.duration_ms)} ms`), class: 'num' },
    ],
  });

  const reports = (m.esight_errors || []).map((r) => el('article', { class: 'subcard', 'data-id': r.id },
    el('h3', null, 'Report ', el('a', { href: `#/errors/${encodeURIComponent(r.id)}` }, r.eSightId || r.id)),
    defList([['Received', timeEl(r.received_at)], ['eSight messageId', el('span', { class: 'mono wrap' }, r.messageId)]]),
    errorItemsTable(r.errors)));

  ctx.view.replaceChildren(
    el('p', { class: 'breadcrumb' }, el('a', { href: '#/messages' }, '← Messages')),
    pageHeader(`Message ${m.id}`, ...actions),
    el('div', { id: 'message-detail', 'data-status': m.status, 'data-id': m.id },
      card('Summary', null, defList([
        ['Status', el('span', { id: 'message-status' }, badge(m.status))],
        ['messageId', el('span', { class: 'mono wrap' }, m.messageId)],
        ['Meter', m.meter_id], ['Site', m.site_id], ['Market', m.local_market], ['Feed type', m.data_feed_type],
        ['Datapoints', fmtNumber(m.datapoints)], ['Attempts', fmtNumber(m.attempts)],
        ['Error code', m.error_code ? el('span', { class: 'mono' }, m.error_code) : null],
        ['Created', timeEl(m.created_at)], ['Updated', timeEl(m.updated_at)],
        ['Delivered', timeEl(m.delivered_at)], ['Next attempt', timeEl(m.next_attempt_at)],
      ], { class: 'deflist deflist--wide' })),
      card('Attempt log', null, attempts),
      card('eSight errors', { id: 'message-esight-errors' },
        reports.length ? reports : el('p', { class: 'empty' }, 'No error report from eSight for this message.')),
      card('Message JSON (as received)', null,
        el('pre', { class: 'code', id: 'message-json', tabindex: '0', 'aria-label': 'Message JSON' }, prettyJson(m.message)))),
  );
}
