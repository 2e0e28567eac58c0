// chart.js — the dashboard's deliveries-per-minute chart as inline SVG (stacked bars built with
// createElementNS), with axis labels and an accessible title/description summary.

import { svg, el, fmtClock } from './dom.js';

const SERIES = [
  ['delivered', 'Delivered'],
  ['retry', 'Retry'],
  ['failed', 'Failed'],
];

function niceMax(v) {
  if (v <= 4) return 4;
  const exp = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * exp >= v) return m * exp;
  return 10 * exp;
}

/** points: [{minute, delivered, retry, failed}] oldest first. Returns a <figure>. */
export function deliveriesChart(points) {
  const data = Array.isArray(points) ? points : [];
  const W = 720; const H = 240;
  const m = { top: 12, right: 12, bottom: 34, left: 44 };
  const iw = W - m.left - m.right; const ih = H - m.top - m.bottom;
  const totals = data.map((p) => (p.delivered || 0) + (p.retry || 0) + (p.failed || 0));
  const max = niceMax(Math.max(0, ...totals));
  const sum = (k) => data.reduce((a, p) => a + (p[k] || 0), 0);
  const peak = totals.length ? Math.max(...totals) : 0;
  const peakAt = peak > 0 ? data[totals.indexOf(peak)].minute : null;

  const summary = data.length === 0
    ? 'No delivery data for the last hour.'
    : `Over the last ${data.length} minutes: ${sum('delivered')} delivered, ${sum('retry')} retried, ` +
      `${sum('failed')} failed` + (peakAt ? `; peak ${peak} per minute at ${fmtClock(peakAt)}.` : '.');

  const root = svg('svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img',
    'aria-labelledby': 'chart-title chart-desc', id: 'deliveries-chart', 'data-testid': 'deliveries-chart',
    preserveAspectRatio: 'xMidYMid meet',
  },
  svg('title', { id: 'chart-title' }, 'Deliveries per minute, last hour'),
  svg('desc', { id: 'chart-desc' }, summary));

  // Y grid and labels.
  const g = svg('g', { transform: `translate(${m.left},${m.top})` });
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    const y = ih - f * ih;
    g.append(svg('line', { x1: 0, x2: iw, y1: y, y2: y, class: f === 0 ? 'chart__axis' : 'chart__grid' }));
    g.append(svg('text', { x: -8, y: y + 4, class: 'chart__label', 'text-anchor': 'end' }, String(Math.round(f * max * 100) / 100)));
  }
  g.append(svg('text', {
    class: 'chart__label chart__ytitle', 'text-anchor': 'middle', transform: `translate(${-34},${ih / 2}) rotate(-90)`,
  }, 'per minute'));

  // Bars, stacked delivered → retry → failed.
  const slot = data.length ? iw / data.length : iw;
  const bw = Math.max(1, slot * 0.72);
  data.forEach((p, i) => {
    const x = i * slot + (slot - bw) / 2;
    let y = ih;
    const bar = svg('g', { class: 'chart__bar' },
      svg('title', null, `${fmtClock(p.minute)}: ${p.delivered || 0} delivered, ${p.retry || 0} retry, ${p.failed || 0} failed`));
    // An invisible full-height hit area so the tooltip works on empty minutes too.
    bar.append(svg('rect', { x: i * slot, y: 0, width: slot, height: ih, class: 'chart__hit' }));
    for (const [k] of SERIES) {
      const v = p[k] || 0;
      if (!v) continue;
      const h = (v / max) * ih;
      y -= h;
      bar.append(svg('rect', { x, y, width: bw, height: h, class: `chart__series chart__series--${k}` }));
    }
    g.append(bar);
    const last = i === data.length - 1;
    if ((i % 10 === 0 && data.length - i > 6) || last) {
      g.append(svg('text', {
        x: last ? iw : (i === 0 ? 0 : i * slot + slot / 2), y: ih + 26, class: 'chart__label', 'text-anchor': last ? 'end' : (i === 0 ? 'start' : 'middle'),
      }, fmtClock(p.minute)));
    }
  });
  root.append(g);

  const legend = el('ul', { class: 'chart-legend', 'aria-hidden': 'true' },
    SERIES.map(([k, label]) => el('li', null, el('span', { class: `swatch swatch--${k}` }), label)));
  return el('figure', { class: 'chart-figure' }, root,
    el('figcaption', { class: 'chart-caption' }, legend, el('p', { class: 'muted small', id: 'chart-summary' }, summary)));
}
