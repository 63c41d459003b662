// DOM helpers, formatters and small components shared by the pages. Every visible word
// comes from i18n.js; nothing here builds HTML from strings, so data is never markup.

import { t, getLang } from './i18n.js';

/** Creates an element: h('a', {href, class, onclick, style: {...}, dataset: {...}}, children...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Creates an SVG element with attributes and children. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

function applyAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'style') Object.assign(el.style, v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    else if (k === 'text') el.textContent = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  clear(el);
  return append(el, children);
}

// ---- task and worker states -------------------------------------------------------------

// The states themselves come from the core (generated `states.js`); only how the page
// groups them is decided here.
import { TASK_STATES, TERMINAL } from './states.js';
export { TASK_STATES, TERMINAL };
/** Terminal states that mean the work did not get done. */
export const FAILED_STATES = TASK_STATES.filter((s) => TERMINAL.has(s) && !['succeeded', 'cancelled', 'skipped'].includes(s));

export function isTerminal(state) {
  return TERMINAL.has(state);
}

/** A coloured pill naming a state, e.g. a task's `running` or a worker's `alive`. */
export function badge(state, { prefix = 'state', big = false } = {}) {
  const key = `${prefix}.${state}`;
  const label = t.has(key) ? t(key) : state;
  return h('span', { class: ['badge', `st-${state}`, big && 'badge-lg'], dataset: { state } },
    h('span', { class: 'dot' }), label);
}

// ---- formatting -------------------------------------------------------------------------

const pad = (n, w = 2) => String(n).padStart(w, '0');

export function parseTime(iso) {
  if (!iso) return null;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? null : ms;
}

/** Local date and time, `2024-05-01 14:03:22`. */
export function fmtTime(iso) {
  const ms = typeof iso === 'number' ? iso : parseTime(iso);
  if (ms === null) return '—';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Like `fmtTime`, in an IANA time zone (a schedule's own); local time if the browser does
 * not know the zone. */
export function fmtTimeIn(iso, zone) {
  const ms = typeof iso === 'number' ? iso : parseTime(iso);
  if (ms === null) return '—';
  try {
    const parts = Object.fromEntries(new Intl.DateTimeFormat('en-CA', {
      timeZone: zone, hourCycle: 'h23',
      year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
    }).formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
    return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
  } catch {
    return fmtTime(ms);
  }
}

/** Local clock time with milliseconds, for timelines. */
export function fmtClock(ms, withMs = false) {
  const d = new Date(ms);
  const base = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return withMs ? `${base}.${pad(d.getMilliseconds(), 3)}` : base;
}

/** A duration in ms as `850 ms`, `4.2 s`, `3 min 4 s`, `2 h 5 min`. */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  ms = Math.max(0, ms);
  if (ms < 1000) return t('dur.ms', { n: Math.round(ms) });
  const s = ms / 1000;
  if (s < 60) return t('dur.s', { n: s < 10 ? s.toFixed(1) : Math.round(s) });
  const m = Math.floor(s / 60);
  if (m < 60) return t('dur.ms2', { m, s: Math.floor(s % 60) });
  const hr = Math.floor(m / 60);
  if (hr < 48) return t('dur.hm', { h: hr, m: m % 60 });
  return t('dur.d', { n: Math.floor(hr / 24) });
}

/** A period as its whole units, for rates: `1 s`, `90 s` as `1 min 30 s`, `5 min`, `1 d 2 h`. */
export function fmtPeriod(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 1000) return t('dur.ms', { n: Math.round(ms) });
  const parts = [];
  let rest = ms;
  for (const [key, size] of [['unit.d', 86_400_000], ['unit.h', 3_600_000], ['unit.m', 60_000]]) {
    if (rest >= size) {
      parts.push(t(key, { n: Math.floor(rest / size) }));
      rest %= size;
    }
  }
  if (rest) parts.push(t('unit.s', { n: Math.round(rest / 100) / 10 }));
  return parts.join(' ');
}

/** How long ago, `5 s ago`; or how long until, `in 3 min`. */
export function fmtAgo(iso, now = Date.now()) {
  const ms = typeof iso === 'number' ? iso : parseTime(iso);
  if (ms === null) return '—';
  const diff = now - ms;
  const future = diff < 0;
  const a = Math.abs(diff) / 1000;
  let amount;
  if (a < 1.5 && !future) return t('ago.now');
  if (a < 60) amount = t('unit.s', { n: Math.round(a) });
  else if (a < 3600) amount = t('unit.m', { n: Math.round(a / 60) });
  else if (a < 86400) amount = t('unit.h', { n: Math.round(a / 3600) });
  else amount = t('unit.d', { n: Math.round(a / 86400) });
  return future ? t('ago.in', { x: amount }) : t('ago.past', { x: amount });
}

export function fmtNum(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  return Number(n).toLocaleString(getLang());
}

/** Bytes as `8 GiB`; plain numbers stay numbers. */
export function fmtResource(key, v) {
  if (/^(mem|memory|disk|storage)$/i.test(key) && v >= 1024) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    let x = v;
    while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
    return `${Number.isInteger(x) ? x : x.toFixed(1)} ${units[i]}`;
  }
  return fmtNum(v);
}

/** A short, still unique-looking form of a UUIDv7 (its random tail). */
export function shortId(id) {
  if (!id || id.length <= 13) return id || '';
  return `${id.slice(0, 8)}…${id.slice(-4)}`;
}

/** argv as a line one could paste into a shell. */
export function shellJoin(argv) {
  return (argv || []).map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** Splits a command line into argv: whitespace separates, quotes group, backslash escapes. */
export function shellSplit(line) {
  const out = [];
  let cur = '';
  let has = false;
  let q = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (q === "'") {
      if (c === "'") q = null; else cur += c;
    } else if (q === '"') {
      if (c === '"') q = null;
      else if (c === '\\' && i + 1 < line.length && '"\\$`'.includes(line[i + 1])) cur += line[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      q = c; has = true;
    } else if (c === '\\' && i + 1 < line.length) {
      cur += line[++i]; has = true;
    } else if (/\s/.test(c)) {
      if (has || cur) { out.push(cur); cur = ''; has = false; }
    } else {
      cur += c;
    }
  }
  if (q) throw new Error(t('err.unclosedQuote'));
  if (has || cur) out.push(cur);
  return out;
}

// ---- components -------------------------------------------------------------------------

export function icon(name, size = 18) {
  const paths = ICONS[name] || [];
  return s('svg', { class: 'icon', width: size, height: size, viewBox: '0 0 24 24', fill: 'none', stroke: 'currentColor', 'stroke-width': 1.8, 'stroke-linecap': 'round', 'stroke-linejoin': 'round', 'aria-hidden': 'true' },
    paths.map((d) => s('path', { d })));
}

const ICONS = {
  overview: ['M3 13h8V3H3z', 'M13 21h8V11h-8z', 'M13 3v6h8V3z', 'M3 21h8v-6H3z'],
  tasks: ['M9 6h11', 'M9 12h11', 'M9 18h11', 'M4 6l1 1 2-2', 'M4 12l1 1 2-2', 'M4 18l1 1 2-2'],
  workers: ['M4 4h16v6H4z', 'M4 14h16v6H4z', 'M8 7h.01', 'M8 17h.01', 'M12 7h4', 'M12 17h4'],
  workflows: ['M6 3a3 3 0 1 0 0 6 3 3 0 0 0 0-6z', 'M18 15a3 3 0 1 0 0 6 3 3 0 0 0 0-6z', 'M6 9v3a3 3 0 0 0 3 3h6', 'M18 3a3 3 0 1 0 0 6 3 3 0 0 0 0-6z', 'M9 6h6'],
  schedules: ['M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18z', 'M12 7v5l3 3'],
  plus: ['M12 5v14', 'M5 12h14'],
  refresh: ['M20 11a8 8 0 1 0-2.3 5.7', 'M20 4v7h-7'],
  cancel: ['M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18z', 'M15 9l-6 6', 'M9 9l6 6'],
  retry: ['M4 4v6h6', 'M20 20v-6h-6', 'M20 10a8 8 0 0 0-14.9-3L4 10', 'M4 14a8 8 0 0 0 14.9 3l1.1-3'],
  drain: ['M12 3v12', 'M7 10l5 5 5-5', 'M5 21h14'],
  resume: ['M7 4.5v15l12-7.5z'],
  copy: ['M9 9h11v11H9z', 'M5 15H4V4h11v1'],
  back: ['M15 18l-6-6 6-6'],
  next: ['M9 18l6-6-6-6'],
  alert: ['M12 3l9 16H3z', 'M12 10v4', 'M12 17h.01'],
  empty: ['M3 7l9-4 9 4-9 4z', 'M3 7v10l9 4 9-4V7', 'M12 11v10'],
  graph: ['M5 5h4v4H5z', 'M15 5h4v4h-4z', 'M10 16h4v4h-4z', 'M7 9v3h10V9', 'M12 12v4'],
  globe: ['M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18z', 'M3 12h18', 'M12 3c3 3.5 3 14.5 0 18', 'M12 3c-3 3.5-3 14.5 0 18'],
  x: ['M6 6l12 12', 'M18 6L6 18'],
  info: ['M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18z', 'M12 11v6', 'M12 7.5h.01'],
  audit: ['M12 3l7 3v5c0 4.5-3 8-7 10-4-2-7-5.5-7-10V6z', 'M9 12l2 2 4-4'],
  lock: ['M6 11h12v10H6z', 'M8 11V7a4 4 0 0 1 8 0v4'],
  cluster: ['M12 3a3 3 0 1 0 0 6 3 3 0 0 0 0-6z', 'M5 15a3 3 0 1 0 0 6 3 3 0 0 0 0-6z', 'M19 15a3 3 0 1 0 0 6 3 3 0 0 0 0-6z', 'M10.5 8.5l-4 7', 'M13.5 8.5l4 7', 'M8 18h8'],
};

/** A titled white panel. */
export function card(title, body, { actions = null, cls = '' } = {}) {
  return h('section', { class: ['card', cls] },
    title ? h('header', { class: 'card-head' }, h('h2', { text: title }), actions && h('div', { class: 'card-actions' }, actions)) : null,
    h('div', { class: 'card-body' }, body));
}

export function button(label, { kind = 'secondary', iconName = null, onclick, disabled = false, attrs = {} } = {}) {
  return h('button', { type: 'button', class: ['btn', `btn-${kind}`], onclick, disabled, ...attrs },
    iconName && icon(iconName, 16), h('span', { text: label }));
}

export function emptyState(iconName, title, body, ...actions) {
  return h('div', { class: 'empty' },
    h('div', { class: 'empty-icon' }, icon(iconName, 28)),
    h('div', { class: 'empty-title', text: title }),
    body && h('div', { class: 'empty-body' }, body),
    actions.length ? h('div', { class: 'empty-actions' }, actions) : null);
}

/** An inline message box; `kind` is error, warning or info. */
export function alertBox(kind, title, message, onclose) {
  return h('div', { class: ['alert', `alert-${kind}`], role: kind === 'info' ? 'note' : 'alert' },
    icon(kind === 'info' ? 'info' : 'alert', 18),
    h('div', { class: 'alert-text' }, h('strong', { text: title }), message && h('div', { class: 'alert-msg', text: message })),
    onclose && h('button', { type: 'button', class: 'alert-close', 'aria-label': t('action.close'), onclick: onclose }, icon('x', 16)));
}

export function spinner() {
  return h('div', { class: 'loading' }, h('span', { class: 'spin' }), h('span', { text: t('common.loading') }));
}

/** A floating note at the bottom right that goes away by itself. */
export function toast(message, kind = 'info') {
  const box = document.getElementById('toasts');
  if (!box) return;
  const el = h('div', { class: ['toast', `toast-${kind}`], role: 'status', text: message });
  box.append(el);
  setTimeout(() => el.classList.add('leaving'), 4200);
  setTimeout(() => el.remove(), 4600);
}

/** A modal dialog; resolves to true when confirmed. */
export function confirmDialog({ title, body, confirm, danger = false }) {
  return new Promise((resolve) => {
    const close = (v) => { overlay.remove(); document.removeEventListener('keydown', onKey); resolve(v); };
    const onKey = (e) => { if (e.key === 'Escape') close(false); };
    const ok = button(confirm, { kind: danger ? 'danger' : 'primary', onclick: () => close(true), attrs: { 'data-role': 'confirm' } });
    const overlay = h('div', { class: 'overlay', onclick: (e) => { if (e.target === overlay) close(false); } },
      h('div', { class: 'dialog', role: 'dialog', 'aria-modal': 'true' },
        h('h3', { text: title }),
        h('div', { class: 'dialog-body' }, body),
        h('div', { class: 'dialog-actions' },
          button(t('action.back'), { onclick: () => close(false), attrs: { 'data-role': 'dismiss' } }),
          ok)));
    document.addEventListener('keydown', onKey);
    document.body.append(overlay);
    ok.focus();
  });
}

/** Copies text and says so. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    toast(t('common.copied'), 'success');
  } catch {
    toast(text, 'info');
  }
}

/** A horizontal bar showing `value / max`, with an optional lighter `extra` part. */
export function loadBar(value, max, extra = 0) {
  const pct = max > 0 ? Math.min(100, (value / max) * 100) : 0;
  const pctExtra = max > 0 ? Math.min(100 - pct, (extra / max) * 100) : 0;
  const level = pct >= 90 ? 'high' : pct >= 60 ? 'mid' : 'low';
  return h('div', { class: ['bar', `bar-${level}`] },
    h('div', { class: 'bar-fill', style: { width: `${pct}%` } }),
    h('div', { class: 'bar-extra', style: { width: `${pctExtra}%`, left: `${pct}%` } }));
}

export function chips(map, cls = 'chip') {
  const entries = Array.isArray(map) ? map.map((v) => [v, null]) : Object.entries(map || {});
  if (!entries.length) return h('span', { class: 'muted', text: '—' });
  return h('div', { class: 'chips' }, entries.map(([k, v]) => h('span', { class: cls, text: v === null ? k : `${k}=${v}` })));
}

/**
 * Runs the async `fn` on demand: never two at once, at most once per `gapMs`, and once more
 * after a run if it was asked for during that run (so a change seen mid-fetch is not lost).
 */
export function refresher(fn, gapMs = 0) {
  let running = false;
  let again = false;
  let timer = null;
  let last = 0;
  const run = async () => {
    timer = null;
    running = true;
    last = Date.now();
    try {
      await fn();
    } finally {
      running = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  };
  const schedule = () => {
    if (running) { again = true; return; }
    if (timer) return;
    timer = setTimeout(run, Math.max(0, last + gapMs - Date.now()));
  };
  return schedule;
}

/**
 * Whether a task as fetched is older than what is shown: the shown one came from an event
 * (its `at`) newer than the fetched `updated_at`. Both are RFC 3339 UTC with microseconds.
 */
export function isStale(fetched, shown) {
  return Boolean(shown && shown._v && fetched.updated_at && shown._v > fetched.updated_at);
}

/** A task with an event applied, and the event's time as its version. */
export function applyEvent(task, ev) {
  const tk = { ...task, state: ev.state, _v: ev.at || task._v };
  if (ev.attempt !== undefined && ev.attempt !== null) tk.attempt = ev.attempt;
  if (ev.worker) tk.worker = ev.worker;
  const now = new Date().toISOString();
  if (ev.state === 'running' && !tk.started_at) tk.started_at = now;
  if (TERMINAL.has(ev.state) && !tk.finished_at) tk.finished_at = now;
  return tk;
}

/** Whether an event is older than the task shown (a late or repeated one). */
export function eventIsOld(ev, shown) {
  const v = shown && (shown._v || shown.updated_at);
  return Boolean(ev.at && v && ev.at < v);
}
