// Logging in: the dashboard's session is an HttpOnly cookie the server sets for a token (pasted
// here, or the one-time login link of `drover up`: /login#code=...). The page never stores the
// token itself. `can()` hides actions the signed-in role may not take; the server decides anyway.

import { t } from './i18n.js';
import { h, fill, button } from './ui.js';

let me = null;
const RANK = { viewer: 1, submitter: 2, operator: 3, admin: 4 };
const NEED = { read: 1, submit: 2, operate: 3, admin: 4 };

/** Who is signed in: {name, role}, or null. */
export function whoami() {
  return me;
}

/** Whether the signed-in role may take actions of `perm` (read, submit, operate, admin). */
export function can(perm) {
  return !!me && (RANK[me.role] || 0) >= NEED[perm];
}

async function postSession(body) {
  const res = await fetch('/v1/session', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(body),
    cache: 'no-store',
  });
  if (res.ok) return null;
  const data = await res.json().catch(() => ({}));
  return data.message || `${res.status}`;
}

/**
 * Redeems a login link (its fragment never reaches the server's logs), then asks who is signed
 * in. Resolves to null when signed in, else the message to show on the login form.
 */
export async function ensureSession() {
  let error = '';
  if (location.pathname === '/login') {
    const params = new URLSearchParams(location.hash.replace(/^#/, ''));
    const code = params.get('code');
    const token = params.get('token');
    history.replaceState(null, '', '/');
    if (code || token) error = (await postSession(code ? { code } : { token })) || '';
  }
  const res = await fetch('/v1/session', { headers: { accept: 'application/json' }, cache: 'no-store' });
  if (res.ok) {
    me = await res.json();
    return null;
  }
  return error || (res.status === 401 ? '' : `${res.status}`);
}

/** The login form: paste a token. */
export function renderLogin(root, message) {
  me = null;
  const input = h('input', { type: 'password', class: 'input', autocomplete: 'off', 'data-testid': 'login-token', placeholder: 'drover_…' });
  const error = h('div', { class: 'login-error', 'data-testid': 'login-error', text: message || '' });
  const submit = async (e) => {
    e.preventDefault();
    const msg = await postSession({ token: input.value.trim() });
    if (msg) fill(error, msg);
    else location.replace('/');
  };
  fill(root,
    h('form', { class: 'login', 'data-testid': 'login', onsubmit: submit },
      h('h1', { text: t('login.title') }),
      h('p', { class: 'muted', text: t('login.help') }),
      input,
      error,
      h('button', { type: 'submit', class: ['btn', 'btn-primary'], 'data-testid': 'login-submit' }, h('span', { text: t('login.submit') }))));
  input.focus();
}

/** The signed-in name and role, and a logout button, for the top bar. */
export function userBox() {
  if (!me) return null;
  const logout = async () => {
    await fetch('/v1/session', { method: 'DELETE', cache: 'no-store' });
    location.replace('/');
  };
  return h('span', { class: 'user-box' },
    h('span', { class: 'muted', 'data-testid': 'whoami', dataset: { role: me.role }, text: t('login.as', { name: me.name, role: me.role }) }),
    button(t('login.logout'), { onclick: logout, attrs: { 'data-testid': 'logout' } }));
}
