// Overview: counters by state, live charts (throughput, queue depth, workers), the newest
// tasks, and queues when the server's metrics name them.

import { t } from '../i18n.js';
import { h, fill, card, badge, fmtNum, fmtAgo, shortId, shellJoin, TASK_STATES, FAILED_STATES, refresher, emptyState } from '../ui.js';
import { api } from '../api.js';
import { LineChart, stackBar } from '../charts.js';
import * as live from '../live.js';

const COLORS = {
  throughput: '#16a34a',
  queued: '#f59e0b',
  pending: '#94a3b8',
  running: '#3b82f6',
  workers: '#6366f1',
};

export default {
  mount(root, _params, ctx) {
    ctx.setCrumbs({ text: t('nav.overview') });

    const statRow = h('div', { class: 'stats-row' });
    const tpHost = h('div');
    const qHost = h('div');
    const wHost = h('div');
    const states = h('div', { class: 'state-list' });
    const recent = h('div');
    const queues = h('div');
    const tpNow = h('span', { class: 'chart-now' });

    const legend = (keys) => h('div', { class: 'legend' }, keys.map(([k, label]) =>
      h('span', { class: 'legend-item' }, h('span', { class: 'swatch', style: { background: COLORS[k] } }), label)));

    fill(root,
      h('div', { class: 'page-head' },
        h('div', null, h('h1', { text: t('overview.title') }), h('p', { class: 'subtitle', text: t('overview.subtitle') }))),
      statRow,
      h('div', { class: 'grid grid-3' },
        card(t('chart.throughput'), [tpHost], { cls: 'span-2', actions: [tpNow, legend([['throughput', t('chart.finishedPerSec')]])] }),
        card(t('overview.byState'), states)),
      h('div', { class: 'grid grid-2' },
        card(t('chart.queueDepth'), qHost, { actions: legend([['queued', t('state.queued')], ['pending', t('state.pending')], ['running', t('chart.running')]]) }),
        card(t('chart.workers'), wHost, { actions: legend([['workers', t('chart.workersOnline')], ['running', t('chart.busySlots')]]) })),
      h('div', { class: 'grid grid-3' },
        card(t('overview.recent'), recent, { cls: 'span-2', actions: h('a', { href: '#/tasks', class: 'link', text: t('action.viewAll') }) }),
        card(t('overview.queues'), queues)));

    const tp = new LineChart(tpHost, { series: [{ key: 'throughput', color: COLORS.throughput, label: t('chart.finishedPerSec') }], height: 200 });
    const qd = new LineChart(qHost, {
      series: [
        { key: 'pending', color: COLORS.pending, label: t('state.pending') },
        { key: 'queued', color: COLORS.queued, label: t('state.queued') },
        { key: 'running', color: COLORS.running, label: t('chart.running') },
      ],
    });
    const wk = new LineChart(wHost, {
      series: [
        { key: 'workers', color: COLORS.workers, label: t('chart.workersOnline') },
        { key: 'running', color: COLORS.running, label: t('chart.busySlots') },
      ],
    });
    tp.setLabel(t('chart.throughput'));
    qd.setLabel(t('chart.queueDepth'));
    wk.setLabel(t('chart.workers'));
    ctx.onCleanup(() => { tp.destroy(); qd.destroy(); wk.destroy(); });

    const statCard = (key, label, value, tone, sub) => h('div', { class: ['stat', `tone-${tone}`], dataset: { stat: key } },
      h('div', { class: 'stat-label', text: label }),
      h('div', { class: 'stat-value', text: fmtNum(value) }),
      h('div', { class: 'stat-sub', text: sub || '' }));

    const renderSamples = (samples) => {
      const last = samples[samples.length - 1];
      if (!last) return;
      const series = samples.filter((p) => !p.first);
      tp.set(series.length ? series : [{ ...last, throughput: 0 }]);
      qd.set(samples);
      wk.set(samples);
      tpNow.textContent = t('chart.nowRate', { n: last.throughput < 10 ? last.throughput.toFixed(1) : Math.round(last.throughput) });
      const c = (k) => last.counts[k] || 0;
      const failed = FAILED_STATES.reduce((a, k) => a + c(k), 0);
      const total = Object.values(last.counts).reduce((a, b) => a + b, 0);
      fill(statRow,
        statCard('queued', t('stat.queued'), c('queued') + c('pending'), 'amber', t('stat.pendingSub', { n: fmtNum(c('pending')) })),
        statCard('running', t('stat.running'), c('running') + c('assigned'), 'blue', t('stat.assignedSub', { n: fmtNum(c('assigned')) })),
        statCard('succeeded', t('stat.succeeded'), c('succeeded'), 'green', t('stat.ofTotal', { n: fmtNum(total) })),
        statCard('failed', t('stat.failed'), failed, 'red', t('stat.cancelledSub', { n: fmtNum(c('cancelled')) })),
        statCard('workers', t('stat.workers'), last.workers, 'indigo', t('stat.busySub', { n: fmtNum(last.running) })));
      const parts = TASK_STATES.map((k) => ({ key: k, value: c(k), label: t(`state.${k}`) }));
      fill(states,
        total ? stackBar(parts) : null,
        h('ul', { class: 'state-rows' }, parts.map((p) => h('li', { class: ['state-row', !p.value && 'zero'], dataset: { state: p.key } },
          h('a', { href: `#/tasks?state=${p.key}`, class: 'state-row-link' }, badge(p.key), h('span', { class: 'state-count', text: fmtNum(p.value) }))))));
    };
    renderSamples(live.getSamples());
    ctx.onCleanup(live.onSample(renderSamples));
    ctx.every(1000, () => { tp.draw(); qd.draw(); wk.draw(); });

    const loadRecent = async () => {
      try {
        const page = await api.tasks({ limit: 8 });
        if (!ctx.alive) return;
        if (!page.tasks.length) {
          fill(recent, emptyState('empty', t('tasks.noneYet'), h('code', { class: 'code-inline', text: 'drover submit -- echo hello' })));
          return;
        }
        fill(recent, h('table', { class: 'table compact' },
          h('thead', null, h('tr', null, [t('col.id'), t('col.state'), t('col.queue'), t('col.command'), t('col.created')].map((c) => h('th', { text: c })))),
          h('tbody', null, page.tasks.map((tk) => h('tr', { class: 'row-link', dataset: { id: tk.id }, onclick: () => { location.hash = `#/tasks/${tk.id}`; } },
            h('td', null, h('a', { href: `#/tasks/${tk.id}`, class: 'mono id-link', title: tk.id, text: shortId(tk.id) })),
            h('td', null, badge(tk.state)),
            h('td', { text: tk.queue }),
            h('td', { class: 'mono cmd', title: commandOf(tk), text: commandOf(tk) }),
            h('td', { class: 'muted nowrap', title: tk.created_at, text: fmtAgo(tk.created_at) }))))));
      } catch (e) {
        if (ctx.alive) fill(recent, h('div', { class: 'muted', text: e.message }));
      }
    };
    const refreshRecent = refresher(loadRecent, 1000);
    loadRecent();
    ctx.onEvent((ev) => {
      if (ev.type === 'task' || ev.type === 'poll' || ev.type === 'resync') refreshRecent();
    });

    const loadQueues = async () => {
      let rows = [];
      try {
        const res = await api.queues();
        rows = (res.queues || []).map((q) => ({ queue: q.name, depth: q.depth, running: q.running, paused: q.paused, limit: q.concurrency }));
      } catch {
        // No /v1/queues on this server: the metrics may still name the queues.
        try {
          rows = queuesFromMetrics(await api.metrics());
        } catch {
          rows = [];
        }
      }
      if (!ctx.alive) return;
      if (!rows.length) {
        fill(queues, emptyState('tasks', t('overview.queuesNone'), t('overview.queuesHint')));
        return;
      }
      fill(queues, h('table', { class: 'table compact' },
        h('thead', null, h('tr', null, h('th', { text: t('col.queue') }), h('th', { class: 'num', text: t('overview.waiting') }), h('th', { class: 'num', text: t('state.running') }))),
        h('tbody', null, rows.map((r) => h('tr', { dataset: { queue: r.queue } },
          h('td', null, h('a', { href: `#/tasks?queue=${encodeURIComponent(r.queue)}`, class: 'link', text: r.queue }),
            r.paused ? [' ', badge('paused', { prefix: 'schedule' })] : null,
            r.limit ? h('span', { class: 'muted small', text: ` · ${t('overview.limit', { n: r.limit })}` }) : null),
          h('td', { class: 'num', text: fmtNum(r.depth) }),
          h('td', { class: 'num', text: r.running === null ? '—' : fmtNum(r.running) }))))));
    };
    const refreshQueues = refresher(loadQueues, 2000);
    refreshQueues();
    ctx.onCleanup(live.onSample(refreshQueues));
  },
};

export function commandOf(task) {
  const spec = task.spec || {};
  if (spec.type === 'exec') return shellJoin(spec.argv);
  return spec.type || task.kind;
}

/** Per-queue depth and running count from Prometheus text, when the server exports them. */
function queuesFromMetrics(text) {
  const depth = new Map();
  const running = new Map();
  const re = /^(drover_queue_depth|drover_queue_running|drover_queue_running_tasks|drover_queue_queued)\{([^}]*)\}\s+([0-9.eE+-]+)/;
  for (const line of text.split('\n')) {
    const m = re.exec(line);
    if (!m) continue;
    const q = /queue="([^"]*)"/.exec(m[2]);
    if (!q) continue;
    const v = Number(m[3]);
    if (m[1].includes('running')) running.set(q[1], v);
    else depth.set(q[1], v);
  }
  return [...new Set([...depth.keys(), ...running.keys()])].sort().map((queue) => ({
    queue,
    depth: depth.get(queue) || 0,
    running: running.has(queue) ? running.get(queue) : null,
  }));
}
