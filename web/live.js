// Live data for every page: the server's event stream (GET /v1/events, Server-Sent Events),
// or, when the stream is not there or drops, a poll tick every 2 s so the pages stay live.
// Also samples /v1/stats for the overview's charts, whichever page is open.
//
// Subscribers get:
//   {type: 'task', task_id, state, queue, attempt, worker, workflow, seq, ...}
//                      a task changed state (`workflow`: the workflow it is a node of)
//   {type: 'worker', worker, state}      joined, suspect, lost, alive, draining, resumed, left
//   {type: 'workflow', workflow, state}  a workflow's state: pending, running, succeeded, ...
//   {type: 'schedule', schedule, state, task_id?, reason?}
//                      created, updated, paused, resumed, deleted, fired (task_id), skipped
//   {type: 'poll'}     no stream: refetch what you show
//   {type: 'resync'}   the stream (re)connected: refetch once, events follow

import { api } from './api.js';
import { TERMINAL } from './ui.js';

const POLL_MS = 2000;
const RETRY_STREAM_MS = 30000;
const SAMPLE_MS = 2000;
const KEEP_SAMPLES = 180; // six minutes at 2 s

const listeners = new Set();
const modeListeners = new Set();
const sampleListeners = new Set();

let mode = 'connecting'; // live | polling | reconnecting | connecting
let source = null;
let pollTimer = null;
let retryTimer = null;
let lastSeq = 0;
let eventsSeen = 0;

export function onEvent(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function onMode(fn) {
  modeListeners.add(fn);
  fn(mode);
  return () => modeListeners.delete(fn);
}

export function getMode() {
  return mode;
}

export function stats() {
  return { eventsSeen, lastSeq };
}

function emit(ev) {
  for (const fn of [...listeners]) {
    try {
      fn(ev);
    } catch (e) {
      console.error('live update failed', e);
    }
  }
}

function setMode(m) {
  if (m === mode) return;
  mode = m;
  for (const fn of [...modeListeners]) fn(m);
}

function startPolling() {
  if (pollTimer) return;
  pollTimer = setInterval(() => {
    if (!document.hidden) emit({ type: 'poll' });
  }, POLL_MS);
}

function stopPolling() {
  clearInterval(pollTimer);
  pollTimer = null;
}

function handleMessage(msg) {
  let data;
  try {
    data = JSON.parse(msg.data);
  } catch {
    return;
  }
  if (!data || typeof data !== 'object') return;
  const seq = Number(data.seq ?? msg.lastEventId);
  // The stream resumes with Last-Event-ID; never apply an event twice.
  if (Number.isFinite(seq) && seq > 0) {
    if (seq <= lastSeq) return;
    lastSeq = seq;
  }
  if (!data.type && msg.type && msg.type !== 'message') data.type = msg.type;
  eventsSeen++;
  emit(data);
  if (data.type === 'task' && TERMINAL.has(data.state)) sampleSoon();
  if (data.type === 'worker') sampleSoon();
}

function connect() {
  clearTimeout(retryTimer);
  retryTimer = null;
  if (!('EventSource' in window)) {
    setMode('polling');
    startPolling();
    return;
  }
  const es = new EventSource('/v1/events');
  source = es;
  es.onopen = () => {
    setMode('live');
    stopPolling();
    emit({ type: 'resync' });
  };
  es.onmessage = handleMessage;
  for (const name of ['task', 'worker', 'workflow', 'schedule']) es.addEventListener(name, handleMessage);
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) {
      // Not an event stream (404 while the endpoint does not exist) or refused: poll, and
      // try the stream again now and then.
      es.close();
      if (source === es) source = null;
      setMode('polling');
      startPolling();
      retryTimer = setTimeout(connect, RETRY_STREAM_MS);
    } else {
      // The browser reconnects by itself with Last-Event-ID; poll meanwhile.
      setMode('reconnecting');
      startPolling();
    }
  };
}

// ---- stats sampling for the charts --------------------------------------------------------

const STORE_KEY = 'drover.samples';
const samples = restoreSamples();
let sampling = false;

/** The charts' recent history survives a reload of the tab (not a new tab). */
function restoreSamples() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORE_KEY) || '[]');
    const since = Date.now() - KEEP_SAMPLES * SAMPLE_MS;
    return Array.isArray(saved) ? saved.filter((p) => p && p.t > since && p.counts) : [];
  } catch {
    return [];
  }
}

function saveSamples() {
  try {
    sessionStorage.setItem(STORE_KEY, JSON.stringify(samples));
  } catch {
    // storage full or disabled: the charts start afresh next time
  }
}
let sampleTimer = null;
let soonTimer = null;

export function getSamples() {
  return samples;
}

export function onSample(fn) {
  sampleListeners.add(fn);
  return () => sampleListeners.delete(fn);
}

function finishedCount(counts) {
  let n = 0;
  for (const [st, c] of Object.entries(counts)) if (TERMINAL.has(st)) n += c;
  return n;
}

async function sample() {
  if (sampling) return;
  sampling = true;
  try {
    const st = await api.stats();
    const now = Date.now();
    const counts = st.tasks_by_state || {};
    const finished = finishedCount(counts);
    const prev = samples[samples.length - 1];
    let throughput = 0;
    if (prev) {
      const dt = (now - prev.t) / 1000;
      throughput = dt > 0 ? Math.max(0, finished - prev.finished) / dt : 0;
    }
    const c = (k) => counts[k] || 0;
    samples.push({
      t: now,
      counts,
      finished,
      throughput,
      queued: c('queued'),
      pending: c('pending'),
      running: c('running') + c('assigned'),
      workers: st.workers || 0,
      first: !prev,
    });
    while (samples.length > KEEP_SAMPLES) samples.shift();
    saveSamples();
    for (const fn of [...sampleListeners]) fn(samples);
  } catch {
    // The server is away; the next tick tries again and the live badge says why.
  } finally {
    sampling = false;
  }
}

/** An extra sample soon after events (at most one a second), so charts move with the work. */
function sampleSoon() {
  if (soonTimer) return;
  const last = samples[samples.length - 1];
  const wait = last ? Math.max(0, last.t + 1000 - Date.now()) : 0;
  soonTimer = setTimeout(() => {
    soonTimer = null;
    sample();
  }, wait);
}

export function start() {
  connect();
  sample();
  sampleTimer = setInterval(() => {
    if (!document.hidden) sample();
  }, SAMPLE_MS);
}

export function stop() {
  if (source) source.close();
  stopPolling();
  clearInterval(sampleTimer);
  clearTimeout(retryTimer);
}
