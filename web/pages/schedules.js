// Cron schedules: expression, time zone, next fire time (counting down), paused or active.

import { t } from '../i18n.js';
import { h, fill, card, fmtTime, fmtAgo, emptyState, alertBox, spinner, badge } from '../ui.js';
import { api } from '../api.js';

export default {
  mount(root, _params, ctx) {
    ctx.setCrumbs({ text: t('nav.schedules') });
    const body = h('div', null, spinner());
    let list = null;
    fill(root,
      h('div', { class: 'page-head' }, h('div', null, h('h1', { text: t('schedules.title') }), h('p', { class: 'subtitle', text: t('schedules.subtitle') }))),
      card(null, body, { cls: 'card-flush' }));

    const render = () => {
      if (!list.length) {
        fill(body, emptyState('schedules', t('schedules.none'), h('code', { class: 'code-inline', text: "drover cron add nightly '0 3 * * *' -- ./backup.sh" })));
        return;
      }
      const now = Date.now();
      fill(body, h('table', { class: 'table', dataset: { testid: 'schedules-table' } },
        h('thead', null, h('tr', null, [t('col.name'), t('col.cron'), t('col.tz'), t('col.nextFire'), t('col.status')].map((c) => h('th', { text: c })))),
        h('tbody', null, list.map((sc) => h('tr', { dataset: { schedule: sc.name } },
          h('td', { class: 'strong', text: sc.name }),
          h('td', null, h('code', { class: 'code-inline', text: sc.cron })),
          h('td', { text: sc.tz || 'UTC' }),
          h('td', null, sc.paused || !sc.next_fire_at
            ? h('span', { class: 'muted', text: '—' })
            : [h('div', { text: fmtTime(sc.next_fire_at) }), h('div', { class: 'small muted', text: fmtAgo(sc.next_fire_at, now) })]),
          h('td', null, badge(sc.paused ? 'paused' : 'active', { prefix: 'schedule' })))))));
    };

    const load = async () => {
      try {
        const res = await api.schedules();
        if (!ctx.alive) return;
        list = (res && res.schedules) || [];
        render();
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
    ctx.onEvent((ev) => { if (ev.type === 'schedule' || ev.type === 'poll' || ev.type === 'resync') load(); });
    ctx.every(1000, () => { if (list && list.length) render(); });
    load();
  },
};
