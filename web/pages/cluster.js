// The cluster: the servers sharing this store (`GET /v1/cluster`), each with its address, its
// role (leader or standby) and when it was last seen, and the epoch, the leader and the age
// of its lease. Polled every second (the lease age moves on its own). A server older than
// clusters answers 404: the page says so and stops asking.

import { t } from '../i18n.js';
import { h, fill, card, badge, fmtNum, fmtDuration, fmtTime, emptyState, alertBox, refresher } from '../ui.js';
import { api } from '../api.js';

/** `400 ms ago` from a count of milliseconds on the store's clock (no browser clock skew). */
function agoMs(ms) {
  return t('ago.past', { x: fmtDuration(ms) });
}

/** The leader first, then by name. */
export function ordered(members) {
  return members.slice().sort((a, b) => (a.role === 'leader' ? 0 : 1) - (b.role === 'leader' ? 0 : 1) || a.name.localeCompare(b.name));
}

export default {
  mount(root, _params, ctx) {
    ctx.setCrumbs({ text: t('nav.cluster') });
    const summary = h('div', { class: 'stats-row' });
    const banner = h('div');
    const body = h('div', { class: 'table-wrap' }, h('div', { class: 'loading' }, h('span', { class: 'spin' }), t('common.loading')));
    const head = h('div', { class: 'page-head' },
      h('div', null, h('h1', { text: t('cluster.title') }), h('p', { class: 'subtitle', text: t('cluster.subtitle') })));
    fill(root, head, summary, banner, card(null, body, { cls: 'card-flush' }));
    let gone = false; // the server has no cluster view: nothing more to ask

    const stat = (key, label, value, tone, sub) => h('div', { class: ['stat', `tone-${tone}`], dataset: { stat: key } },
      h('div', { class: 'stat-label', text: label }), h('div', { class: 'stat-value', text: value }), h('div', { class: 'stat-sub', text: sub || '' }));

    const render = (v) => {
      const members = ordered(v.members || []);
      const standby = members.filter((m) => m.role === 'standby').length;
      const stale = members.filter((m) => m.stale).length;
      fill(summary,
        stat('epoch', t('cluster.epoch'), fmtNum(v.epoch), 'indigo', t('cluster.epochSub')),
        stat('leader', t('cluster.leader'), v.leader || t('cluster.noLeader'), v.leader ? 'green' : 'red', v.leader ? t('cluster.leaderSub') : t('cluster.noLeaderSub')),
        stat('lease', t('cluster.lease'), v.lease_age_ms === null || v.lease_age_ms === undefined ? '—' : fmtDuration(v.lease_age_ms), 'blue', t('cluster.leaseSub', { lease: fmtDuration(v.lease_ms) })),
        stat('members', t('cluster.members'), fmtNum(members.length), stale ? 'amber' : 'blue', t('cluster.membersSub', { standby: fmtNum(standby), stale: fmtNum(stale) })));
      if (!members.length) {
        fill(body, emptyState('cluster', t('cluster.none')));
        return;
      }
      fill(body, h('table', { class: 'table', dataset: { testid: 'cluster-table' } },
        h('thead', null, h('tr', null,
          [t('col.name'), t('col.address'), t('col.role'), t('col.lastSeen')].map((c) => h('th', { text: c })))),
        h('tbody', null, members.map((m) => h('tr', {
          class: m.stale && 'cluster-row-stale',
          dataset: { member: m.name, role: m.role, stale: String(m.stale), this: String(m.name === v.this) },
        },
        h('td', null,
          h('span', { class: 'strong', text: m.name }),
          m.name === v.this ? h('span', { class: 'chip chip-this', title: t('cluster.thisHint'), text: t('cluster.this') }) : null),
        h('td', { class: 'mono', text: m.address }),
        h('td', { class: 'cell-role' }, badge(m.role, { prefix: 'role' }), m.stale ? badge('stale', { prefix: 'role' }) : null),
        h('td', { class: 'cell-seen' }, h('span', {
          class: ['hb', m.stale ? 'hb-bad' : 'hb-ok'],
          title: m.stale ? `${fmtTime(m.last_seen)} · ${t('cluster.staleHint')}` : fmtTime(m.last_seen),
          text: agoMs(m.last_seen_ms),
        })))))));
    };

    const load = async () => {
      try {
        const v = await api.cluster();
        if (!ctx.alive || gone) return;
        fill(banner);
        render(v);
      } catch (e) {
        if (!ctx.alive) return;
        if (e.status === 404) {
          gone = true;
          const note = card(null, emptyState('cluster', t('cluster.unavailable'), t('cluster.unavailableHint')), { cls: 'card-flush' });
          note.dataset.testid = 'cluster-unavailable';
          fill(root, head, note);
          return;
        }
        // Keep what was shown (a failover is brief); say what failed above it.
        fill(banner, alertBox('error', t('err.loadCluster'), e.message));
        if (body.querySelector('.loading')) fill(body);
      }
    };
    const refetch = refresher(() => (gone ? null : load()), 500);
    ctx.every(1000, refetch);
    load();
  },
};
