// pages/apikeys.js — API keys (admin): create (the key shown once, with a Copy button), list,
// revoke with confirmation.

import { el, fromLocalInput } from '../dom.js';
import { badge, pageHeader, card, dataTable, errorBox, pager, confirmInline, notify, withBusy, timeEl } from '../ui.js';

export const title = 'API keys';

function keyStatus(k) {
  if (k.revoked_at) return badge('revoked');
  if (k.expires_at && new Date(k.expires_at).getTime() < Date.now()) return badge('expired');
  return badge('active');
}

async function copyKey(input, btn) {
  let copied = false;
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(input.value);
      copied = true;
    }
  } catch { /* fall back to selecting */ }
  if (!copied) {
    input.focus();
    input.select();
    try { copied = document.execCommand('copy'); } catch { copied = false; }
  }
  btn.textContent = copied ? 'Copied' : 'Copy';
  notify(copied ? 'Key copied to the clipboard.' : 'The key is selected: press Ctrl+C (or ⌘C) to copy it.', copied ? 'ok' : 'info');
}

/** The one-time panel showing a newly created key. */
function newKeyPanel(res, onDone) {
  const input = el('input', { id: 'new-api-key', type: 'text', readonly: true, value: res.key, class: 'mono', spellcheck: 'false', autocomplete: 'off', 'aria-describedby': 'new-key-note' });
  input.addEventListener('focus', () => input.select());
  const copy = el('button', { type: 'button', class: 'btn btn--primary', id: 'copy-api-key', 'data-action': 'copy-key' }, 'Copy');
  copy.addEventListener('click', () => copyKey(input, copy));
  const done = el('button', { type: 'button', class: 'btn btn--ghost', id: 'new-key-done' }, 'Done');
  const panel = el('section', { class: 'card card--highlight', id: 'new-key-panel', 'aria-labelledby': 'new-key-title' },
    el('h2', { class: 'card__title', id: 'new-key-title' }, `New API key “${res.name}”`),
    el('p', { class: 'alert alert--warn', id: 'new-key-note' },
      el('strong', null, 'Copy this key now: you will not see it again. '),
      'Only a hash is stored; if it is lost, create a new key and revoke this one.'),
    el('div', { class: 'field' }, el('label', { for: 'new-api-key' }, 'API key'),
      el('div', { class: 'input-with-button' }, input, copy)),
    el('p', { class: 'muted small' }, `Prefix ${res.prefix || ''} · id ${res.id}`),
    el('div', { class: 'form-actions' }, done));
  done.addEventListener('click', () => onDone(panel));
  return panel;
}

export async function render(ctx) {
  const q = ctx.query;
  const data = await ctx.api('GET', '/api/v1/management/apikeys', { query: { limit: q.get('limit') || 100, cursor: q.get('cursor') } });
  if (!ctx.alive()) return;

  const panelSlot = el('div', { id: 'new-key-slot' });
  const listSlot = el('div');
  const errorSlot = el('div', { id: 'create-key-error' });

  const form = el('form', { id: 'create-key-form', class: 'stack', novalidate: true },
    errorSlot,
    el('div', { class: 'form-row' },
      el('div', { class: 'field' }, el('label', { for: 'new-key-name' }, 'Name'),
        el('input', { id: 'new-key-name', name: 'name', type: 'text', required: true, autocomplete: 'off', 'aria-describedby': 'new-key-name-help' }),
        el('p', { class: 'help', id: 'new-key-name-help' }, 'Who or what uses the key, e.g. “meter-gateway-lu”.')),
      el('div', { class: 'field' }, el('label', { for: 'new-key-expires' }, 'Expires (optional)'),
        el('input', { id: 'new-key-expires', name: 'expires', type: 'datetime-local', step: '60', 'aria-describedby': 'new-key-expires-help' }),
        el('p', { class: 'help', id: 'new-key-expires-help' }, 'Local time; leave empty for a key that does not expire.'))),
    el('div', { class: 'form-actions' },
      el('button', { type: 'submit', class: 'btn btn--primary', id: 'create-key-submit' }, 'Create key')));

  const drawList = (items, nextCursor) => {
    listSlot.replaceChildren(dataTable({
      testid: 'apikeys-table', caption: 'API keys', items, empty: 'No API keys yet.',
      rowAttrs: (k) => ({ 'data-id': k.id, 'data-name': k.name }),
      columns: [
        { label: 'Name', render: (k) => k.name },
        { label: 'Prefix', render: (k) => el('code', null, k.prefix) },
        { label: 'Status', render: keyStatus },
        { label: 'Created', render: (k) => timeEl(k.created_at) },
        { label: 'Expires', render: (k) => (k.expires_at ? timeEl(k.expires_at) : 'never') },
        { label: 'Last used', render: (k) => (k.last_used_at ? timeEl(k.last_used_at) : 'never') },
        { label: 'Actions', blank: true, render: (k) => (k.revoked_at ? null : revokeButton(k)) },
      ],
    }), pager('apikeys', q, nextCursor));
  };

  const reloadList = async () => {
    const fresh = await ctx.api('GET', '/api/v1/management/apikeys', { query: { limit: q.get('limit') || 100, cursor: q.get('cursor') } });
    if (ctx.alive()) drawList(fresh.items || [], fresh.next_cursor);
  };

  function revokeButton(k) {
    const b = el('button', { type: 'button', class: 'btn btn--danger btn--small', 'data-action': 'revoke-key', 'data-id': k.id, 'aria-label': `Revoke key ${k.name}` }, 'Revoke…');
    b.addEventListener('click', async () => {
      const ok = await confirmInline(listSlot.querySelector('.table-wrap') || listSlot, b, {
        message: `Revoke the key “${k.name}” (${k.prefix})? Clients using it are refused at once.`,
        confirmLabel: 'Revoke key', danger: true,
      });
      if (!ok) return;
      await withBusy(b, async () => {
        await ctx.api('DELETE', `/api/v1/management/apikeys/${encodeURIComponent(k.id)}`);
        notify(`Key ${k.name} revoked.`);
        await reloadList();
        const h = ctx.view.querySelector('h1');
        if (h) h.focus();
      });
    });
    return b;
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    errorSlot.replaceChildren();
    const name = form.elements.name.value.trim();
    const expiresRaw = form.elements.expires.value;
    if (!name) {
      errorSlot.append(errorBox({ message: 'Enter a name for the key.' }));
      form.elements.name.focus();
      return;
    }
    const btn = form.querySelector('#create-key-submit');
    btn.disabled = true;
    try {
      const res = await ctx.api('POST', '/api/v1/management/apikeys', {
        body: { name, expires_at: expiresRaw ? fromLocalInput(expiresRaw) : null },
      });
      form.reset();
      panelSlot.replaceChildren(newKeyPanel(res, (panel) => {
        panel.remove();
        form.elements.name.focus();
      }));
      notify(`API key ${name} created. Copy it now.`);
      panelSlot.querySelector('#new-api-key').focus();
      await reloadList();
    } catch (ex) {
      if (ex.name !== 'AbortError' && ex.status !== 401) errorSlot.append(errorBox(ex));
    } finally {
      if (btn.isConnected) btn.disabled = false;
    }
  });

  drawList(data.items || [], data.next_cursor);
  ctx.view.replaceChildren(
    pageHeader('API keys'),
    panelSlot,
    card('Create an API key', null, form),
    card('Keys', null, listSlot),
  );
}
