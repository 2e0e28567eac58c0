// pages/dashboard.js — the dashboard: the attention strip (what needs the operator, most
// serious first, each with its fix; "All clear" otherwise), messages by status,
// deliveries-per-minute chart, oldest pending age, eSight reachability, delivery state with its
// concurrency and eSight's latency, failures grouped by cause (count × reason, newest); refreshes every 5 s while the
// tab is visible; admins can pause/resume delivery.

import { el, clear, fmtAge, fmtNumber, fmtTime } from '../dom.js';
import { badge, pageHeader, card, errorBox, notify, withBusy } from '../ui.js';
import { deliveriesChart } from '../chart.js';
import { failureGroupsTable } from './messages.js';

export const title = 'Dashboard';

const REFRESH_MS = 5000;
const STATUSES = ['pending', 'delivering', 'delivered', 'failed', 'rejected'];

function statusCards(byStatus) {
  return el('div', { class: 'stat-grid', id: 'stats-by-status', 'data-testid': 'stats-by-status' },
    STATUSES.map((s) => el('a', {
      class: `stat stat--${s}`, href: `#/messages?status=${s}`, 'data-status-count': s, 'data-focus-key': `stat-${s}`,
    },
    el('span', { class: 'stat__value' }, fmtNumber((byStatus || {})[s] || 0)),
    el('span', { class: 'stat__label' }, badge(s)))));
}

function reachability(esight) {
  const r = esight ? esight.reachable : null;
  if (r === true) return badge('reachable');
  if (r === false) return badge('unreachable');
  return badge('unknown', 'not checked yet');
}

// How many consumption posts are out at eSight, against the adaptive limit, and how fast
// eSight answers: throughput is about in-flight / latency.
function concurrencyLines(d) {
  if (d.concurrency_limit === undefined) return [];
  const ms = (v) => (v === null || v === undefined ? '—' : `${fmtNumber(Math.round(v))} ms`);
  const lines = [
    el('p', { class: 'muted small', id: 'delivery-concurrency' },
      `${fmtNumber(d.in_flight || 0)} in flight · limit ${fmtNumber(d.concurrency_limit)} of ${fmtNumber(d.max_in_flight)}`),
    el('p', { class: 'muted small', id: 'esight-latency' },
      `eSight answers in ${ms(d.esight_latency_ms)} (base ${ms(d.esight_base_latency_ms)})`),
  ];
  if (d.retry_after_hold_seconds) {
    lines.push(el('p', { class: 'alert alert--warn small', id: 'retry-after-hold' },
      `eSight asked to wait: holding posts for ${d.retry_after_hold_seconds} s`));
  }
  return lines;
}

function healthCards(stats) {
  const d = stats.delivery || {};
  const workers = d.workers === undefined ? '—' : `${d.workers_alive ?? '—'} of ${d.workers} delivery threads alive`;
  return el('div', { class: 'card-grid' },
    card('Deliveries in the last hour', null,
      el('p', { class: 'big-number', id: 'delivered-last-hour' }, fmtNumber(stats.delivered_last_hour || 0)),
      // Why this need not match the "delivered" count above: that counts messages by their
      // status now, and a message eSight rejected after delivery counts as "rejected".
      el('p', { class: 'muted small', id: 'delivered-later-rejected' },
        `${fmtNumber(stats.delivered_last_hour_later_rejected || 0)} of them later rejected by eSight (counted as rejected above)`)),
    card('Oldest pending message', null,
      el('p', { class: 'big-number', id: 'oldest-pending-age' },
        stats.oldest_pending_age_seconds === null || stats.oldest_pending_age_seconds === undefined
          ? 'none pending' : fmtAge(stats.oldest_pending_age_seconds))),
    card('eSight', null, el('p', { class: 'big-badge', id: 'esight-reachability' }, reachability(stats.esight))),
    card('Delivery', null,
      el('p', { class: 'big-badge', id: 'delivery-state', 'data-state': d.state || 'unknown' }, badge(d.state || 'unknown')),
      ...concurrencyLines(d),
      el('p', { class: 'muted small', id: 'delivery-workers' }, workers)));
}

const SEVERITY_LABEL = { critical: 'Critical', warning: 'Warning', info: 'Info' };

// One line per item of GET /api/v1/management/attention (already ordered most serious first).
function attentionStrip(attention) {
  const items = (attention && attention.items) || [];
  if (items.length === 0) {
    return el('section', { class: 'attention-strip attention-strip--clear', id: 'attention-strip', 'data-testid': 'attention-strip', 'aria-label': 'Needs attention' },
      el('p', { class: 'alert alert--ok', id: 'attention-all-clear' }, 'All clear — nothing needs your attention'));
  }
  return el('section', { class: 'attention-strip', id: 'attention-strip', 'data-testid': 'attention-strip', 'aria-label': 'Needs attention' },
    el('h2', { class: 'sr-only' }, 'Needs attention'),
    el('ul', { class: 'attention-list' }, items.map((item) => el('li', {
      class: ['attention', `attention--${item.severity}`], 'data-code': item.code, 'data-severity': item.severity,
    },
    el('span', { class: `badge badge--${item.severity === 'critical' ? 'bad' : item.severity === 'warning' ? 'warn' : 'info'}` }, SEVERITY_LABEL[item.severity] || item.severity),
    ' ',
    el('strong', { class: 'attention__title' }, item.title),
    el('span', { class: 'attention__detail' }, ` ${item.detail}`),
    el('span', { class: 'attention__fix' }, el('b', null, ' Fix: '), item.fix)))));
}

function deliveryButton(ctx, stats, refresh) {
  if (!ctx.isAdmin) return null;
  const d = stats.delivery || {};
  const paused = d.state === 'paused';
  const btn = el('button', {
    type: 'button',
    class: ['btn', paused ? 'btn--primary' : 'btn--secondary'],
    id: paused ? 'resume-delivery' : 'pause-delivery',
    'data-action': paused ? 'resume-delivery' : 'pause-delivery',
    'data-focus-key': 'delivery-toggle',
  }, paused ? 'Resume delivery' : 'Pause delivery');
  btn.addEventListener('click', () => withBusy(btn, async () => {
    const res = await ctx.api('POST', `/api/v1/management/delivery/${paused ? 'resume' : 'pause'}`);
    notify(res && res.paused ? 'Delivery paused.' : 'Delivery resumed.');
    await refresh();
  }));
  return btn;
}

export async function render(ctx) {
  const actions = el('div', { class: 'page-actions__inner' });
  const updated = el('p', { class: 'muted small', id: 'last-updated' });
  const errorSlot = el('div', { class: 'error-slot' });
  const body = el('div', { id: 'dashboard-body' });
  let timer = null;
  let inFlight = false;

  const draw = (stats, attention) => {
    // Keep keyboard focus across redraws (elements carry data-focus-key).
    const focused = document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.focusKey : null;
    clear(actions);
    const btn = deliveryButton(ctx, stats, refresh);
    if (btn) actions.append(btn);
    clear(body);
    body.append(
      attentionStrip(attention),
      statusCards(stats.by_status),
      healthCards(stats),
      card('Deliveries per minute (last hour)', { id: 'chart-card' }, deliveriesChart(stats.deliveries_per_minute)),
      card('Failures by cause', { id: 'failure-groups-card' }, failureGroupsTable(stats.failure_groups || []),
        el('p', null, el('a', { href: '#/messages?status=failed&view=causes', 'data-focus-key': 'all-failed' }, 'All failed messages by cause'))),
    );
    updated.textContent = `Updated ${fmtTime(new Date().toISOString())} · refreshes every 5 s`;
    if (focused) {
      const again = ctx.view.querySelector(`[data-focus-key="${CSS.escape(focused)}"]`);
      if (again) again.focus({ preventScroll: true });
    }
  };

  // The statistics and the attention list, fetched together so they refresh as one.
  const load = () => Promise.all([
    ctx.api('GET', '/api/v1/service/send/stats'),
    ctx.api('GET', '/api/v1/management/attention'),
  ]);

  async function refresh() {
    if (inFlight || !ctx.alive()) return;
    inFlight = true;
    try {
      const [stats, attention] = await load();
      if (!ctx.alive()) return;
      clear(errorSlot);
      draw(stats, attention);
    } catch (e) {
      if (e.name === 'AbortError' || e.status === 401 || !ctx.alive()) return;
      clear(errorSlot);
      errorSlot.append(errorBox(e));
    } finally {
      inFlight = false;
    }
  }

  const schedule = () => {
    clearInterval(timer);
    timer = null;
    if (!document.hidden) timer = setInterval(refresh, REFRESH_MS);
  };
  const onVisibility = () => {
    if (!document.hidden) refresh();
    schedule();
  };

  // First load: errors bubble up to the router (error page with "Try again").
  const [stats, attention] = await load();
  if (!ctx.alive()) return;
  clear(ctx.view);
  ctx.view.append(pageHeader('Dashboard', actions), updated, errorSlot, body);
  draw(stats, attention);
  document.addEventListener('visibilitychange', onVisibility);
  schedule();
  ctx.onCleanup(() => {
    clearInterval(timer);
    document.removeEventListener('visibilitychange', onVisibility);
  });
}
