// pages/user-detail.js — one user (admin): change roles, reset password, deactivate/reactivate,
// "locked until …" with Unlock after failed sign-ins, and the user's sessions with "End session".

import { el } from '../dom.js';
import { badge, pageHeader, card, dataTable, defList, errorBox, confirmInline, notify, withBusy, timeEl } from '../ui.js';
import { roleFieldset, checkedRoles, rolesBadges, lockMark, unlockButton } from './users.js';

export const title = 'User';

function formWithErrors(id, children, onSubmit) {
  const errorSlot = el('div', { class: 'error-slot', id: `${id}-error` });
  const form = el('form', { id, class: 'stack', novalidate: true }, errorSlot, ...children);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    errorSlot.replaceChildren();
    const btn = form.querySelector('button[type="submit"]');
    btn.disabled = true;
    try {
      await onSubmit(form);
    } catch (ex) {
      if (ex.name !== 'AbortError' && ex.status !== 401) errorSlot.append(errorBox(ex));
    } finally {
      if (btn.isConnected) btn.disabled = false;
    }
  });
  return form;
}

export async function render(ctx) {
  const [id] = ctx.params;
  const base = `/api/v1/management/users/user`;
  const [u, sessions] = await Promise.all([
    ctx.api('GET', `${base}/${encodeURIComponent(id)}`),
    ctx.api('GET', `${base}/${encodeURIComponent(id)}/sessions`).catch((e) => {
      if (e.status === 401 || e.name === 'AbortError') throw e;
      return { error: e };
    }),
  ]);
  if (!ctx.alive()) return;
  document.title = `User ${u.username} · energyload`;
  const enc = encodeURIComponent(u.id);

  const rolesForm = formWithErrors('edit-roles-form', [
    roleFieldset('edit-role', u.roles || []),
    el('div', { class: 'form-actions' }, el('button', { type: 'submit', class: 'btn btn--primary', id: 'save-roles' }, 'Save roles')),
  ], async (form) => {
    const roles = checkedRoles(form);
    if (roles.length === 0) throw new Error('Choose at least one role.');
    await ctx.api('PATCH', `${base}/edit/${enc}`, { body: { roles } });
    notify(`Roles of ${u.username} saved.`);
    await ctx.reload();
  });

  const passwordForm = formWithErrors('reset-password-form', [
    el('div', { class: 'field' }, el('label', { for: 'reset-password' }, 'New password'),
      el('input', { id: 'reset-password', name: 'password', type: 'password', autocomplete: 'new-password', maxlength: '128', required: true })),
    el('div', { class: 'form-actions' }, el('button', { type: 'submit', class: 'btn btn--primary', id: 'save-password' }, 'Set password')),
  ], async (form) => {
    const password = form.elements.password.value;
    if (!password) throw new Error('Enter the new password.');
    await ctx.api('PATCH', `${base}/edit/${enc}`, { body: { password } });
    form.elements.password.value = '';
    notify(`Password of ${u.username} changed.`);
    if (u.locked_until) await ctx.reload();
  });

  const statusActions = el('div', { class: 'form-actions', id: 'status-actions' });
  if (u.status === 'deactivated') {
    const re = el('button', { type: 'button', class: 'btn btn--primary', id: 'reactivate-user', 'data-action': 'reactivate-user' }, 'Reactivate');
    re.addEventListener('click', () => withBusy(re, async () => {
      await ctx.api('PATCH', `${base}/edit/${enc}`, { body: { status: 'active' } });
      notify(`${u.username} is active again.`);
      await ctx.reload();
    }));
    statusActions.append(re);
  } else {
    const de = el('button', { type: 'button', class: 'btn btn--danger', id: 'deactivate-user', 'data-action': 'deactivate-user' }, 'Deactivate…');
    de.addEventListener('click', async () => {
      const ok = await confirmInline(statusActions, de, {
        message: `Deactivate ${u.username}? Every token of this user is refused from now on.`,
        confirmLabel: 'Deactivate', danger: true,
      });
      if (!ok) return;
      await withBusy(de, async () => {
        await ctx.api('DELETE', `${base}/deactivate/${enc}`);
        notify(`${u.username} deactivated.`);
        await ctx.reload();
      });
    });
    statusActions.append(de);
  }
  if (u.locked_until) {
    statusActions.append(unlockButton(ctx, u, () => ctx.reload(), { id: 'unlock-user', class: 'btn btn--secondary' }));
  }

  let sessionsView;
  if (sessions.error) {
    sessionsView = errorBox(sessions.error);
  } else {
    sessionsView = dataTable({
      testid: 'sessions-table', caption: 'Sessions', items: sessions.items || [], empty: 'No active session.',
      rowAttrs: (s) => ({ 'data-jti': s.jti }),
      columns: [
        { label: 'Token id', render: (s) => el('span', { class: 'mono wrap' }, s.jti) },
        { label: 'Issued', render: (s) => timeEl(s.issued_at) },
        { label: 'Expires', render: (s) => timeEl(s.expires_at) },
        { label: 'IP', render: (s) => s.ip },
        { label: 'User agent', render: (s) => (s.user_agent ? el('span', { class: 'wrap small' }, s.user_agent) : null) },
        { label: 'Actions', blank: true, render: (s) => {
          const b = el('button', { type: 'button', class: 'btn btn--secondary btn--small', 'data-action': 'end-session', 'data-jti': s.jti, 'aria-label': `End session ${s.jti}` }, 'End session');
          b.addEventListener('click', () => withBusy(b, async () => {
            await ctx.api('DELETE', `/api/v1/management/sessions/${encodeURIComponent(s.jti)}`);
            notify('Session ended.');
            await ctx.reload();
          }));
          return b;
        } },
      ],
    });
  }

  ctx.view.replaceChildren(
    el('p', { class: 'breadcrumb' }, el('a', { href: '#/users' }, '← Users')),
    pageHeader(`User ${u.username}`),
    el('div', { id: 'user-detail', 'data-id': u.id, 'data-status': u.status },
      card('Account', null, defList([
        ['Username', u.username], ['Id', el('span', { class: 'mono' }, u.id)],
        ['Roles', rolesBadges(u.roles)], ['Status', el('span', { id: 'user-status', class: 'badges' }, badge(u.status), lockMark(u))],
        ['Created', timeEl(u.created_at)], ['Updated', timeEl(u.updated_at)],
      ]), statusActions),
      el('div', { class: 'card-grid card-grid--2' },
        card('Roles', null, rolesForm),
        card('Reset password', null, passwordForm)),
      card('Sessions', { id: 'user-sessions' }, sessionsView)),
  );
}
