// The REST API of this server. Errors carry the server's JSON {code, message, field}.

import { t } from './i18n.js';

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
  }

  get notFound() {
    return this.status === 404;
  }
}

async function request(method, path, body) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: body === undefined ? { accept: 'application/json' } : { 'content-type': 'application/json', accept: 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'network', t('err.network'));
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (res.status === 401) window.dispatchEvent(new CustomEvent('drover:unauthenticated'));
  if (!res.ok) {
    const message = (data && data.message) || `${res.status} ${res.statusText}`.trim();
    throw new ApiError(res.status, (data && data.code) || `http_${res.status}`, message, data && data.field);
  }
  return data;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

const enc = encodeURIComponent;

export const api = {
  /** One page, newest first: {tasks, next_cursor}. */
  tasks: ({ state, queue, limit, cursor } = {}) => request('GET', `/v1/tasks${query({ state, queue, limit, cursor })}`),
  task: (id) => request('GET', `/v1/tasks/${enc(id)}`),
  /** Output of one attempt; with offsets (a previous answer's `*_next`), only what follows. */
  logs: (id, attempt, from = {}) => request('GET', `/v1/tasks/${enc(id)}/logs${query({
    attempt, stdout_from: from.stdout, stderr_from: from.stderr,
  })}`),
  cancel: (id) => request('POST', `/v1/tasks/${enc(id)}/cancel`, {}),
  submit: (req) => request('POST', '/v1/tasks', req),
  workers: () => request('GET', '/v1/workers'),
  drain: (name) => request('POST', `/v1/workers/${enc(name)}/drain`, {}),
  /** Undoes a drain: the worker takes new tasks again. */
  resume: (name) => request('POST', `/v1/workers/${enc(name)}/resume`, {}),
  stats: () => request('GET', '/v1/stats'),
  workflows: () => request('GET', '/v1/workflows'),
  workflow: (id) => request('GET', `/v1/workflows/${enc(id)}`),
  rerunWorkflow: (id) => request('POST', `/v1/workflows/${enc(id)}/rerun`, { from_failed: true }),
  queues: () => request('GET', '/v1/queues'),
  schedules: () => request('GET', '/v1/schedules'),
  /** One page of the audit log, newest first: {records, next} (admins only; else 403). */
  audit: ({ since, token, before, limit } = {}) => request('GET', `/v1/audit${query({ since, token, before, limit })}`),
  /** The servers sharing the store: {members, epoch, leader, lease_age_ms, lease_ms, this} (404 on an older server). */
  cluster: () => request('GET', '/v1/cluster'),
  async metrics() {
    const res = await fetch('/metrics', { cache: 'no-store' });
    if (!res.ok) throw new ApiError(res.status, `http_${res.status}`, res.statusText);
    return res.text();
  },
};

/** The submit request that runs a task again: same namespace, queue, kind, priority, spec, timeout, retries. */
export function resubmitRequest(task) {
  const req = {
    namespace: task.namespace,
    queue: task.queue,
    kind: task.kind,
    priority: task.priority,
    retries: Math.max(0, (task.max_attempts || 1) - 1),
  };
  const spec = task.spec || {};
  if (spec.type === 'exec') {
    req.argv = spec.argv || [];
    if (spec.env && Object.keys(spec.env).length) req.env = spec.env;
    if (spec.cwd) req.cwd = spec.cwd;
  }
  if (task.timeout_ms) req.timeout = `${task.timeout_ms}ms`;
  if (task.label_selector && Object.keys(task.label_selector).length) req.label_selector = task.label_selector;
  return req;
}
