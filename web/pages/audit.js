// The audit log (admins only): every state-changing or refused request, newest first, one page
// at a time from the server (`before` = the previous page's `next`), filtered by age and token
// name (kept in the URL). Another role gets the server's 403 and an "admins only" note.

import { t } from '../i18n.js';
import { h, fill, card, badge, fmtTime, fmtAgo, fmtNum, emptyState, button, alertBox, icon, refresher } from '../ui.js';
import { api } from '../api.js';

const SINCE = ['1h', '24h', '7d', '30d'];
const PAGE = 50;

/** ok (2xx, 3xx), refused (the edge said no: 401, 403, 421, 429) or error (any other). */
export function outcomeOf(status) {
  if (status < 400) return 'ok';
  return [401, 403, 421, 429].includes(status) ? 'refused' : 'error';
}

export default {
  mount(root, params, ctx) {
    ctx.setCrumbs({ text: t('nav.audit') });
    const q = params.query;
    const st = {
      since: SINCE.includes(q.get('since')) ? q.get('since') : '',
      token: q.get('token') || '',
      cursors: [null], // `before` of each page visited; the last is the current page
      next: null,
      denied: false, // the server said 403: nothing more to ask
    };

    const sinceSel = h('select', { class: 'input select', 'aria-label': t('filter.since'), dataset: { testid: 'audit-since' } },
      h('option', { value: '', text: t('filter.anyTime') }),
      SINCE.map((s) => h('option', { value: s, text: t(`audit.since.${s}`), selected: s === st.since })));
    const tokenInput = h('input', { class: 'input', type: 'search', placeholder: t('filter.allTokens'), value: st.token, 'aria-label': t('filter.token'), dataset: { testid: 'audit-token' } });
    const tbody = h('tbody');
    const body = h('div', { class: 'table-wrap' });
    const pageInfo = h('span', { class: 'muted' });
    const newer = button(t('page.newer'), { iconName: 'back', attrs: { 'data-testid': 'page-newer' } });
    const older = h('button', { type: 'button', class: 'btn btn-secondary', dataset: { testid: 'page-older' } },
      h('span', { text: t('page.older') }), icon('next', 16));
    const banner = h('div');
    const table = h('table', { class: 'table', dataset: { testid: 'audit-table' } },
      h('thead', null, h('tr', null,
        [t('col.time'), t('col.token'), t('col.role'), t('col.remote'), t('col.operation'), t('col.object'), t('col.status')]
          .map((c) => h('th', { text: c })))),
      tbody);
    const page = card(null, [
      h('div', { class: 'toolbar' },
        h('div', { class: 'toolbar-left' },
          h('label', { class: 'filter' }, h('span', { text: t('filter.since') }), sinceSel),
          h('label', { class: 'filter' }, h('span', { text: t('filter.token') }), tokenInput)),
        h('div', { class: 'toolbar-right' }, button(t('action.refresh'), { iconName: 'refresh', onclick: () => load() }))),
      body,
      h('div', { class: 'pager' }, pageInfo, h('div', { class: 'pager-btns' }, newer, older)),
    ], { cls: 'card-flush' });
    const head = h('div', { class: 'page-head' },
      h('div', null, h('h1', { text: t('audit.title') }), h('p', { class: 'subtitle', text: t('audit.subtitle') })));
    fill(root, head, banner, page);

    const syncUrl = () => ctx.replaceQuery({ since: st.since, token: st.token });

    const renderRow = (r) => h('tr', { dataset: { seq: r.seq, operation: r.operation, status: r.status } },
      h('td', { class: 'nowrap', title: fmtAgo(r.at) }, fmtTime(r.at)),
      h('td', { class: r.token ? 'strong' : 'muted', text: r.token || t('audit.noToken') }),
      h('td', { class: r.role ? '' : 'muted', text: r.role || '—' }),
      h('td', { class: 'mono nowrap', text: r.remote }),
      h('td', { class: 'mono cell-operation', text: r.operation }),
      h('td', { class: 'mono cmd', title: r.object, text: r.object }),
      h('td', { class: 'nowrap cell-status' }, badge(outcomeOf(r.status), { prefix: 'audit' }), h('span', { class: 'mono muted status-code', text: ` ${r.status}` })));

    let seq = 0;
    const load = async () => {
      const my = ++seq;
      const before = st.cursors[st.cursors.length - 1];
      if (!tbody.children.length) fill(body, h('div', { class: 'loading' }, h('span', { class: 'spin' }), t('common.loading')));
      try {
        const res = await api.audit({ since: st.since, token: st.token, before, limit: PAGE });
        if (!ctx.alive || my !== seq) return;
        fill(banner);
        st.next = res.next ?? null;
        tbody.replaceChildren(...res.records.map(renderRow));
        if (!res.records.length) {
          const filtered = st.since || st.token;
          fill(body, emptyState('audit', filtered ? t('audit.noneMatch') : t('audit.none'), filtered ? t('audit.noneMatchHint') : null));
        } else if (body.firstChild !== table) {
          fill(body, table);
        }
        const pageNo = st.cursors.length;
        const from = (pageNo - 1) * PAGE + (res.records.length ? 1 : 0);
        pageInfo.textContent = t('page.info', { page: pageNo, from: fmtNum(from), to: fmtNum((pageNo - 1) * PAGE + res.records.length) });
        newer.disabled = st.cursors.length <= 1;
        older.disabled = st.next === null;
      } catch (e) {
        if (!ctx.alive || my !== seq) return;
        if (e.status === 403) {
          // The server decides: only an admin reads the audit log.
          st.denied = true;
          const note = card(null, emptyState('lock', t('audit.adminsOnly'), t('audit.adminsOnlyHint')), { cls: 'card-flush' });
          note.dataset.testid = 'admins-only';
          fill(root, head, note);
          return;
        }
        fill(banner, alertBox('error', t('err.loadAudit'), e.message));
        if (!tbody.children.length) fill(body);
      }
    };
    const refetch = refresher(() => (st.denied ? null : load()), 1000);

    const reset = () => {
      st.cursors = [null];
      tbody.replaceChildren();
      syncUrl();
      load();
    };
    sinceSel.addEventListener('change', () => { st.since = sinceSel.value; reset(); });
    let qTimer = null;
    tokenInput.addEventListener('input', () => {
      clearTimeout(qTimer);
      qTimer = setTimeout(() => { st.token = tokenInput.value.trim(); reset(); }, 300);
    });
    newer.addEventListener('click', () => { if (st.cursors.length > 1) { st.cursors.pop(); tbody.replaceChildren(); load(); } });
    older.addEventListener('click', () => { if (st.next !== null) { st.cursors.push(st.next); tbody.replaceChildren(); load(); } });

    // New records come with the changes they record (the log is written just after the
    // answer): the first page follows them, and polls for refusals, which change nothing.
    ctx.onEvent(() => { if (st.cursors.length === 1) refetch(); });
    ctx.every(5000, () => { if (st.cursors.length === 1) refetch(); });
    load();
  },
};
