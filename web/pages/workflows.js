// Workflows: the list, and one workflow drawn as a graph with node states, updated live from
// the event stream: task events of its nodes (they carry the workflow id) recolour a node in
// place, workflow events change the workflow's state; nothing is laid out again or reloaded.
// `#/workflows/demo` draws a built-in example when the server has no such workflow.

import { t } from '../i18n.js';
import { h, fill, card, badge, fmtAgo, emptyState, alertBox, spinner, refresher, shortId, TASK_STATES, TERMINAL, button, confirmDialog, toast } from '../ui.js';
import { WORKFLOW_TERMINAL } from '../states.js';
import { stackBar } from '../charts.js';
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
    const refetch = refresher(load, 1000);
    // A workflow's state changes with workflow events; a node's start changes nothing here.
    ctx.onEvent((ev) => { if (ev.type === 'workflow' || ev.type === 'poll' || ev.type === 'resync') refetch(); });
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
    let byTask = new Map(); // task id -> node
    // Events that arrive while the workflow is being fetched: the answer may predate them,
    // so they are applied again on top of it.
    let fetching = 0;
    let held = [];

    fill(root, head, banner,
      card(t('workflows.graph'), [graphHost, legend], { actions: h('span', { class: 'muted small', text: t('workflows.graphHint') }) }),
      card(t('workflows.nodes'), nodesTable, { cls: 'card-flush' }));

    const onNode = (n) => { location.hash = `#/tasks/${n.task_id}`; };
    // A rerun replaces every node that did not succeed.
    const RERUNNABLE = new Set([...TERMINAL].filter((s) => s !== 'succeeded'));

    const rerun = async () => {
      const ok = await confirmDialog({ title: t('workflows.rerunTitle'), body: t('workflows.rerunBody'), confirm: t('action.rerunFailed') });
      if (!ok || !ctx.alive) return;
      try {
        setWorkflow(await api.rerunWorkflow(wf.id));
        if (!ctx.alive) return;
        toast(t('workflows.rerunDone'), 'success');
        renderAll();
      } catch (e) {
        if (ctx.alive) fill(banner, alertBox('error', t('err.rerun'), e.message, () => fill(banner)));
      }
    };

    const setWorkflow = (w) => {
      wf = w;
      byTask = new Map((wf.nodes || []).filter((n) => n.task_id).map((n) => [n.task_id, n]));
    };

    const countStates = () => {
      const counts = {};
      for (const n of wf.nodes || []) counts[n.state || 'pending'] = (counts[n.state || 'pending'] || 0) + 1;
      return counts;
    };

    /** Title, state, progress and the rerun button: everything an event can change up top. */
    const renderHead = () => {
      const nodes = wf.nodes || [];
      const counts = countStates();
      const done = nodes.filter((n) => TERMINAL.has(n.state)).length;
      const canRerun = !isDemo && WORKFLOW_TERMINAL.has(wf.state || 'running') && nodes.some((n) => RERUNNABLE.has(n.state));
      const parts = TASK_STATES.map((st) => ({ key: st, value: counts[st] || 0, label: stateLabel(st) }));
      fill(head,
        h('div', null,
          h('h1', { text: wf.name || wf.id }),
          h('div', { class: 'task-sub' },
            wf.state ? h('span', { dataset: { testid: 'wf-state', state: wf.state } }, badge(wf.state, { big: true })) : null,
            h('span', { class: 'muted', text: t('workflows.summary', { n: nodes.length, id: wf.id }) }),
            nodes.length ? h('span', { class: 'wf-progress', dataset: { testid: 'wf-progress' } },
              stackBar(parts),
              h('span', { class: 'small muted', text: t('workflows.progress', { done, n: nodes.length }) })) : null)),
        canRerun ? h('div', { class: 'head-actions' }, button(t('action.rerunFailed'), { iconName: 'retry', onclick: rerun, attrs: { 'data-testid': 'rerun' } })) : null);
    };

    const renderLegend = () => {
      const counts = countStates();
      fill(legend, TASK_STATES.filter((st) => counts[st]).map((st) => h('span', { class: 'legend-item' },
        h('span', { class: `swatch st-bg-${st}` }), `${stateLabel(st)} · ${counts[st]}`)));
    };

    const nodeRow = (n) => h('tr', { dataset: { node: n.name, state: n.state || 'pending' } },
      h('td', { class: 'strong', text: n.name }),
      h('td', { class: 'cell-state' }, badge(n.state || 'pending')),
      h('td', { class: 'muted', text: (n.after || []).join(', ') || '—' }),
      h('td', null, n.task_id ? h('a', { href: `#/tasks/${n.task_id}`, class: 'mono id-link', title: n.task_id, text: shortId(n.task_id) }) : h('span', { class: 'muted', text: '—' })));

    const renderAll = () => {
      renderHead();
      if (isDemo) fill(banner, alertBox('info', t('workflows.demoTitle'), t('workflows.demoBody')));
      svg = renderDag(wf, { label: stateLabel, onNode });
      fill(graphHost, svg);
      renderLegend();
      fill(nodesTable, h('table', { class: 'table', dataset: { testid: 'workflow-nodes' } },
        h('thead', null, h('tr', null, [t('col.node'), t('col.state'), t('col.after'), t('col.task')].map((c) => h('th', { text: c })))),
        h('tbody', null, (wf.nodes || []).map(nodeRow))));
    };

    // Head and legend follow a burst of events once per frame.
    let frame = 0;
    const renderSoon = () => {
      if (frame) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        if (ctx.alive && wf) { renderHead(); renderLegend(); }
      });
    };
    ctx.onCleanup(() => cancelAnimationFrame(frame));

    /** One node's new state, in the graph and the table, without laying anything out again. */
    const setNode = (node, state) => {
      node.state = state;
      if (svg) setNodeState(svg, node.name, state, stateLabel);
      const tr = [...nodesTable.querySelectorAll('tbody tr')].find((el) => el.dataset.node === node.name);
      if (tr) {
        tr.dataset.state = state;
        fill(tr.querySelector('.cell-state'), badge(state));
        tr.classList.remove('flash');
        void tr.offsetWidth; // restart the highlight
        tr.classList.add('flash');
      }
      renderSoon();
    };

    /** Applies a live event; returns false when only a fetch can tell (a node it does not know). */
    const apply = (ev, quiet = false) => {
      if (ev.type === 'task') {
        const node = byTask.get(ev.task_id);
        if (!node) return ev.workflow !== wf.id; // a rerun's new task: fetch the new node list
        if (node.state !== ev.state) setNode(node, ev.state);
        // Every node ended but no workflow event said how it ended (yet): ask the server.
        const ended = (wf.nodes || []).every((n) => TERMINAL.has(n.state));
        return !ended || WORKFLOW_TERMINAL.has(wf.state);
      }
      if (ev.type === 'workflow' && ev.workflow === wf.id) {
        const was = wf.state;
        if (was === ev.state) return true;
        wf.state = ev.state;
        renderSoon();
        if (!quiet && WORKFLOW_TERMINAL.has(ev.state)) {
          toast(t('workflows.endedToast', { name: wf.name || wf.id, state: stateLabel(ev.state) }), ev.state === 'succeeded' ? 'success' : 'error');
        }
        return true;
      }
      return true;
    };

    const load = async () => {
      fetching++;
      try {
        const res = await api.workflow(id);
        if (!ctx.alive) return;
        setWorkflow(res);
        isDemo = false;
        renderAll();
        for (const ev of held) apply(ev, true);
      } catch (e) {
        if (!ctx.alive) return;
        if (e.notFound && id === 'demo') {
          setWorkflow(DEMO_WORKFLOW);
          isDemo = true;
          renderAll();
        } else if (e.notFound) {
          fill(head, h('div', null, h('h1', { text: id })));
          fill(graphHost, emptyState('graph', t('workflows.notFound'), e.message, h('a', { href: '#/workflows/demo', class: 'btn btn-secondary', text: t('workflows.openDemo') })));
        } else {
          fill(banner, alertBox('error', t('err.loadWorkflow'), e.message));
        }
      } finally {
        if (--fetching === 0) held = [];
      }
    };
    const refetch = refresher(load, 1000);
    ctx.onEvent((ev) => {
      if (ev.type === 'poll' || ev.type === 'resync') {
        if (!isDemo) refetch();
        return;
      }
      if (isDemo || (ev.type !== 'task' && ev.type !== 'workflow')) return;
      if (fetching > 0) held.push(ev);
      if (!wf) return;
      if (!apply(ev)) refetch();
    });
    load();
  },
};
