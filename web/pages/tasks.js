// Tasks: one page at a time from the server (keyset paging, newest first), filters by state
// and queue kept in the URL, rows updated in place from live events.

import { t } from '../i18n.js';
import { h, fill, card, badge, fmtNum, fmtAgo, fmtDuration, parseTime, shortId, TASK_STATES, isTerminal, emptyState, button, alertBox, icon, refresher, isStale, applyEvent, eventIsOld } from '../ui.js';
import { api } from '../api.js';
import { commandOf } from './overview.js';
import * as live from '../live.js';

const PAGE_SIZES = [25, 50, 100, 200];

export default {
  mount(root, params, ctx) {
    ctx.setCrumbs({ text: t('nav.tasks') });
    const q = params.query;
    const st = {
      state: TASK_STATES.includes(q.get('state')) ? q.get('state') : '',
      queue: q.get('queue') || '',
      limit: PAGE_SIZES.includes(Number(q.get('limit'))) ? Number(q.get('limit')) : 50,
      cursors: [null], // cursor of each page visited; the last is the current page
      next: null,
      rows: new Map(), // id -> {tr, task}
      loading: false,
    };

    const stateSel = h('select', { class: 'input select', 'aria-label': t('filter.state'), dataset: { testid: 'state-filter' } },
      h('option', { value: '', text: t('filter.allStates') }),
      TASK_STATES.map((s) => h('option', { value: s, text: t(`state.${s}`), selected: s === st.state })));
    const queueInput = h('input', { class: 'input', type: 'search', placeholder: t('filter.allQueues'), value: st.queue, 'aria-label': t('filter.queue'), dataset: { testid: 'queue-filter' } });
    const sizeSel = h('select', { class: 'input select', 'aria-label': t('filter.pageSize') },
      PAGE_SIZES.map((n) => h('option', { value: n, text: t('filter.perPage', { n }), selected: n === st.limit })));
    const tbody = h('tbody');
    const body = h('div', { class: 'table-wrap' });
    const pageInfo = h('span', { class: 'muted' });
    const newer = button(t('page.newer'), { iconName: 'back', attrs: { 'data-testid': 'page-newer' } });
    const older = h('button', { type: 'button', class: 'btn btn-secondary', dataset: { testid: 'page-older' } },
      h('span', { text: t('page.older') }), icon('next', 16));
    const countLine = h('span', { class: 'subtitle' });
    const banner = h('div');

    const table = h('table', { class: 'table', dataset: { testid: 'task-table' } },
      h('thead', null, h('tr', null,
        h('th', { text: t('col.id') }), h('th', { text: t('col.state') }), h('th', { text: t('col.queue') }),
        h('th', { text: t('col.command') }), h('th', { class: 'num', text: t('col.attempt') }), h('th', { text: t('col.worker') }),
        h('th', { text: t('col.created') }), h('th', { class: 'num', text: t('col.duration') }))),
      tbody);

    fill(root,
      h('div', { class: 'page-head' },
        h('div', null, h('h1', { text: t('tasks.title') }), countLine)),
      banner,
      card(null, [
        h('div', { class: 'toolbar' },
          h('div', { class: 'toolbar-left' },
            h('label', { class: 'filter' }, h('span', { text: t('filter.state') }), stateSel),
            h('label', { class: 'filter' }, h('span', { text: t('filter.queue') }), queueInput)),
          h('div', { class: 'toolbar-right' }, sizeSel, button(t('action.refresh'), { iconName: 'refresh', onclick: () => load() }))),
        body,
        h('div', { class: 'pager' }, pageInfo, h('div', { class: 'pager-btns' }, newer, older)),
      ], { cls: 'card-flush' }));

    const syncUrl = () => ctx.replaceQuery({ state: st.state, queue: st.queue, limit: st.limit === 50 ? '' : st.limit });

    const durationOf = (tk) => {
      const start = parseTime(tk.started_at);
      if (start === null) return null;
      const end = parseTime(tk.finished_at) ?? (isTerminal(tk.state) ? parseTime(tk.updated_at) : Date.now());
      return end - start;
    };

    const renderRow = (tk, tr) => {
      tr = tr || h('tr', { class: 'row-link', onclick: (e) => { if (!e.target.closest('a')) location.hash = `#/tasks/${tk.id}`; } });
      tr.dataset.id = tk.id;
      tr.dataset.state = tk.state;
      fill(tr,
        h('td', null, h('a', { href: `#/tasks/${tk.id}`, class: 'mono id-link', title: tk.id, text: shortId(tk.id) })),
        h('td', { class: 'cell-state' }, badge(tk.state)),
        h('td', null, h('span', { class: 'queue-tag', text: tk.queue })),
        h('td', { class: 'mono cmd', title: commandOf(tk), text: commandOf(tk) }),
        h('td', { class: 'num', text: tk.attempt ? `${tk.attempt}/${tk.max_attempts}` : '—' }),
        h('td', { class: tk.worker ? '' : 'muted', text: tk.worker || '—' }),
        h('td', { class: 'muted nowrap', title: tk.created_at, dataset: { ago: tk.created_at }, text: fmtAgo(tk.created_at) }),
        h('td', { class: 'num cell-duration', text: fmtDuration(durationOf(tk)) }));
      return tr;
    };

    const renderCount = () => {
      const s = live.getSamples();
      const last = s[s.length - 1];
      if (!last) { countLine.textContent = ''; return; }
      if (st.queue) { countLine.textContent = t('tasks.filtered'); return; }
      const total = st.state ? (last.counts[st.state] || 0) : Object.values(last.counts).reduce((a, b) => a + b, 0);
      countLine.textContent = t(st.state ? 'tasks.countState' : 'tasks.count', { n: fmtNum(total), state: st.state ? t(`state.${st.state}`) : '' });
    };

    let seq = 0;
    const load = async () => {
      const my = ++seq;
      const cursor = st.cursors[st.cursors.length - 1];
      if (!st.rows.size) fill(body, h('div', { class: 'loading' }, h('span', { class: 'spin' }), t('common.loading')));
      try {
        const page = await api.tasks({ state: st.state, queue: st.queue, limit: st.limit, cursor });
        if (!ctx.alive || my !== seq) return;
        fill(banner);
        st.next = page.next_cursor || null;
        const shown = new Map([...st.rows].map(([id, r]) => [id, r.task]));
        st.rows.clear();
        // Reuse rows by id so a refetch does not flicker or lose the hover.
        const old = new Map([...tbody.children].map((tr) => [tr.dataset.id, tr]));
        const trs = page.tasks.map((fetched) => {
          // An event newer than this answer already updated the row: keep it.
          const tk = isStale(fetched, shown.get(fetched.id)) ? shown.get(fetched.id) : fetched;
          const tr = renderRow(tk, old.get(tk.id));
          st.rows.set(tk.id, { tr, task: tk });
          return tr;
        });
        tbody.replaceChildren(...trs);
        if (!page.tasks.length) {
          const filtered = st.state || st.queue;
          fill(body, emptyState('empty', filtered ? t('tasks.noneMatch') : t('tasks.noneYet'),
            filtered ? t('tasks.noneMatchHint') : h('code', { class: 'code-inline', text: 'drover submit -- echo hello' })));
        } else if (body.firstChild !== table) {
          fill(body, table);
        }
        const pageNo = st.cursors.length;
        const from = (pageNo - 1) * st.limit + (page.tasks.length ? 1 : 0);
        pageInfo.textContent = t('page.info', { page: pageNo, from: fmtNum(from), to: fmtNum((pageNo - 1) * st.limit + page.tasks.length) });
        newer.disabled = st.cursors.length <= 1;
        older.disabled = !st.next;
        renderCount();
      } catch (e) {
        if (!ctx.alive || my !== seq) return;
        fill(banner, alertBox('error', t('err.loadTasks'), e.message));
        if (!st.rows.size) fill(body);
      }
    };
    const refetch = refresher(load, 1000);

    const reset = () => {
      st.cursors = [null];
      st.rows.clear();
      tbody.replaceChildren();
      syncUrl();
      load();
    };
    stateSel.addEventListener('change', () => { st.state = stateSel.value; reset(); });
    let qTimer = null;
    queueInput.addEventListener('input', () => {
      clearTimeout(qTimer);
      qTimer = setTimeout(() => { st.queue = queueInput.value.trim(); reset(); }, 300);
    });
    sizeSel.addEventListener('change', () => { st.limit = Number(sizeSel.value); reset(); });
    newer.addEventListener('click', () => { if (st.cursors.length > 1) { st.cursors.pop(); st.rows.clear(); load(); } });
    older.addEventListener('click', () => { if (st.next) { st.cursors.push(st.next); st.rows.clear(); load(); } });

    ctx.onEvent((ev) => {
      if (ev.type === 'poll' || ev.type === 'resync') { refetch(); return; }
      if (ev.type !== 'task') return;
      const row = st.rows.get(ev.task_id);
      if (row) {
        if (eventIsOld(ev, row.task)) return;
        // In place at once; the refetch brings the exact fields.
        const tk = applyEvent(row.task, ev);
        row.task = tk;
        renderRow(tk, row.tr);
        row.tr.classList.remove('flash');
        void row.tr.offsetWidth;
        row.tr.classList.add('flash');
        refetch();
      } else if (st.cursors.length === 1 && (!st.queue || ev.queue === st.queue) && (!st.state || ev.state === st.state)) {
        // A new task (or one that entered the filtered state) belongs on the first page.
        refetch();
      }
    });
    ctx.onCleanup(live.onSample(renderCount));
    ctx.every(1000, () => {
      const now = Date.now();
      for (const { tr, task } of st.rows.values()) {
        const ago = tr.querySelector('[data-ago]');
        if (ago) ago.textContent = fmtAgo(ago.dataset.ago, now);
        if (task.state === 'running') tr.querySelector('.cell-duration').textContent = fmtDuration(durationOf(task));
      }
    });
    load();
  },
};
