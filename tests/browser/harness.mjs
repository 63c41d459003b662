// Starts the real drover binaries and Debian's Chromium for the browser tests, and stops
// exactly what it started.

import { spawn, execFile } from 'node:child_process';
import { mkdtemp, mkdir, rm, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = process.env.DROVER_BIN || join(ROOT, 'target/debug/drover');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const SHOTS = join(ROOT, 'artifacts/screenshots');

const children = new Set();

/**
 * The admin token of each server we started, by URL. Requests of the tests (fetch, the CLI,
 * workers) to one of them carry it; the browser logs in with `login()`.
 */
const tokens = new Map();
const plainFetch = globalThis.fetch;
globalThis.fetch = (input, init = {}) => {
  const url = String(input instanceof Request ? input.url : input);
  const token = [...tokens].find(([base]) => url.startsWith(base))?.[1];
  const headers = new Headers(init.headers || {});
  if (token && !headers.has('authorization') && !init.noAuth) headers.set('authorization', `Bearer ${token}`);
  return plainFetch(input, { ...init, headers });
};

/** The admin token of a server we started. */
export function adminToken(url) {
  return tokens.get(url);
}
const tempDirs = new Set();

// Whatever happens, no process of ours outlives the test run.
function killChildren() {
  for (const c of children) {
    try { c.kill('SIGKILL'); } catch { /* already gone */ }
  }
}
process.on('exit', killChildren);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    killChildren();
    process.exit(130);
  });
}

export async function tempDir(prefix) {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

export async function removeTempDirs() {
  for (const d of tempDirs) await rm(d, { recursive: true, force: true });
  tempDirs.clear();
}

/** Spawns a long-running process and remembers it; its output is kept for failure reports. */
function start(args, name, env = {}) {
  const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn', ...env } });
  child.output = '';
  child.name = name;
  const keep = (d) => {
    child.output += d.toString();
    if (child.output.length > 200_000) child.output = child.output.slice(-100_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

/** Stops one process we started: TERM, then KILL after a grace period. */
export async function stop(child, graceMs = 5000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

export async function startServer() {
  const dir = await tempDir('drover-browser-');
  const child = start([
    'server', '--listen', '127.0.0.1:0', '--store', `sqlite://${dir}/drover.db`, '--lease', '2s', '--heartbeat', '200ms',
  ], 'server');
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in 30 s:\n${child.output}`)), 30_000);
    const check = () => {
      const m = /listening on (http:\/\/[^\s]+)/.exec(child.output);
      if (m) { clearTimeout(timer); resolveUrl(m[1]); }
    };
    child.stdout.on('data', check);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited (${code}):\n${child.output}`)); });
  });
  tokens.set(url, (await readFile(join(dir, 'admin.token'), 'utf8')).trim());
  return { child, url, dir };
}

export async function startWorker(url, name, extra = []) {
  const child = start(['worker', '--server', url, '--name', name, ...extra], `worker ${name}`, { DROVER_TOKEN: tokens.get(url) });
  await waitFor(async () => {
    const res = await fetch(`${url}/v1/workers`);
    const body = await res.json();
    return body.workers.some((w) => w.name === name);
  }, 20_000, `worker ${name} to register:\n${child.output}`);
  return child;
}

/** Runs a drover CLI command to completion; resolves to its stdout. */
export function cli(args) {
  const at = args.indexOf('--server');
  const token = at >= 0 ? tokens.get(args[at + 1]) : undefined;
  const env = { ...process.env, DROVER_CREDENTIALS: '/nonexistent/drover-credentials.json', ...(token ? { DROVER_TOKEN: token } : {}) };
  return new Promise((resolveOut, reject) => {
    execFile(BIN, args, { timeout: 30_000, env }, (err, stdout, stderr) => {
      if (err) reject(new Error(`drover ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolveOut(stdout);
    });
  });
}

/** Signs the browser in with `token` through the login link, and waits for the shell. */
export async function login(page, url, token) {
  await page.goto(`${url}/login#token=${token}`);
  await page.waitForSelector('[data-testid=whoami]', { timeout: 20_000 });
}

/** Polls `fn` until it returns truthy (no fixed sleeps elsewhere). */
export async function waitFor(fn, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function launchBrowser() {
  const profile = await tempDir('drover-chromium-');
  await mkdir(SHOTS, { recursive: true });
  // A persistent context is how Playwright takes a --user-data-dir of our choosing.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1440, height: 900 },
    deviceScaleFactor: 1,
    locale: 'en-US',
    timezoneId: 'UTC',
  });
  if (process.env.DROVER_WEB_FROM_DISK) await serveWebFromDisk(context);
  return context;
}

/**
 * For working on web/ without rebuilding the binary: the page and its assets come from the
 * files on disk instead of the ones embedded in the binary (DROVER_WEB_FROM_DISK=1).
 */
async function serveWebFromDisk(context) {
  const types = { js: 'text/javascript', css: 'text/css', html: 'text/html', svg: 'image/svg+xml' };
  await context.route(/\/(assets\/.*|)(\?.*)?$/, async (route) => {
    const url = new URL(route.request().url());
    const rel = url.pathname === '/' ? 'index.html' : url.pathname.replace(/^\/assets\//, '');
    const file = resolve(ROOT, 'web', rel);
    if (!file.startsWith(resolve(ROOT, 'web'))) return route.fallback();
    try {
      const body = await readFile(file);
      await route.fulfill({ status: 200, contentType: types[rel.split('.').pop()] || 'application/octet-stream', body });
    } catch {
      await route.fallback();
    }
  });
}

/**
 * Console messages that are the network's, not our code's: a 404 of an endpoint the page
 * asks for on purpose (workflows, schedules, drain) and the event stream while it is absent.
 */
const EXPECTED_CONSOLE = [
  /Failed to load resource: the server responded with a status of (401|403|404|405|409|501)/,
  /EventSource's response has a MIME type/,
];

/** A page whose uncaught errors and console errors are collected for the test to check. */
export async function newPage(context, errors) {
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('console', (msg) => {
    if (msg.type() !== 'error' && msg.type() !== 'warning') return;
    const text = msg.text();
    if (EXPECTED_CONSOLE.some((re) => re.test(text))) return;
    if (msg.type() === 'warning' && !/missing message/.test(text)) return;
    errors.push(`console ${msg.type()}: ${text}`);
  });
  return page;
}

export async function shot(page, name) {
  const path = join(SHOTS, `${name}.png`);
  // Let the fonts and the last frame settle; the caller waited for its DOM condition.
  await page.evaluate(async () => {
    await document.fonts.ready;
    // Notes left over from earlier steps would cover the page.
    for (const el of document.querySelectorAll('.toast')) el.remove();
  });
  await page.screenshot({ path, fullPage: true });
  return path;
}
