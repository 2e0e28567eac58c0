// pages/users.js — the user list (admin) with sign-in locks ("locked until …", Unlock) and the
// "New user" inline form with roles as checkboxes.

import { el } from '../dom.js';
import { badge, pageHeader, card, dataTable, errorBox, pager, notify, timeEl, withBusy } from '../ui.js';

export const title = 'Users';
export const ROLES = ['admin', 'backoffice', 'esight', 'user'];
const ROLE_HELP = {
  admin: 'everything',
  backoffice: 'send data, read deliveries and eSight errors',
  esight: 'post error reports',
  user: 'own info, sign out',
};

/** A fieldset of role checkboxes; ids `<prefix>-<role>`. */
export function roleFieldset(prefix, selected = []) {
  return el('fieldset', { class: 'fieldset' },
    el('legend', null, 'Roles'),
    ROLES.map((r) => el('div', { class: 'check' },
      el('input', { type: 'checkbox', id: `${prefix}-${r}`, name: 'roles', value: r, checked: selected.includes(r) }),
      el('label', { for: `${prefix}-${r}` }, r, el('span', { class: 'muted small' }, ` — ${ROLE_HELP[r]}`)))));
}

export const checkedRoles = (form) => [...form.querySelectorAll('input[name="roles"]:checked')].map((i) => i.value);

export const rolesBadges = (roles) => el('span', { class: 'badges' }, (roles || []).map((r) => badge(r)));

/** "locked until <time>" while too many failed sign-ins lock the user, else null. */
export function lockMark(u) {
  if (!u.locked_until) return null;
  return el('span', { class: 'badge badge--bad', 'data-status': 'locked', 'data-testid': 'locked-until' },
    'locked until ', timeEl(u.locked_until));
}

/** An Unlock button for a locked user: lifts the lock (audited), then `done()`. */
export function unlockButton(ctx, u, done, attrs = {}) {
  const b = el('button', { type: 'button', class: 'btn btn--secondary btn--small', 'data-action': 'unlock-user', 'aria-label': `Unlock ${u.username}`, ...attrs }, 'Unlock');
  b.addEventListener('click', () => withBusy(b, async () => {
    await ctx.api('POST', `/api/v1/management/users/user/${encodeURIComponent(u.id)}/unlock`);
    notify(`Sign-in lock of ${u.username} lifted.`);
    await done();
  }));
  return b;
}

function createForm(ctx, opener, close) {
  const errorSlot = el('div', { id: 'create-user-error' });
  const form = el('form', { id: 'create-user-form', class: 'stack', novalidate: true, 'aria-labelledby': 'create-user-title' },
    el('h2', { class: 'card__title', id: 'create-user-title' }, 'New user'),
    errorSlot,
    el('div', { class: 'form-row' },
      el('div', { class: 'field' }, el('label', { for: 'new-username' }, 'Username'),
        el('input', { id: 'new-username', name: 'username', type: 'text', autocomplete: 'off', spellcheck: 'false', required: true, minlength: '3', maxlength: '64', 'aria-describedby': 'new-username-help' }),
        el('p', { class: 'help', id: 'new-username-help' }, '3–64 characters: letters, digits, . _ @ -')),
      el('div', { class: 'field' }, el('label', { for: 'new-password' }, 'Password'),
        el('input', { id: 'new-password', name: 'password', type: 'password', autocomplete: 'new-password', required: true, maxlength: '128', 'aria-describedby': 'new-password-help' }),
        el('p', { class: 'help', id: 'new-password-help' }, 'At least the configured minimum length (12 by default).'))),
    roleFieldset('new-role', ['user']),
    el('div', { class: 'form-actions' },
      el('button', { type: 'submit', class: 'btn btn--primary', id: 'create-user-submit' }, 'Create user'),
      el('button', { type: 'button', class: 'btn btn--ghost', id: 'create-user-cancel', on: { click: () => close(true) } }, 'Cancel')));
  form.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.preventDefault(); close(true); } });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    errorSlot.replaceChildren();
    const username = form.elements.username.value.trim();
    const password = form.elements.password.value;
    const roles = checkedRoles(form);
    if (!username || !password || roles.length === 0) {
      errorSlot.append(errorBox({ message: 'Enter a username, a password and at least one role.' }));
      return;
    }
    const btn = form.querySelector('#create-user-submit');
    btn.disabled = true;
    try {
      const res = await ctx.api('POST', '/api/v1/management/users/user', { body: { username, password, roles } });
      notify(`User ${username} created.`);
      close(false);
      await ctx.reload();
      const link = ctx.view.querySelector(`#users-table tr[data-id="${CSS.escape(String(res.id))}"] a`);
      if (link) link.focus();
    } catch (ex) {
      if (ex.name === 'AbortError' || ex.status === 401) return;
      errorSlot.append(errorBox(ex));
      form.elements.username.focus();
    } finally {
      if (btn.isConnected) btn.disabled = false;
    }
  });
  return form;
}

export async function render(ctx) {
  const q = ctx.query;
  const data = await ctx.api('GET', '/api/v1/management/users', { query: { limit: q.get('limit') || 100, cursor: q.get('cursor') } });
  if (!ctx.alive()) return;

  const panel = el('div', { class: 'card', id: 'new-user-panel', hidden: true });
  const opener = el('button', { type: 'button', class: 'btn btn--primary', id: 'new-user', 'aria-expanded': 'false', 'aria-controls': 'new-user-panel' }, 'New user');
  const close = (restoreFocus) => {
    panel.hidden = true;
    panel.replaceChildren();
    opener.setAttribute('aria-expanded', 'false');
    if (restoreFocus) opener.focus();
  };
  opener.addEventListener('click', () => {
    if (!panel.hidden) { close(true); return; }
    panel.replaceChildren(createForm(ctx, opener, close));
    panel.hidden = false;
    opener.setAttribute('aria-expanded', 'true');
    panel.querySelector('#new-username').focus();
  });

  ctx.view.replaceChildren(
    pageHeader('Users', opener),
    panel,
    card(null, null,
      dataTable({
        testid: 'users-table', caption: 'Users', items: data.items || [], empty: 'No users.',
        rowAttrs: (u) => ({ 'data-id': u.id, 'data-username': u.username }),
        columns: [
          { label: 'Username', render: (u) => el('a', { href: `#/users/${encodeURIComponent(u.id)}` }, u.username) },
          { label: 'Roles', render: (u) => rolesBadges(u.roles) },
          { label: 'Status', render: (u) => el('span', { class: 'badges' }, badge(u.status), lockMark(u),
            u.locked_until ? unlockButton(ctx, u, () => ctx.reload()) : null) },
          { label: 'Created', render: (u) => timeEl(u.created_at) },
          { label: 'Updated', render: (u) => timeEl(u.updated_at) },
          { label: 'Id', render: (u) => el('span', { class: 'mono muted' }, u.id) },
        ],
      }),
      pager('users', q, data.next_cursor)),
  );
}
