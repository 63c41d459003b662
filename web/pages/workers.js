// Workers: state, load against slots, labels, kinds, resources, heartbeat age, and Drain (or
// Resume, for a draining or drained worker). Worker events (joined, suspect, lost, alive,
// draining, resumed, left) refresh the list at once and highlight the worker's row; losing or
// getting back a worker is also announced.

import { t } from '../i18n.js';
import { h, fill, card, badge, fmtNum, fmtAgo, loadBar, chips, fmtResource, button, alertBox, toast, confirmDialog, emptyState, refresher } from '../ui.js';
import { api } from '../api.js';

export default {
  mount(root, _params, ctx) {
    ctx.setCrumbs({ text: t('nav.workers') });
    const summary = h('div', { class: 'stats-row' });
    const banner = h('div');
    const body = h('div', { class: 'table-wrap' }, h('div', { class: 'loading' }, h('span', { class: 'spin' }), t('common.loading')));
    let list = [];
    // Rows to highlight after the next render: the workers the latest events named.
    const touched = new Set();
    const NOTICE = { suspect: 'warning', lost: 'error', alive: 'success' };

    fill(root,
      h('div', { class: 'page-head' }, h('div', null, h('h1', { text: t('workers.title') }), h('p', { class: 'subtitle', text: t('workers.subtitle') }))),
      summary,
      banner,
      card(null, body, { cls: 'card-flush' }));

    const drain = async (w) => {
      const ok = await confirmDialog({ title: t('workers.drainTitle', { name: w.name }), body: t('workers.drainBody'), confirm: t('action.drain') });
      if (!ok || !ctx.alive) return;
      try {
        await api.drain(w.name);
        if (!ctx.alive) return;
        fill(banner);
        toast(t('workers.drained', { name: w.name }), 'success');
        load();
      } catch (e) {
        if (!ctx.alive) return;
        fill(banner, alertBox('error', t('err.drain', { name: w.name }), e.message, () => fill(banner)));
      }
    };

    const resume = async (w, btn) => {
      if (btn) btn.disabled = true; // one request per click, until the list is redrawn
      try {
        await api.resume(w.name);
        if (!ctx.alive) return;
        toast(t('workers.resumed', { name: w.name }), 'success');
        fill(banner);
        load();
      } catch (e) {
        if (!ctx.alive) return;
        if (btn) btn.disabled = false;
        fill(banner, alertBox('error', t('err.resume', { name: w.name }), e.message, () => fill(banner)));
      }
    };

    // A draining worker (still finishing tasks), a drained one (idle), or a lost one that was
    // draining when it went (its drain is kept) can be resumed.
    const isDraining = (w) => w.draining;
    // Resume works for a lost worker too (its drain is kept for when it returns); Drain
    // needs it connected.

    // The server decides a worker's state from its own thresholds; the page only shows it.
    const heartbeatClass = (w) => {
      if (w.state === 'lost') return 'hb-bad';
      if (w.state === 'suspect') return 'hb-warn';
      return 'hb-ok';
    };

    const render = () => {
      const now = Date.now();
      const slots = list.reduce((a, w) => a + w.slots, 0);
      const running = list.reduce((a, w) => a + w.running, 0);
      const alive = list.filter((w) => w.state === 'alive').length;
      const stat = (label, value, tone, sub) => h('div', { class: ['stat', `tone-${tone}`] },
        h('div', { class: 'stat-label', text: label }), h('div', { class: 'stat-value', text: value }), h('div', { class: 'stat-sub', text: sub || '' }));
      fill(summary,
        stat(t('workers.total'), fmtNum(list.length), 'indigo', t('workers.aliveSub', { n: fmtNum(alive) })),
        stat(t('workers.slots'), fmtNum(slots), 'blue', t('workers.freeSub', { n: fmtNum(Math.max(0, slots - running)) })),
        stat(t('workers.running'), fmtNum(running), 'green', t('workers.utilSub', { n: slots ? Math.round((running / slots) * 100) : 0 })));
      if (!list.length) {
        fill(body, emptyState('workers', t('workers.none'), h('code', { class: 'code-inline', text: 'drover worker --server URL --slots 4' })));
        return;
      }
      fill(body, h('table', { class: 'table', dataset: { testid: 'workers-table' } },
        h('thead', null, h('tr', null,
          [t('col.worker'), t('col.state'), t('col.load'), t('col.labels'), t('col.kinds'), list.some((w) => w.resources_free) ? t('col.resourcesFree') : t('col.resources'), t('col.heartbeat'), t('col.joined'), '']
            .map((c, i) => h('th', { class: i === 8 ? 'actions' : '', text: c })))),
        h('tbody', null, list.map((w) => h('tr', { dataset: { worker: w.name, state: w.state } },
          h('td', null, h('div', { class: 'strong', text: w.name })),
          h('td', null, badge(w.state, { prefix: 'worker' })),
          h('td', { class: 'cell-load' },
            loadBar(w.running, w.slots, Math.max(0, w.held - w.running)),
            h('div', { class: 'small muted', text: t('workers.loadLine', { running: w.running, slots: w.slots, held: w.held, prefetch: w.prefetch }) })),
          h('td', null, chips(w.labels)),
          h('td', null, w.kinds && w.kinds.length ? chips(w.kinds, 'chip chip-kind') : h('span', { class: 'muted', text: t('workers.anyKind') })),
          h('td', null, Object.keys(w.resources || {}).length
            ? h('div', { class: 'chips' }, Object.entries(w.resources).map(([k, v]) => {
              const free = w.resources_free && w.resources_free[k];
              return h('span', {
                class: 'chip chip-res',
                title: free === undefined ? null : t('workers.resourceFree', { free: fmtResource(k, free), total: fmtResource(k, v) }),
                text: free === undefined ? `${k} ${fmtResource(k, v)}` : `${k} ${fmtResource(k, free)} / ${fmtResource(k, v)}`,
              });
            }))
            : h('span', { class: 'muted', text: '—' })),
          h('td', null, h('span', { class: ['hb', heartbeatClass(w)], title: w.last_heartbeat, text: fmtAgo(w.last_heartbeat, now) })),
          h('td', { class: 'muted nowrap', title: w.joined_at, text: fmtAgo(w.joined_at, now) }),
          h('td', { class: 'actions' }, isDraining(w)
            ? button(t('action.resume'), {
              iconName: 'resume',
              onclick: (e) => resume(w, e.currentTarget),
              attrs: { 'data-testid': 'resume', title: t('workers.resumeHint') },
            })
            : button(t('action.drain'), {
              iconName: 'drain',
              disabled: w.state === 'lost',
              onclick: () => drain(w),
              attrs: { 'data-testid': 'drain', title: t('workers.drainHint') },
            })))))));
    };

    const load = async () => {
      try {
        const res = await api.workers();
        if (!ctx.alive) return;
        list = (res.workers || []).slice().sort((a, b) => a.name.localeCompare(b.name));
        render();
        for (const tr of body.querySelectorAll('tbody tr')) {
          if (touched.has(tr.dataset.worker)) tr.classList.add('flash');
        }
        touched.clear();
      } catch (e) {
        if (ctx.alive) fill(body, alertBox('error', t('err.loadWorkers'), e.message));
      }
    };
    const refetch = refresher(load, 1000);
    const refetchNow = refresher(load, 0);
    ctx.onEvent((ev) => {
      if (ev.type === 'worker') {
        if (ev.worker) touched.add(ev.worker);
        const kind = NOTICE[ev.state];
        if (kind && ev.worker) toast(t(`workers.event.${ev.state}`, { name: ev.worker }), kind);
        refetchNow();
      } else if (ev.type === 'resync' || ev.type === 'task') {
        refetch();
      }
    });
    // Heartbeat ages and load change without events: refresh on a timer either way.
    ctx.every(2000, load);
    load();
  },
};
