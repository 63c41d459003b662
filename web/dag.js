// Workflow graphs: a layered layout (each node in the column of its depth, the longest path
// from a root), crossings reduced by barycenter sweeps, drawn as SVG with state colours.

import { s } from './ui.js';

const NODE_W = 184;
const NODE_H = 58;
const GAP_X = 60;
const GAP_Y = 22;
const PAD = 24;

/**
 * Lays out nodes [{name, after: [names]}] left to right.
 * Returns {layers: [[name]], pos: Map(name -> {x, y, layer}), edges: [{from, to}], width, height}.
 * Unknown names in `after` are ignored; a cycle (which the server rejects) is broken where found.
 */
export function layoutDag(nodes) {
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const edges = [];
  for (const n of nodes) {
    for (const p of n.after || []) {
      if (byName.has(p) && p !== n.name) edges.push({ from: p, to: n.name });
    }
  }
  // depth = longest path from a root; DFS with an on-stack mark breaks cycles
  const depth = new Map();
  const onStack = new Set();
  const depthOf = (name) => {
    if (depth.has(name)) return depth.get(name);
    if (onStack.has(name)) return 0;
    onStack.add(name);
    let d = 0;
    for (const p of byName.get(name).after || []) {
      if (byName.has(p) && p !== name && !onStack.has(p)) d = Math.max(d, depthOf(p) + 1);
    }
    onStack.delete(name);
    depth.set(name, d);
    return d;
  };
  nodes.forEach((n) => depthOf(n.name));
  // keep only edges that go forward (drops the back edge of a cycle)
  const fwd = edges.filter((e) => depth.get(e.from) < depth.get(e.to));

  const layers = [];
  for (const n of nodes) {
    const d = depth.get(n.name);
    (layers[d] ||= []).push(n.name);
  }
  for (let i = 0; i < layers.length; i++) layers[i] ||= [];

  const parents = new Map(nodes.map((n) => [n.name, []]));
  const children = new Map(nodes.map((n) => [n.name, []]));
  for (const e of fwd) {
    parents.get(e.to).push(e.from);
    children.get(e.from).push(e.to);
  }
  const index = new Map();
  const reindex = () => layers.forEach((l) => l.forEach((n, i) => index.set(n, i)));
  reindex();
  const bary = (name, nbrs) => {
    const ns = nbrs.get(name);
    if (!ns.length) return index.get(name);
    return ns.reduce((a, m) => a + index.get(m), 0) / ns.length;
  };
  for (let pass = 0; pass < 6; pass++) {
    const down = pass % 2 === 0;
    const order = down ? layers.map((_, i) => i).slice(1) : layers.map((_, i) => i).reverse().slice(1);
    for (const li of order) {
      const nbrs = down ? parents : children;
      const keyed = layers[li].map((n) => [n, bary(n, nbrs)]);
      keyed.sort((a, b) => a[1] - b[1]);
      layers[li] = keyed.map((k) => k[0]);
      reindex();
    }
  }

  const tallest = Math.max(1, ...layers.map((l) => l.length));
  const height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y;
  const width = PAD * 2 + layers.length * NODE_W + Math.max(0, layers.length - 1) * GAP_X;
  const pos = new Map();
  layers.forEach((l, li) => {
    const colH = l.length * NODE_H + (l.length - 1) * GAP_Y;
    const y0 = PAD + (height - PAD * 2 - colH) / 2;
    l.forEach((name, i) => {
      pos.set(name, { x: PAD + li * (NODE_W + GAP_X), y: y0 + i * (NODE_H + GAP_Y), layer: li });
    });
  });
  return { layers, pos, edges: fwd, width, height };
}

function truncate(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * Draws a workflow {nodes: [{name, task_id, state, after}]} as an SVG element.
 * `label(state)` names a state; `onNode(node)` is called on a click.
 */
export function renderDag(wf, { label, onNode }) {
  const nodes = wf.nodes || [];
  const { pos, edges, width, height } = layoutDag(nodes);
  const byName = new Map(nodes.map((n) => [n.name, n]));
  // Scales down to fit its card, never up, and never below 60% (then it scrolls).
  const svg = s('svg', { class: 'dag', viewBox: `0 0 ${width} ${height}`, role: 'img', style: { maxWidth: `${width}px`, minWidth: `${Math.round(width * 0.6)}px` } });
  svg.append(s('defs', null,
    s('marker', { id: 'dag-arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      s('path', { d: 'M0 0L10 5L0 10z', class: 'dag-arrowhead' }))));

  const edgeLayer = s('g', { class: 'dag-edges' });
  for (const e of edges) {
    const a = pos.get(e.from);
    const b = pos.get(e.to);
    const x1 = a.x + NODE_W;
    const y1 = a.y + NODE_H / 2;
    const x2 = b.x - 2;
    const y2 = b.y + NODE_H / 2;
    const dx = (x2 - x1) / 2;
    const to = byName.get(e.to);
    const from = byName.get(e.from);
    edgeLayer.append(s('path', {
      class: ['dag-edge', `from-${from.state || 'pending'}`, to.state === 'skipped' && 'skipped'],
      d: `M${x1} ${y1} C${x1 + dx} ${y1}, ${x2 - dx} ${y2}, ${x2} ${y2}`,
      'marker-end': 'url(#dag-arrow)',
      dataset: { from: e.from, to: e.to },
    }));
  }
  svg.append(edgeLayer);

  const nodeLayer = s('g', { class: 'dag-nodes' });
  for (const n of nodes) {
    const p = pos.get(n.name);
    const state = n.state || 'pending';
    const g = s('g', {
      class: ['dag-node', `st-${state}`, n.task_id && 'clickable'],
      transform: `translate(${p.x} ${p.y})`,
      dataset: { name: n.name, state },
      tabindex: n.task_id ? 0 : null,
    });
    const title = s('title');
    title.textContent = `${n.name} · ${label(state)}${n.task_id ? ` · ${n.task_id}` : ''}`;
    const nameText = s('text', { x: 20, y: 24, class: 'dag-name' });
    nameText.textContent = truncate(n.name, 22);
    const stateText = s('text', { x: 34, y: 43, class: 'dag-state' });
    stateText.textContent = label(state);
    g.append(
      title,
      s('rect', { class: 'dag-box', width: NODE_W, height: NODE_H, rx: 10, ry: 10 }),
      s('rect', { class: 'dag-stripe', x: 0, y: 0, width: 5, height: NODE_H, rx: 2 }),
      nameText,
      s('circle', { class: 'dag-dot', cx: 25, cy: 39, r: 4 }),
      stateText,
    );
    if (n.task_id && onNode) {
      g.addEventListener('click', () => onNode(n));
      g.addEventListener('keydown', (e) => { if (e.key === 'Enter') onNode(n); });
    }
    nodeLayer.append(g);
  }
  svg.append(nodeLayer);
  return svg;
}

/** Sets one node's state in place (live updates) without laying the graph out again. */
export function setNodeState(svg, name, state, label) {
  const g = [...svg.querySelectorAll('.dag-node')].find((el) => el.dataset.name === name);
  if (!g) return false;
  g.setAttribute('class', g.getAttribute('class').replace(/\bst-[a-z_]+/, `st-${state}`));
  g.dataset.state = state;
  const txt = g.querySelector('.dag-state');
  if (txt) txt.textContent = label(state);
  for (const e of svg.querySelectorAll('.dag-edge')) {
    if (e.dataset.from === name) e.setAttribute('class', e.getAttribute('class').replace(/\bfrom-[a-z_]+/, `from-${state}`));
  }
  return true;
}

/** A built-in example: a nightly data pipeline caught mid-run, with one failed branch. */
export const DEMO_WORKFLOW = {
  id: 'demo',
  name: 'nightly-etl',
  state: 'running',
  nodes: [
    { name: 'extract-orders', task_id: null, state: 'succeeded', after: [] },
    { name: 'extract-customers', task_id: null, state: 'succeeded', after: [] },
    { name: 'extract-payments', task_id: null, state: 'succeeded', after: [] },
    { name: 'clean-orders', task_id: null, state: 'succeeded', after: ['extract-orders'] },
    { name: 'dedupe-customers', task_id: null, state: 'succeeded', after: ['extract-customers'] },
    { name: 'reconcile-payments', task_id: null, state: 'failed', after: ['extract-payments', 'extract-orders'] },
    { name: 'join-facts', task_id: null, state: 'running', after: ['clean-orders', 'dedupe-customers'] },
    { name: 'fraud-features', task_id: null, state: 'skipped', after: ['reconcile-payments'] },
    { name: 'daily-report', task_id: null, state: 'queued', after: ['join-facts'] },
    { name: 'train-churn-model', task_id: null, state: 'pending', after: ['join-facts', 'fraud-features'] },
    { name: 'publish-dashboard', task_id: null, state: 'pending', after: ['daily-report', 'train-churn-model'] },
    { name: 'notify-oncall', task_id: null, state: 'pending', after: ['publish-dashboard'] },
  ],
};
