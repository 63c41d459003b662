// Cron schedules: the command, expression (or fixed rate / delay), time zone, next fire time
// (counting down), the last fire and its task, paused or active. Schedule events (created,
// fired, skipped, paused, ...) refresh the table at once and highlight the row they are about.

import { t } from '../i18n.js';
import { h, fill, card, fmtTime, fmtTimeIn, fmtAgo, fmtPeriod, shellJoin, emptyState, alertBox, spinner, badge, refresher, shortId } from '../ui.js';
import { api } from '../api.js';

export default {
  mount(root, _params, ctx) {
    ctx.setCrumbs({ text: t('nav.schedules') });
    const body = h('div', null, spinner());
    let list = null;
    // Rows to highlight after the next render: the schedules the latest events named.
    const touched = new Set();
    fill(root,
      h('div', { class: 'page-head' }, h('div', null, h('h1', { text: t('schedules.title') }), h('p', { class: 'subtitle', text: t('schedules.subtitle') }))),
      card(null, body, { cls: 'card-flush' }));

    const trigger = (sc) => {
      if (sc.cron) return h('code', { class: 'code-inline', text: sc.cron });
      if (sc.every_ms) return h('span', { text: t('schedules.every', { d: fmtPeriod(sc.every_ms) }) });
      if (sc.delay_after_previous_ms) return h('span', { text: t('schedules.delayAfter', { d: fmtPeriod(sc.delay_after_previous_ms) }) });
      return h('span', { class: 'muted', text: '—' });
    };

    const lastFire = (sc, now) => {
      if (!sc.last_fire_at) return h('span', { class: 'muted', text: t('schedules.never') });
      return [
        h('div', { title: fmtTime(sc.last_fire_at), text: fmtAgo(sc.last_fire_at, now) }),
        sc.last_task_id
          ? h('div', { class: 'small' }, h('a', { href: `#/tasks/${sc.last_task_id}`, class: 'mono id-link', title: sc.last_task_id, text: shortId(sc.last_task_id) }),
            sc.running ? h('span', { class: 'muted', text: ` · ${t('schedules.running')}` }) : null)
          : null,
      ];
    };

    const nextFire = (sc, now) => (sc.paused || !sc.next_fire_at
      ? h('span', { class: 'muted', text: '—' })
      : [
        // In the schedule's own zone, next to it in the table; local time on hover.
        h('div', { text: fmtTimeIn(sc.next_fire_at, sc.tz || 'UTC'), title: t('schedules.localTime', { time: fmtTime(sc.next_fire_at) }) }),
        h('div', { class: 'small muted', text: fmtAgo(sc.next_fire_at, now) }),
      ]);

    const render = () => {
      if (!list.length) {
        fill(body, emptyState('schedules', t('schedules.none'), h('code', { class: 'code-inline', text: "drover cron add nightly '0 3 * * *' -- ./backup.sh" })));
        return;
      }
      const now = Date.now();
      fill(body, h('table', { class: 'table', dataset: { testid: 'schedules-table' } },
        h('thead', null, h('tr', null, [t('col.name'), t('col.command'), t('col.trigger'), t('col.tz'), t('col.nextFire'), t('col.lastFire'), t('col.status')].map((c) => h('th', { text: c })))),
        h('tbody', null, list.map((sc) => h('tr', { dataset: { schedule: sc.name, state: sc.paused ? 'paused' : 'active' } },
          h('td', { class: 'strong nowrap', text: sc.name }),
          h('td', { class: 'mono cmd', title: shellJoin(sc.argv), text: shellJoin(sc.argv) }),
          h('td', { class: 'cell-trigger nowrap' }, trigger(sc)),
          h('td', { class: 'cell-tz nowrap', text: sc.tz || 'UTC' }),
          h('td', { class: 'cell-next nowrap' }, nextFire(sc, now)),
          h('td', { class: 'cell-last nowrap' }, lastFire(sc, now)),
          h('td', null, badge(sc.paused ? 'paused' : 'active', { prefix: 'schedule' })))))));
    };

    const flashTouched = () => {
      for (const tr of body.querySelectorAll('tbody tr')) {
        if (touched.has(tr.dataset.schedule)) tr.classList.add('flash');
      }
      touched.clear();
    };

    const load = async () => {
      try {
        const res = await api.schedules();
        if (!ctx.alive) return;
        list = (res && res.schedules) || [];
        render();
        flashTouched();
      } catch (e) {
        if (!ctx.alive) return;
        if (e.notFound) {
          list = [];
          render();
        } else {
          fill(body, alertBox('error', t('err.loadSchedules'), e.message));
        }
      }
    };
    const refetch = refresher(load, 500);
    ctx.onEvent((ev) => {
      if (ev.type === 'schedule') {
        if (ev.schedule) touched.add(ev.schedule);
        refetch();
      } else if (ev.type === 'poll' || ev.type === 'resync') {
        refetch();
      } else if (ev.type === 'task' && list && list.some((sc) => sc.running && sc.last_task_id === ev.task_id)) {
        // The last fire's task moved on (a fixed-delay schedule's next fire waits for its end).
        refetch();
      }
    });
    // The countdowns move every second: the time cells are redrawn in place, so a row's
    // highlight runs to its end.
    const tick = () => {
      if (!list || !list.length) return;
      const now = Date.now();
      const byName = new Map(list.map((sc) => [sc.name, sc]));
      for (const tr of body.querySelectorAll('tbody tr')) {
        const sc = byName.get(tr.dataset.schedule);
        if (!sc) continue;
        fill(tr.querySelector('.cell-next'), nextFire(sc, now));
        fill(tr.querySelector('.cell-last'), lastFire(sc, now));
      }
    };
    ctx.every(1000, tick);
    load();
  },
};
