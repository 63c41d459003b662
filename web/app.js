// The shell (sidebar, top bar, language switch, live badge), the hash router, and the
// "new task" dialog. Pages live in pages/*.js and export {mount(root, params, ctx)}.

import { t, getLang, setLang, LANGS } from './i18n.js';
import { h, icon, fill, button, toast, shellSplit, append } from './ui.js';
import { api } from './api.js';
import { ensureSession, renderLogin, userBox, can } from './auth.js';
import * as live from './live.js';
import overview from './pages/overview.js';
import tasks from './pages/tasks.js';
import task from './pages/task.js';
import workers from './pages/workers.js';
import { workflowList, workflowGraph } from './pages/workflows.js';
import schedules from './pages/schedules.js';
import audit from './pages/audit.js';
import cluster from './pages/cluster.js';

const NAV = [
  { id: 'overview', href: '#/', iconName: 'overview' },
  { id: 'tasks', href: '#/tasks', iconName: 'tasks' },
  { id: 'workers', href: '#/workers', iconName: 'workers' },
  { id: 'workflows', href: '#/workflows', iconName: 'workflows' },
  { id: 'schedules', href: '#/schedules', iconName: 'schedules' },
  { id: 'cluster', href: '#/cluster', iconName: 'cluster' },
  { id: 'audit', href: '#/audit', iconName: 'audit', perm: 'admin' },
];

const ROUTES = [
  { re: /^\/?$/, nav: 'overview', page: overview },
  { re: /^\/overview$/, nav: 'overview', page: overview },
  { re: /^\/tasks$/, nav: 'tasks', page: tasks },
  { re: /^\/tasks\/([^/]+)$/, nav: 'tasks', page: task, keys: ['id'] },
  { re: /^\/workers$/, nav: 'workers', page: workers },
  { re: /^\/workflows$/, nav: 'workflows', page: workflowList },
  { re: /^\/workflows\/([^/]+)$/, nav: 'workflows', page: workflowGraph, keys: ['id'] },
  { re: /^\/schedules$/, nav: 'schedules', page: schedules },
  { re: /^\/audit$/, nav: 'audit', page: audit },
  { re: /^\/cluster$/, nav: 'cluster', page: cluster },
];

let current = null; // {ctx, route}
const shell = {};

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, qs] = raw.split('?');
  return { path, query: new URLSearchParams(qs || '') };
}

function buildShell() {
  const root = document.getElementById('app');
  shell.nav = h('nav', { class: 'nav' });
  shell.live = h('span', { class: 'live', 'data-testid': 'live' });
  shell.crumbs = h('div', { class: 'crumbs' });
  shell.langs = h('div', { class: 'lang-switch', role: 'group' },
    LANGS.map((l) => h('button', {
      type: 'button',
      class: 'lang-btn',
      dataset: { lang: l.code },
      onclick: () => setLang(l.code),
      text: l.label,
    })));
  shell.newTask = can('submit') ? button('', { kind: 'primary', iconName: 'plus', onclick: openSubmitDialog, attrs: { 'data-testid': 'new-task' } }) : null;
  shell.page = h('main', { class: 'page', id: 'page' });
  shell.foot = h('div', { class: 'sidebar-foot' });
  fill(root,
    h('aside', { class: 'sidebar' },
      h('a', { class: 'brand', href: '#/' }, logo(), h('span', { class: 'brand-name', text: 'Drover' })),
      shell.nav,
      shell.foot),
    h('div', { class: 'main' },
      h('header', { class: 'topbar' },
        shell.crumbs,
        h('div', { class: 'topbar-right' }, shell.live, shell.newTask, userBox(), h('span', { class: 'lang-icon' }, icon('globe', 16)), shell.langs)),
      shell.page));
}

function logo() {
  const svgNS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(svgNS, 'svg');
  svg.setAttribute('viewBox', '0 0 32 32');
  svg.setAttribute('width', '28');
  svg.setAttribute('height', '28');
  svg.setAttribute('class', 'logo');
  const parts = [
    ['rect', { x: 1, y: 1, width: 30, height: 30, rx: 8, class: 'logo-bg' }],
    ['path', { d: 'M9 10h7a6 6 0 0 1 0 12H9z', class: 'logo-d' }],
    ['circle', { cx: 22.5, cy: 10.5, r: 2.5, class: 'logo-dot' }],
  ];
  for (const [tag, attrs] of parts) {
    const el = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    svg.append(el);
  }
  return svg;
}

function renderShellText() {
  document.documentElement.lang = getLang();
  // An entry a role may not use is not shown (its page still says why, at its URL).
  fill(shell.nav, NAV.filter((n) => !n.perm || can(n.perm)).map((n) => h('a', {
    class: ['nav-item', current && current.route.nav === n.id && 'active'],
    href: n.href,
    dataset: { nav: n.id },
  }, icon(n.iconName), h('span', { text: t(`nav.${n.id}`) }))));
  if (shell.newTask) shell.newTask.querySelector('span').textContent = t('action.newTask');
  for (const b of shell.langs.querySelectorAll('button')) {
    b.classList.toggle('active', b.dataset.lang === getLang());
    b.setAttribute('aria-pressed', String(b.dataset.lang === getLang()));
  }
  fill(shell.foot, h('div', { class: 'foot-line', text: t('app.tagline') }), h('a', { href: '/openapi.json', class: 'foot-link', text: t('app.api') }));
  renderLive(live.getMode());
}

function renderLive(mode) {
  if (!shell.live) return;
  shell.live.className = `live live-${mode}`;
  shell.live.dataset.mode = mode;
  shell.live.title = t(`live.${mode}.hint`);
  fill(shell.live, h('span', { class: 'live-dot' }), t(`live.${mode}`));
}

/** What a page gets: lifetime, timers and live events that end with the page. */
function makeCtx(root) {
  const cleanups = [];
  let alive = true;
  return {
    root,
    get alive() { return alive; },
    onCleanup(fn) { cleanups.push(fn); },
    every(ms, fn) {
      const id = setInterval(() => { if (alive && !document.hidden) fn(); }, ms);
      cleanups.push(() => clearInterval(id));
    },
    onEvent(fn) {
      cleanups.push(live.onEvent((ev) => { if (alive) fn(ev); }));
    },
    setCrumbs(...parts) {
      fill(shell.crumbs, parts.map((p, i) => [
        i ? h('span', { class: 'crumb-sep', text: '/' }) : null,
        p.href ? h('a', { href: p.href, class: 'crumb', text: p.text }) : h('span', { class: 'crumb current', text: p.text }),
      ]));
      document.title = `${parts[parts.length - 1].text} · Drover`;
    },
    /** Changes the query of the current hash without re-mounting the page. */
    replaceQuery(params) {
      const { path } = parseHash();
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
      const qs = q.toString();
      history.replaceState(null, '', `#${path}${qs ? `?${qs}` : ''}`);
    },
    destroy() {
      alive = false;
      for (const fn of cleanups.splice(0)) {
        try { fn(); } catch (e) { console.error(e); }
      }
    },
  };
}

function route() {
  const { path, query } = parseHash();
  let found = null;
  let params = {};
  for (const r of ROUTES) {
    const m = r.re.exec(path);
    if (m) {
      found = r;
      (r.keys || []).forEach((k, i) => { params[k] = decodeURIComponent(m[i + 1]); });
      break;
    }
  }
  if (current) current.ctx.destroy();
  const root = h('div', { class: 'page-inner' });
  fill(shell.page, root);
  if (!found) {
    current = { ctx: makeCtx(root), route: { nav: null } };
    current.ctx.setCrumbs({ text: t('err.notFoundPage') });
    append(root, h('div', { class: 'empty' }, h('div', { class: 'empty-title', text: t('err.notFoundPage') }), h('a', { href: '#/', class: 'btn btn-secondary', text: t('nav.overview') })));
    renderShellText();
    return;
  }
  const ctx = makeCtx(root);
  current = { ctx, route: found };
  renderShellText();
  params = { ...params, query };
  try {
    found.page.mount(root, params, ctx);
  } catch (e) {
    console.error(e);
  }
  shell.page.scrollTop = 0;
}

// ---- submit a task by hand ---------------------------------------------------------------

function openSubmitDialog() {
  const field = (name, label, input, hint) => h('label', { class: 'field', dataset: { field: name } },
    h('span', { class: 'field-label', text: label }), input, hint && h('span', { class: 'field-hint', text: hint }),
    h('span', { class: 'field-error' }));
  const cmd = h('input', { class: 'input mono', name: 'command', placeholder: "sh -c 'echo hello'", autocomplete: 'off', spellcheck: 'false' });
  const queue = h('input', { class: 'input', name: 'queue', placeholder: 'default' });
  const kind = h('input', { class: 'input', name: 'kind', placeholder: 'default' });
  const priority = h('input', { class: 'input', name: 'priority', type: 'number', value: '0' });
  const retries = h('input', { class: 'input', name: 'retries', type: 'number', min: '0', value: '0' });
  const timeout = h('input', { class: 'input', name: 'timeout', placeholder: '30s' });
  const delay = h('input', { class: 'input', name: 'delay', placeholder: '0s' });
  const errorBox = h('div', { class: 'form-error' });
  const submit = button(t('action.submit'), { kind: 'primary', attrs: { 'data-role': 'confirm', type: 'submit' } });
  submit.type = 'submit';
  const close = () => { overlay.remove(); document.removeEventListener('keydown', onKey); };
  const onKey = (e) => { if (e.key === 'Escape') close(); };
  const form = h('form', {
    class: 'dialog dialog-wide',
    role: 'dialog',
    'aria-modal': 'true',
    onsubmit: async (e) => {
      e.preventDefault();
      errorBox.textContent = '';
      for (const el of form.querySelectorAll('.field')) el.classList.remove('has-error');
      let argv;
      try {
        argv = shellSplit(cmd.value.trim());
      } catch (err) {
        showFieldError('argv', err.message);
        return;
      }
      const req = { argv };
      if (queue.value.trim()) req.queue = queue.value.trim();
      if (kind.value.trim()) req.kind = kind.value.trim();
      if (priority.value !== '' && Number(priority.value) !== 0) req.priority = Number(priority.value);
      if (retries.value !== '' && Number(retries.value) > 0) req.retries = Number(retries.value);
      if (timeout.value.trim()) req.timeout = timeout.value.trim();
      if (delay.value.trim()) req.delay = delay.value.trim();
      submit.disabled = true;
      try {
        const created = await api.submit(req);
        close();
        toast(t('task.submitted', { id: created.id }), 'success');
        location.hash = `#/tasks/${created.id}`;
      } catch (err) {
        showFieldError(err.field, err.message);
      } finally {
        submit.disabled = false;
      }
    },
  },
  h('h3', { text: t('submit.title') }),
  h('div', { class: 'dialog-body form-grid' },
    field('argv', t('submit.command'), cmd, t('submit.commandHint')),
    h('div', { class: 'form-row' },
      field('queue', t('field.queue'), queue),
      field('kind', t('field.kind'), kind),
      field('priority', t('field.priority'), priority)),
    h('div', { class: 'form-row' },
      field('retries', t('field.retries'), retries),
      field('timeout', t('field.timeout'), timeout),
      field('delay', t('field.delay'), delay)),
    errorBox),
  h('div', { class: 'dialog-actions' }, button(t('action.back'), { onclick: close }), submit));
  function showFieldError(name, message) {
    const f = name && form.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
    if (f) {
      f.classList.add('has-error');
      f.querySelector('.field-error').textContent = message;
    } else {
      errorBox.textContent = message;
    }
  }
  const overlay = h('div', { class: 'overlay', onclick: (e) => { if (e.target === overlay) close(); } }, form);
  document.addEventListener('keydown', onKey);
  document.body.append(overlay);
  cmd.focus();
}

// ---- start ---------------------------------------------------------------------------------

async function init() {
  const loginError = await ensureSession();
  if (loginError !== null) {
    renderLogin(document.getElementById('app'), loginError);
    return;
  }
  // A revoked token or an ended session: back to the login form.
  window.addEventListener('drover:unauthenticated', () => {
    live.stop();
    renderLogin(document.getElementById('app'), t('login.ended'));
  });
  buildShell();
  live.onMode(renderLive);
  live.start();
  window.addEventListener('hashchange', route);
  window.addEventListener('drover:lang', () => {
    renderShellText();
    route();
  });
  route();
}

init();
