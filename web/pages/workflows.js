// Workflows: the list, and one workflow drawn as a graph with node states, updated live.
// `#/workflows/demo` draws a built-in example when the server has no such workflow.

import { t } from '../i18n.js';
import { h, fill, card, badge, fmtAgo, emptyState, alertBox, spinner, refresher, shortId, TASK_STATES, button, confirmDialog, toast } from '../ui.js';
import { api } from '../api.js';
import { renderDag, setNodeState, DEMO_WORKFLOW } from '../dag.js';

const stateLabel = (st) => t(`state.${st}`);

export const workflowList = {
  mount(root, _params, ctx) {
    ctx.setCrumbs({ text: t('nav.workflows') });
    const body = h('div', null, spinner());
    const demoLink = h('a', { href: '#/workflows/demo', class: 'btn btn-secondary' }, t('workflows.openDemo'));
    fill(root,
      h('div', { class: 'page-head' },
        h('div', null, h('h1', { text: t('workflows.title') }), h('p', { class: 'subtitle', text: t('workflows.subtitle') })),
        h('div', { class: 'head-actions' }, demoLink)),
      card(null, body, { cls: 'card-flush' }));

    const load = async () => {
      try {
        const res = await api.workflows();
        if (!ctx.alive) return;
        const list = Array.isArray(res) ? res : (res && res.workflows) || [];
        if (!list.length) {
          fill(body, emptyState('graph', t('workflows.none'), h('code', { class: 'code-inline', text: 'drover submit --file workflow.yaml' })));
          return;
        }
        fill(body, h('table', { class: 'table' },
          h('thead', null, h('tr', null, [t('col.name'), t('col.id'), t('col.state'), t('col.nodes'), t('col.created')].map((c) => h('th', { text: c })))),
          h('tbody', null, list.map((w) => h('tr', { class: 'row-link', onclick: () => { location.hash = `#/workflows/${encodeURIComponent(w.id)}`; } },
            h('td', null, h('a', { href: `#/workflows/${encodeURIComponent(w.id)}`, class: 'strong link', text: w.name || w.id })),
            h('td', { class: 'mono small', title: w.id, text: shortId(w.id) }),
            h('td', null, w.state ? badge(w.state) : '—'),
            h('td', { class: 'num', text: Array.isArray(w.nodes) ? w.nodes.length : (w.node_count ?? '—') }),
            h('td', { class: 'muted', text: w.created_at ? fmtAgo(w.created_at) : '—' }))))));
      } catch (e) {
        if (!ctx.alive) return;
        if (e.notFound) {
          fill(body, emptyState('graph', t('workflows.notYet'), t('workflows.notYetHint'), h('a', { href: '#/workflows/demo', class: 'btn btn-primary', text: t('workflows.openDemo') })));
        } else {
          fill(body, alertBox('error', t('err.loadWorkflows'), e.message));
        }
      }
    };
    ctx.onEvent((ev) => { if (ev.type === 'workflow' || ev.type === 'poll' || ev.type === 'resync') load(); });
    load();
  },
};

export const workflowGraph = {
  mount(root, params, ctx) {
    const id = params.id;
    ctx.setCrumbs({ text: t('nav.workflows'), href: '#/workflows' }, { text: id });
    const head = h('div', { class: 'page-head' });
    const banner = h('div');
    const graphHost = h('div', { class: 'dag-wrap', dataset: { testid: 'dag' } }, spinner());
    const legend = h('div', { class: 'legend dag-legend' });
    const nodesTable = h('div');
    let wf = null;
    let svg = null;
    let isDemo = false;

    fill(root, head, banner,
      card(t('workflows.graph'), [graphHost, legend], { actions: h('span', { class: 'muted small', text: t('workflows.graphHint') }) }),
      card(t('workflows.nodes'), nodesTable, { cls: 'card-flush' }));

    const onNode = (n) => { location.hash = `#/tasks/${n.task_id}`; };
    const RERUNNABLE = new Set(['failed', 'skipped', 'cancelled', 'timed_out', 'dead', 'expired']);

    const rerun = async () => {
      const ok = await confirmDialog({ title: t('workflows.rerunTitle'), body: t('workflows.rerunBody'), confirm: t('action.rerunFailed') });
      if (!ok || !ctx.alive) return;
      try {
        wf = await api.rerunWorkflow(wf.id);
        if (!ctx.alive) return;
        toast(t('workflows.rerunDone'), 'success');
        renderAll();
      } catch (e) {
        if (ctx.alive) fill(banner, alertBox('error', t('err.rerun'), e.message, () => fill(banner)));
      }
    };

    const renderAll = () => {
      const counts = {};
      for (const n of wf.nodes || []) counts[n.state || 'pending'] = (counts[n.state || 'pending'] || 0) + 1;
      const canRerun = !isDemo && (wf.nodes || []).some((n) => RERUNNABLE.has(n.state));
      fill(head,
        h('div', null,
          h('h1', { text: wf.name || wf.id }),
          h('div', { class: 'task-sub' }, wf.state ? badge(wf.state, { big: true }) : null,
            h('span', { class: 'muted', text: t('workflows.summary', { n: (wf.nodes || []).length, id: wf.id }) }))),
        canRerun ? h('div', { class: 'head-actions' }, button(t('action.rerunFailed'), { iconName: 'retry', onclick: rerun, attrs: { 'data-testid': 'rerun' } })) : null);
      if (isDemo) fill(banner, alertBox('info', t('workflows.demoTitle'), t('workflows.demoBody')));
      svg = renderDag(wf, { label: stateLabel, onNode });
      fill(graphHost, svg);
      fill(legend, TASK_STATES.filter((st) => counts[st]).map((st) => h('span', { class: 'legend-item' },
        h('span', { class: `swatch st-bg-${st}` }), `${stateLabel(st)} · ${counts[st]}`)));
      fill(nodesTable, h('table', { class: 'table' },
        h('thead', null, h('tr', null, [t('col.node'), t('col.state'), t('col.after'), t('col.task')].map((c) => h('th', { text: c })))),
        h('tbody', null, (wf.nodes || []).map((n) => h('tr', { dataset: { node: n.name } },
          h('td', { class: 'strong', text: n.name }),
          h('td', null, badge(n.state || 'pending')),
          h('td', { class: 'muted', text: (n.after || []).join(', ') || '—' }),
          h('td', null, n.task_id ? h('a', { href: `#/tasks/${n.task_id}`, class: 'mono id-link', title: n.task_id, text: shortId(n.task_id) }) : h('span', { class: 'muted', text: '—' })))))));
    };

    const load = async () => {
      try {
        const res = await api.workflow(id);
        if (!ctx.alive) return;
        wf = res;
        isDemo = false;
        renderAll();
      } catch (e) {
        if (!ctx.alive) return;
        if (e.notFound && id === 'demo') {
          wf = DEMO_WORKFLOW;
          isDemo = true;
          renderAll();
        } else if (e.notFound) {
          fill(head, h('div', null, h('h1', { text: id })));
          fill(graphHost, emptyState('graph', t('workflows.notFound'), e.message, h('a', { href: '#/workflows/demo', class: 'btn btn-secondary', text: t('workflows.openDemo') })));
        } else {
          fill(banner, alertBox('error', t('err.loadWorkflow'), e.message));
        }
      }
    };
    const refetch = refresher(load, 1000);
    ctx.onEvent((ev) => {
      if (isDemo || !wf) return;
      if (ev.type === 'task') {
        const node = (wf.nodes || []).find((n) => n.task_id && n.task_id === ev.task_id);
        if (node && svg) {
          node.state = ev.state;
          setNodeState(svg, node.name, ev.state, stateLabel);
          refetch();
        }
      } else if (ev.type === 'workflow' || ev.type === 'poll' || ev.type === 'resync') {
        refetch();
      }
    });
    load();
  },
};
