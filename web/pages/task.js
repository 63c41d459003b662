// One task: its fields, the attempt timeline, its result, its logs (followed live while it
// runs), and the Cancel and Retry buttons.

import { t } from '../i18n.js';
import { can } from '../auth.js';
import {
  h, s, fill, card, badge, fmtTime, fmtClock, fmtDuration, fmtAgo, parseTime, shellJoin, isTerminal,
  button, alertBox, toast, confirmDialog, copyText, icon, chips, emptyState, spinner,
  refresher, isStale, applyEvent, eventIsOld,
} from '../ui.js';
import { api, resubmitRequest } from '../api.js';

/** Characters of pretty JSON shown before the rest is cut (the raw value is a link away). */
const JSON_SHOWN = 4000;

/** A JSON value, pretty-printed; a large one cut, with a link to the raw value at `href`. */
function jsonBlock(value, href, testid) {
  const text = JSON.stringify(value === undefined ? null : value, null, 2);
  if (text.length <= JSON_SHOWN) return h('pre', { class: 'code json', dataset: { testid }, text });
  return h('div', { class: 'json-cut' },
    h('pre', { class: 'code json', dataset: { testid }, text: `${text.slice(0, JSON_SHOWN)}\n…` }),
    h('div', { class: 'spec-sub muted' },
      t('json.truncated', { shown: JSON_SHOWN, total: text.length }), ' ',
      h('a', { href, target: '_blank', rel: 'noopener', dataset: { testid: `${testid}-raw` }, text: t('json.raw') })));
}

export default {
  mount(root, params, ctx) {
    const id = params.id;
    ctx.setCrumbs({ text: t('nav.tasks'), href: '#/tasks' }, { text: id });
    let task = null;
    let attemptShown = null; // null: follow the latest

    const head = h('div', { class: 'page-head task-head' });
    const banner = h('div');
    const fields = h('div');
    const result = h('div');
    const timeline = h('div');
    const attemptsTable = h('div');
    const logTabs = h('div', { class: 'seg' });
    const follow = h('span', { class: 'follow', hidden: true }, h('span', { class: 'live-dot' }), t('logs.following'));
    const stdout = h('pre', { class: 'log', dataset: { testid: 'stdout' } });
    const stderr = h('pre', { class: 'log log-err', dataset: { testid: 'stderr' } });
    const stderrWrap = h('div', { class: 'log-block' }, h('div', { class: 'log-label', text: 'stderr' }), stderr);
    const logsBody = h('div', { class: 'logs' },
      h('div', { class: 'log-block' }, h('div', { class: 'log-label', text: 'stdout' }), stdout),
      stderrWrap);

    fill(root, head, banner, spinner());
    let loadSeq = 0;

    const layout = () => fill(root, head, banner,
      h('div', { class: 'grid grid-3' },
        h('div', { class: 'span-2 stack-col' },
          card(t('task.result'), result),
          card(t('task.timeline'), [timeline, attemptsTable]),
          card(t('task.logs'), logsBody, { actions: [follow, logTabs] })),
        h('div', { class: 'stack-col' }, card(t('task.details'), fields))));

    const showError = (title, e) => fill(banner, alertBox('error', title, e.message, () => fill(banner)));

    const doCancel = async () => {
      const ok = await confirmDialog({ title: t('task.cancelTitle'), body: t('task.cancelBody'), confirm: t('action.cancelTask'), danger: true });
      if (!ok || !ctx.alive) return;
      try {
        const view = await api.cancel(id);
        if (!ctx.alive) return;
        toast(t('task.cancelled'), 'success');
        render(view);
      } catch (e) {
        showError(t('err.cancel'), e);
        refetch();
      }
    };

    const doRetry = async () => {
      const ok = await confirmDialog({ title: t('task.retryTitle'), body: t('task.retryBody'), confirm: t('action.retry') });
      if (!ok || !ctx.alive || !task) return;
      try {
        const created = await api.submit(resubmitRequest(task));
        toast(t('task.submitted', { id: created.id }), 'success');
        location.hash = `#/tasks/${created.id}`;
      } catch (e) {
        showError(t('err.retry'), e);
      }
    };

    /** The task has secret env (shown by the server as NAME=***). */
    const hasSecrets = () => Object.keys((task.spec || {}).secret_env || {}).length > 0;

    const renderHead = () => {
      const terminal = isTerminal(task.state);
      fill(head,
        h('div', { class: 'task-title' },
          h('div', { class: 'task-title-row' },
            h('h1', { class: 'mono task-id', text: task.id }),
            h('button', { type: 'button', class: 'icon-btn', title: t('action.copy'), 'aria-label': t('action.copy'), onclick: () => copyText(task.id) }, icon('copy', 16))),
          h('div', { class: 'task-sub' }, badge(task.state, { big: true }),
            h('span', { class: 'muted', text: t('task.subline', { namespace: task.namespace, queue: task.queue, kind: task.kind, ago: fmtAgo(task.created_at) }) }))),
        h('div', { class: 'head-actions' },
          can('submit') ? button(t('action.retry'), { iconName: 'retry', onclick: doRetry, disabled: hasSecrets(), attrs: { 'data-testid': 'retry', ...(hasSecrets() ? { title: t('task.retrySecrets') } : {}) } }) : null,
          can('submit') ? button(t('action.cancelTask'), { kind: 'danger', iconName: 'cancel', onclick: doCancel, disabled: terminal, attrs: { 'data-testid': 'cancel' } }) : null));
    };

    const field = (label, value, cls) => [h('dt', { text: label }), h('dd', { class: cls }, value === null || value === undefined || value === '' ? h('span', { class: 'muted', text: '—' }) : value)];

    const renderFields = () => {
      const spec = task.spec || {};
      const start = parseTime(task.started_at);
      const end = parseTime(task.finished_at) ?? (isTerminal(task.state) ? null : Date.now());
      fill(fields, h('dl', { class: 'kv' },
        field(t('field.state'), badge(task.state)),
        field(t('field.queue'), task.queue),
        field(t('field.kind'), task.kind),
        field(t('field.priority'), String(task.priority)),
        field(t('field.attempts'), `${task.attempt} / ${task.max_attempts}`),
        field(t('field.worker'), task.worker),
        field(t('field.created'), fmtTime(task.created_at)),
        field(t('field.started'), task.started_at && fmtTime(task.started_at)),
        field(t('field.finished'), task.finished_at && fmtTime(task.finished_at)),
        field(t('field.duration'), start !== null && end !== null ? fmtDuration(end - start) : null),
        field(t('field.timeout'), task.timeout_ms ? fmtDuration(task.timeout_ms) : null),
        task.not_before ? field(t('field.notBefore'), fmtTime(task.not_before)) : null,
        field(t('field.exitCode'), task.exit_code === null || task.exit_code === undefined ? null : String(task.exit_code), 'mono'),
        task.lost ? field(t('field.lost'), String(task.lost)) : null,
        task.idempotency_key ? field(t('field.idempotencyKey'), task.idempotency_key, 'mono') : null,
        Object.keys(task.label_selector || {}).length ? field(t('field.labelSelector'), chips(task.label_selector)) : null),
      h('div', { class: 'spec' },
        h('div', { class: 'spec-label', text: spec.type === 'handler' ? t('field.payload') : t('field.command') }),
        spec.type === 'exec'
          ? h('pre', { class: 'code', dataset: { testid: 'command' }, text: shellJoin(spec.argv) })
          : spec.type === 'handler'
            ? jsonBlock(task.payload, `/v1/tasks/${encodeURIComponent(task.id)}/payload`, 'payload')
            : h('pre', { class: 'code', text: spec.type || task.kind }),
        spec.cwd ? h('div', { class: 'spec-sub' }, h('span', { class: 'muted', text: `${t('field.cwd')} ` }), h('code', { class: 'code-inline', text: spec.cwd })) : null,
        spec.env && Object.keys(spec.env).length ? h('div', { class: 'spec-sub' }, h('div', { class: 'muted', text: t('field.env') }), chips(spec.env, 'chip mono')) : null,
        hasSecrets() ? h('div', { class: 'spec-sub', dataset: { testid: 'secret-env' } }, h('div', { class: 'muted', text: t('field.secretEnv') }), chips(spec.secret_env, 'chip mono')) : null));
    };

    const renderResult = () => {
      const st = task.state;
      const tone = st === 'succeeded' ? 'success' : ['failed', 'timed_out', 'dead', 'expired'].includes(st) ? 'error' : st === 'cancelled' || st === 'skipped' ? 'neutral' : 'progress';
      const lines = [];
      if (!isTerminal(st)) lines.push(t(`result.${st}`));
      else lines.push(t(`result.${st}`, { code: task.exit_code ?? '—' }));
      fill(result, h('div', { class: ['result', `result-${tone}`], dataset: { testid: 'result' } },
        h('div', { class: 'result-main' }, badge(st, { big: true }), h('span', { class: 'result-text', text: lines.join(' ') })),
        task.exit_code !== null && task.exit_code !== undefined ? h('div', { class: 'result-code' }, h('span', { class: 'muted', text: t('field.exitCode') }), h('strong', { class: 'mono', text: String(task.exit_code) })) : null,
        task.error ? h('pre', { class: 'result-errmsg', text: task.error }) : null,
        task.result !== undefined && task.result !== null || task.result_bytes
          ? h('div', { class: 'result-value' },
            h('div', { class: 'spec-label', text: t('field.returned') }),
            jsonBlock(task.result, `/v1/tasks/${encodeURIComponent(task.id)}/result`, 'result-json'))
          : null));
    };

    const renderTimeline = () => {
      const attempts = task.attempts || [];
      if (!attempts.length) {
        fill(timeline, emptyState('schedules', t('timeline.none'), task.not_before ? t('timeline.notBefore', { at: fmtTime(task.not_before) }) : t('timeline.waiting')));
        fill(attemptsTable);
        return;
      }
      const now = Date.now();
      const spans = attempts.map((a) => ({
        a,
        assigned: parseTime(a.assigned_at),
        started: parseTime(a.started_at),
        finished: parseTime(a.finished_at) ?? (a.outcome ? parseTime(a.started_at) ?? parseTime(a.assigned_at) : now),
      }));
      const t0 = Math.min(...spans.map((x) => x.assigned));
      const t1 = Math.max(t0 + 1, ...spans.map((x) => x.finished));
      const W = 640;
      const L = 110;
      const R = 16;
      const ROW = 30;
      const H = spans.length * ROW + 28;
      const x = (ms) => L + ((ms - t0) / (t1 - t0)) * (W - L - R);
      const svg = s('svg', { class: 'gantt', viewBox: `0 0 ${W} ${H}`, width: '100%', preserveAspectRatio: 'xMinYMin meet' });
      // axis: start, middle, end
      for (const f of [0, 0.5, 1]) {
        const ms = t0 + f * (t1 - t0);
        const xx = x(ms);
        svg.append(s('line', { x1: xx, x2: xx, y1: 4, y2: H - 22, class: 'gantt-grid' }));
        const label = s('text', { x: xx, y: H - 6, class: 'gantt-axis', 'text-anchor': f === 0 ? 'start' : f === 1 ? 'end' : 'middle' });
        label.textContent = fmtClock(ms, t1 - t0 < 10000);
        svg.append(label);
      }
      spans.forEach(({ a, assigned, started, finished }, i) => {
        const y = 6 + i * ROW;
        const outcome = a.outcome || (started ? 'running' : 'assigned');
        const lbl = s('text', { x: 0, y: y + 15, class: 'gantt-label' });
        lbl.textContent = `#${a.attempt} · ${a.worker}`;
        svg.append(lbl);
        const runStart = started ?? finished;
        if (runStart > assigned) svg.append(s('rect', { x: x(assigned), y: y + 4, width: Math.max(2, x(runStart) - x(assigned)), height: 14, rx: 3, class: 'gantt-wait' }));
        if (started !== null) svg.append(s('rect', { x: x(started), y: y + 2, width: Math.max(3, x(finished) - x(started)), height: 18, rx: 4, class: `gantt-run st-fill-${outcome}` }));
        const title = s('title');
        title.textContent = `#${a.attempt} ${t(`outcome.${outcome}`)} · ${fmtDuration((finished ?? now) - (started ?? assigned))}`;
        svg.append(title);
      });
      fill(timeline, h('div', { class: 'gantt-wrap' }, svg),
        h('div', { class: 'legend' },
          h('span', { class: 'legend-item' }, h('span', { class: 'swatch swatch-wait' }), t('timeline.waitLegend')),
          h('span', { class: 'legend-item' }, h('span', { class: 'swatch swatch-outcome' }), t('timeline.runLegend'))));
      fill(attemptsTable, h('table', { class: 'table compact', dataset: { testid: 'attempts' } },
        h('thead', null, h('tr', null, [t('col.attempt'), t('col.worker'), t('col.assigned'), t('col.started'), t('col.finished'), t('col.outcome'), t('col.exitCode')]
          .map((c) => h('th', { text: c })))),
        h('tbody', null, attempts.map((a) => h('tr', { dataset: { attempt: a.attempt } },
          h('td', { text: `#${a.attempt}` }),
          h('td', { text: a.worker }),
          h('td', { class: 'mono small', text: fmtClock(parseTime(a.assigned_at), true) }),
          h('td', { class: 'mono small', text: a.started_at ? fmtClock(parseTime(a.started_at), true) : '—' }),
          h('td', { class: 'mono small', text: a.finished_at ? fmtClock(parseTime(a.finished_at), true) : '—' }),
          h('td', null, a.outcome ? badge(a.outcome, { prefix: 'outcome' }) : badge(a.started_at ? 'running' : 'assigned'),
            a.error ? h('div', { class: 'small err-text', text: a.error }) : null),
          h('td', { class: 'mono', text: a.exit_code ?? '—' }))))));
    };

    const renderLogTabs = () => {
      const n = task.attempt;
      if (n <= 1) { fill(logTabs); return; }
      const cur = attemptShown ?? n;
      fill(logTabs, Array.from({ length: n }, (_, i) => i + 1).map((k) => h('button', {
        type: 'button',
        class: ['seg-btn', k === cur && 'active'],
        text: t('logs.attempt', { n: k }),
        onclick: () => { attemptShown = k === n ? null : k; renderLogTabs(); loadLogs(); },
      })));
    };

    const shownText = new WeakMap();
    const setLog = (pre, text, emptyKey) => {
      const shown = text || `\u0000${emptyKey}`;
      if (shownText.get(pre) === shown) return; // unchanged: keep the reader's selection
      shownText.set(pre, shown);
      const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
      if (text) {
        pre.textContent = text;
        pre.classList.remove('log-empty');
      } else {
        pre.textContent = t(emptyKey);
        pre.classList.add('log-empty');
      }
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    };

    // What is shown of the attempt's output; grows by appends while the task runs when the
    // server answers with offsets (stdout_next/stderr_next), else is fetched whole.
    let logBuf = null;
    let logSeq = 0;
    const loadLogs = async () => {
      if (!task) return;
      if (task.attempt === 0) {
        setLog(stdout, '', 'logs.notStarted');
        stderrWrap.hidden = true;
        return;
      }
      const my = ++logSeq;
      const attempt = attemptShown ?? task.attempt;
      const incremental = logBuf && logBuf.attempt === attempt && Number.isFinite(logBuf.outNext) && Number.isFinite(logBuf.errNext);
      try {
        const l = await api.logs(id, attempt, incremental ? { stdout: logBuf.outNext, stderr: logBuf.errNext } : {});
        if (!ctx.alive || my !== logSeq) return;
        const buf = incremental ? logBuf : { attempt, stdout: '', stderr: '' };
        buf.stdout += l.stdout || '';
        buf.stderr += l.stderr || '';
        buf.outNext = l.stdout_next;
        buf.errNext = l.stderr_next;
        logBuf = buf;
        setLog(stdout, buf.stdout, 'logs.empty');
        stderrWrap.hidden = !buf.stderr;
        setLog(stderr, buf.stderr, 'logs.empty');
      } catch (e) {
        if (!ctx.alive || my !== logSeq) return;
        if (e.notFound) setLog(stdout, '', 'logs.none');
        else setLog(stdout, '', 'logs.error');
      }
    };

    const render = (view) => {
      const first = !task;
      task = view;
      ctx.setCrumbs({ text: t('nav.tasks'), href: '#/tasks' }, { text: view.id });
      if (first) layout();
      renderHead();
      renderFields();
      renderResult();
      renderTimeline();
      renderLogTabs();
      follow.hidden = isTerminal(view.state);
      loadLogs();
    };

    const load = async () => {
      const my = ++loadSeq;
      try {
        const view = await api.task(id);
        if (!ctx.alive || my !== loadSeq) return;
        // An event newer than this answer is already shown; the next refetch catches up.
        if (isStale(view, task)) return;
        render(view);
      } catch (e) {
        if (!ctx.alive || my !== loadSeq) return;
        if (!task) {
          fill(root, head, e.notFound
            ? emptyState('empty', t('task.notFound'), e.message, h('a', { href: '#/tasks', class: 'btn btn-secondary', text: t('action.backToTasks') }))
            : alertBox('error', t('err.loadTask'), e.message));
        } else {
          showError(t('err.loadTask'), e);
        }
      }
    };
    const refetch = refresher(load, 500);

    ctx.onEvent((ev) => {
      if (ev.type === 'poll' || ev.type === 'resync') {
        if (!task || !isTerminal(task.state) || ev.type === 'resync') refetch();
        return;
      }
      if (ev.type === 'task' && ev.task_id === id) {
        // Show the new state at once; the refetch brings attempts, times and logs. An event
        // that comes while the page still loads is not lost: the refetch runs after the load.
        if (task && ev.state && !eventIsOld(ev, task)) {
          task = applyEvent(task, ev);
          renderHead();
          renderResult();
          follow.hidden = isTerminal(task.state);
        }
        refetch();
      }
    });
    // While it runs: follow the output (log chunks are not state changes) and re-read the
    // task now and then, in case an event was missed.
    let ticks = 0;
    ctx.every(1000, () => {
      if (!task || isTerminal(task.state)) return;
      if (++ticks % 3 === 0) refetch();
      else loadLogs();
    });
    refetch();
  },
};
