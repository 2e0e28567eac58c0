// pages/system.js — System (admin): version, readiness checks (also when 503; with Litestream
// replication its check shows lag, txids, last confirmation and the replica), the effective
// configuration with secrets redacted by the server, and the backup download link. Byte counts
// read as sizes ("78.2 GiB").

import { el, compactJson, fmtBytes } from '../dom.js';
import { badge, pageHeader, card, defList, errorBox } from '../ui.js';

export const title = 'System';

const show = (v) => {
  if (v === null || v === undefined) return el('span', { class: 'muted' }, 'null');
  if (typeof v === 'object') return el('span', { class: 'mono wrap' }, Array.isArray(v) ? JSON.stringify(v) : compactJson(v));
  if (v === '<redacted>') return el('span', { class: 'redacted' }, '<redacted>');
  return el('span', { class: 'mono wrap' }, String(v));
};

// Byte counts (keys ending in `_bytes`) in words, the exact number in the tooltip.
const showField = (k, v) => {
  if (/_bytes$/.test(k) && typeof v === 'number') {
    return el('span', { class: 'mono', title: `${v.toLocaleString('en')} bytes`, 'data-bytes': String(v) }, fmtBytes(v));
  }
  // Unix times in milliseconds (replication's last confirmation) as a UTC time.
  if (/_unix_ms$/.test(k) && typeof v === 'number') {
    return el('span', { class: 'mono', title: String(v) }, new Date(v).toISOString());
  }
  return show(v);
};

function checkStatus(c) {
  if (c === null || typeof c !== 'object') return String(c);
  if (c.status !== undefined) return String(c.status);
  if (c.ok !== undefined) return c.ok ? 'ok' : 'fail';
  return 'unknown';
}

function readiness(r) {
  const checks = Object.entries((r && r.checks) || {});
  return el('div', { id: 'readiness', 'data-status': (r && r.status) || 'unknown' },
    el('p', { class: 'big-badge' }, 'Overall: ', badge((r && r.status) || 'unknown')),
    el('div', { class: 'check-grid' }, checks.map(([name, c]) => {
      const details = c && typeof c === 'object'
        ? Object.entries(c).filter(([k]) => k !== 'status' && k !== 'ok').map(([k, v]) => [k, showField(k, v)]) : [];
      return el('div', { class: 'check-item', 'data-check': name, 'data-status': checkStatus(c) },
        el('h3', null, name, ' ', badge(checkStatus(c))),
        details.length ? defList(details, { class: 'deflist deflist--compact' }) : null);
    })));
}

function configView(cfg) {
  if (!cfg || typeof cfg !== 'object') return el('p', { class: 'empty' }, 'No configuration returned.');
  const scalars = Object.entries(cfg).filter(([, v]) => v === null || typeof v !== 'object' || Array.isArray(v));
  const sections = Object.entries(cfg).filter(([, v]) => v !== null && typeof v === 'object' && !Array.isArray(v));
  return el('div', { id: 'config', class: 'config' },
    scalars.length ? defList(scalars.map(([k, v]) => [k, showField(k, v)])) : null,
    sections.map(([name, sec]) => el('section', { class: 'config-section', 'data-section': name },
      el('h3', null, `[${name}]`),
      defList(Object.entries(sec).map(([k, v]) => [k, showField(k, v)]), { class: 'deflist deflist--compact' }))));
}

export async function render(ctx) {
  const settle = (p) => p.then((v) => ({ v }), (e) => {
    if (e.status === 401 || e.name === 'AbortError') throw e;
    return { e };
  });
  const [version, ready, config] = await Promise.all([
    settle(ctx.api('GET', '/version')),
    settle(ctx.api('GET', '/readyz', { acceptStatus: [503] })),
    settle(ctx.api('GET', '/api/v1/management/config')),
  ]);
  if (!ctx.alive()) return;

  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const backup = el('a', {
    class: 'btn btn--primary', id: 'download-backup', 'data-action': 'download-backup',
    href: '/api/v1/management/backup', download: `energyload-backup-${stamp}.sqlite3`,
  }, 'Download backup');

  ctx.view.replaceChildren(
    pageHeader('System'),
    el('div', { class: 'card-grid card-grid--2' },
      card('Version', { id: 'version-card' }, version.e ? errorBox(version.e) : defList([
        ['Version', show(version.v.version)], ['Commit', show(version.v.commit)], ['Built', show(version.v.built)],
      ], { id: 'version-info' })),
      card('Backup', null,
        el('p', null, 'A consistent snapshot of the SQLite database, as it is now. The download is audited.'),
        backup)),
    card('Readiness', { id: 'readiness-card' }, ready.e ? errorBox(ready.e) : readiness(ready.v)),
    card('Effective configuration', { id: 'config-card' },
      el('p', { class: 'muted small' }, 'Defaults, config.toml and ENERGYLOAD_* environment merged. Secrets are redacted by the server.'),
      config.e ? errorBox(config.e) : configView(config.v)),
  );
}
