// pages/quarantine.js — error reports eSight sent that could not be parsed: when, why, size and
// the raw body (escaped, possibly truncated), each in a keyboard-operable <details>.

import { el, fmtBytes } from '../dom.js';
import { badge, pageHeader, card, defList, pager, timeEl } from '../ui.js';

export const title = 'Quarantine';

function item(q) {
  const body = q.body === null || q.body === undefined ? '' : String(q.body);
  const bodyBytes = new TextEncoder().encode(body).length;
  const truncated = typeof q.size === 'number' && bodyBytes < q.size;
  return el('li', { class: 'card quarantine-item', 'data-id': q.id },
    el('div', { class: 'quarantine-item__head' },
      el('h2', { class: 'card__title' }, `Report ${q.id}`), badge(q.code, q.code || 'unknown')),
    defList([['Received', timeEl(q.received_at)], ['Reason', el('span', { class: 'wrap' }, q.reason)], ['Size', fmtBytes(q.size)]]),
    el('details', { class: 'quarantine-item__body' },
      el('summary', null, truncated ? `Show body (first ${fmtBytes(bodyBytes)} of ${fmtBytes(q.size)})` : 'Show body'),
      el('pre', { class: 'code quarantine-body', tabindex: '0' }, body || '(empty body)')));
}

export async function render(ctx) {
  const q = ctx.query;
  const data = await ctx.api('GET', '/api/v1/service/receive/quarantine', {
    query: { limit: q.get('limit') || 50, cursor: q.get('cursor') },
  });
  if (!ctx.alive()) return;
  const items = data.items || [];
  ctx.view.replaceChildren(
    pageHeader('Quarantine'),
    el('p', { class: 'muted' }, 'Error reports from eSight that were not valid JSON of the expected shape. They are kept as received.'),
    items.length
      ? el('ul', { class: 'plain-list', id: 'quarantine-list', 'data-testid': 'quarantine-list' }, items.map(item))
      : card(null, null, el('p', { class: 'empty', id: 'quarantine-list', 'data-testid': 'quarantine-list-empty' }, 'The quarantine is empty.')),
    pager('quarantine', q, data.next_cursor),
  );
}
