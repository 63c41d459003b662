// The message table: both languages have the same keys, every key the code uses exists, and
// no page or module writes visible text outside the table. Runs without a browser.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './harness.mjs';

const WEB = join(ROOT, 'web');
const { MESSAGES } = await import(join(WEB, 'i18n.js'));

function sources(dir) {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.js') ? [p] : [];
  });
}

test('English and Chinese have the same keys', () => {
  const en = Object.keys(MESSAGES.en).sort();
  const zh = Object.keys(MESSAGES['zh-CN']).sort();
  assert.deepEqual(zh, en);
  for (const k of en) {
    const vars = (s) => (s.match(/\{\w+\}/g) || []).sort().join();
    assert.equal(vars(MESSAGES['zh-CN'][k]), vars(MESSAGES.en[k]), `placeholders of ${k}`);
  }
});

test('the Chinese table is translated', () => {
  const same = Object.keys(MESSAGES.en).filter((k) => MESSAGES.en[k] === MESSAGES['zh-CN'][k] && /[a-z]{3,}/i.test(MESSAGES.en[k]));
  // Names that stay as they are: the product's API and the ID column.
  assert.deepEqual(same.filter((k) => !['col.id'].includes(k)), []);
});

test('every literal key used by the code is in the table', () => {
  const missing = [];
  for (const file of sources(WEB)) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/\bt\(\s*'([a-zA-Z0-9_.-]+)'/g)) {
      if (!(m[1] in MESSAGES.en)) missing.push(`${file}: ${m[1]}`);
    }
  }
  assert.deepEqual(missing, []);
});

test('dynamic keys cover every state, outcome and mode', () => {
  const need = [
    ...['pending', 'queued', 'assigned', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out', 'skipped', 'expired', 'dead']
      .flatMap((s) => [`state.${s}`, `result.${s}`]),
    ...['succeeded', 'failed', 'timed_out', 'cancelled', 'lost', 'running', 'assigned'].map((s) => `outcome.${s}`),
    ...['alive', 'suspect', 'lost', 'draining', 'drained'].map((s) => `worker.${s}`),
    ...['suspect', 'lost', 'alive'].map((s) => `workers.event.${s}`),
    ...['live', 'polling', 'reconnecting', 'connecting'].flatMap((m) => [`live.${m}`, `live.${m}.hint`]),
    ...['overview', 'tasks', 'workers', 'workflows', 'schedules', 'cluster', 'audit'].map((n) => `nav.${n}`),
    ...['leader', 'standby', 'stale'].map((r) => `role.${r}`),
    ...['ok', 'refused', 'error'].map((o) => `audit.${o}`),
    ...['1h', '24h', '7d', '30d'].map((s) => `audit.since.${s}`),
  ];
  assert.deepEqual(need.filter((k) => !(k in MESSAGES.en)), []);
});
