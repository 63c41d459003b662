// Drover (REST from Node, keep-alive) beside BullMQ, on the same three workloads.
//   node bench/peers/node.mjs --system drover|bullmq [--redis URL] [--tasks 20000] ...
// One run of one system: (a) sequential durable submits, (b) a batch-submitted backlog drained
// by 2 worker processes, (c) paced submits at each rate, enqueue -> start. Prints one JSON line.
// Every process it starts is ended by pid when it exits (normally, on error or on a signal).
// Run through `bash bench/peers/run.sh`, which starts Redis, builds drover and installs BullMQ.

import http from "node:http";
import { spawn, fork } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";

const { values: opt } = parseArgs({
  options: {
    system: { type: "string", default: "drover" },
    role: { type: "string", default: "bench" },
    redis: { type: "string", default: "" },
    tasks: { type: "string", default: "20000" },
    batch: { type: "string", default: "1000" },
    "seq-tasks": { type: "string", default: "1000" },
    "seq-seconds": { type: "string", default: "10" },
    rates: { type: "string", default: "100,500" },
    "paced-seconds": { type: "string", default: "3" },
    workers: { type: "string", default: "2" },
    concurrency: { type: "string", default: "64" },
    timeout: { type: "string", default: "120" },
    queue: { type: "string", default: "bench" },
  },
});
const N = +opt.tasks;
const BATCH = +opt.batch;
const WORKERS = +opt.workers;
const CONC = +opt.concurrency;
const TIMEOUT_MS = +opt.timeout * 1000;
const TOKEN = "drover_" + "be".repeat(32);
const BIN = process.env.DROVER_BIN;

/** Wall clock in ms with sub-ms resolution, comparable across processes on this machine. */
const now = () => performance.timeOrigin + performance.now();

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))] : null;
}
const round = (x, d = 2) => (x == null ? null : Math.round(x * 10 ** d) / 10 ** d);

async function waitFor(what, f, pauseMs = 10, withinMs = TIMEOUT_MS) {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(pauseMs);
  }
}

// ---- processes started here, ended by pid ----
const children = new Set();
function track(child) {
  children.add(child);
  child.on("exit", () => children.delete(child));
  return child;
}
function endChildren() {
  for (const c of children) {
    try {
      process.kill(c.pid, "SIGKILL");
    } catch {}
  }
}
process.on("exit", endChildren);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => {
    endChildren();
    process.exit(130);
  });
}
// A hard bound on the whole run.
setTimeout(() => {
  console.error(`node.mjs: run exceeded ${(TIMEOUT_MS * 4) / 1000}s, giving up`);
  process.exit(3);
}, TIMEOUT_MS * 4).unref();

// ---- timed workloads, the same code for both systems ----

/** (a) One client, one task per request, each awaited. */
async function sequential(submitOne) {
  const lat = [];
  const deadline = now() + +opt["seq-seconds"] * 1000;
  const t0 = now();
  for (let i = 0; i < +opt["seq-tasks"] && now() < deadline; i++) {
    const t = now();
    await submitOne(i);
    lat.push(now() - t);
  }
  const secs = (now() - t0) / 1000;
  return {
    tasks: lat.length,
    tasks_per_sec: round(lat.length / secs, 1),
    p50_ms: round(pct(lat, 50), 3),
    p99_ms: round(pct(lat, 99), 3),
  };
}

/** (c) Open loop at `rate`/s for the paced seconds: each submit leaves at its time, not after
 *  the previous one's answer. Returns [{t0, handle}] with t0 taken just before the request. */
async function paced(rate, submitOne) {
  const n = Math.round(rate * +opt["paced-seconds"]);
  const sent = [];
  const inflight = [];
  const start = now() + 20;
  for (let i = 0; i < n; i++) {
    const target = start + (i * 1000) / rate;
    let wait = target - now();
    if (wait > 2) await sleep(wait - 1);
    while (now() < target) await new Promise((r) => setImmediate(r));
    const t0 = now();
    const p = submitOne(i, t0).then((h) => sent.push({ t0, h }));
    inflight.push(p);
  }
  await Promise.all(inflight);
  const achieved = n / ((now() - start) / 1000);
  return { sent, achieved };
}

function latencySummary(lat) {
  return {
    n: lat.length,
    p50_ms: round(pct(lat, 50), 3),
    p99_ms: round(pct(lat, 99), 3),
    max_ms: round(Math.max(...lat), 3),
  };
}

// ---- Drover over REST, keep-alive ----

async function drover() {
  const dir = mkdtempSync(join(tmpdir(), "drover-peers-"));
  writeFileSync(join(dir, "admin.token"), TOKEN + "\n", { mode: 0o600 });
  const server = track(
    spawn(
      BIN,
      ["server", "--listen", "127.0.0.1:0", "--store", `sqlite://${dir}/drover.db`,
       "--data-dir", dir, "--rate-limit", "0"],
      { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, RUST_LOG: "warn" } },
    ),
  );
  const url = await new Promise((resolve, reject) => {
    let buf = "";
    server.stdout.on("data", (d) => {
      buf += d;
      const m = buf.match(/listening on (http:\/\/\S+)/);
      if (m) resolve(m[1]);
    });
    server.on("exit", (c) => reject(new Error(`drover server exited ${c}`)));
  });
  const { hostname, port } = new URL(url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

  function request(method, path, body) {
    const data = body === undefined ? null : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          agent, hostname, port, method, path,
          headers: {
            authorization: `Bearer ${TOKEN}`,
            accept: "application/json",
            ...(data ? { "content-type": "application/json", "content-length": Buffer.byteLength(data) } : {}),
          },
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (c) => (text += c));
          res.on("end", () => {
            if (res.statusCode >= 300) reject(new Error(`${method} ${path}: ${res.statusCode} ${text}`));
            else resolve(text ? JSON.parse(text) : null);
          });
        },
      );
      req.on("error", reject);
      if (data) req.write(data);
      req.end();
    });
  }
  const submitOne = async () => (await request("POST", "/v1/tasks", { kind: "noop" })).id;
  const iso = (s) => Date.parse(s) + (+(s.match(/\.(\d+)Z$/)?.[1] ?? "0").padEnd(6, "0").slice(3, 6)) / 1000;

  try {
    const out = { system: "drover", client: "node http keep-alive" };
    out.sequential = await sequential(submitOne);

    // (b) the workers first, then the backlog in batches; end: the last finished_at.
    const workers = [];
    for (let i = 0; i < WORKERS; i++) {
      workers.push(
        track(
          spawn(BIN, ["worker", "--server", url, "--name", `peers-${i}`, "--slots", String(CONC),
                      "--prefetch", String(CONC), "--kinds", "noop"],
                { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, DROVER_TOKEN: TOKEN, RUST_LOG: "warn" } }),
        ),
      );
    }
    await waitFor("the workers", async () => (await request("GET", "/v1/workers")).workers.length >= WORKERS);
    // The sequential run's tasks drain first, so (b) starts on an empty queue.
    const base = out.sequential.tasks;
    const succeeded = async () => (await request("GET", "/v1/stats")).tasks_by_state?.succeeded ?? 0;
    await waitFor("the sequential tasks", async () => (await succeeded()) >= base);

    const t0 = now();
    const ids = [];
    for (let i = 0; i < N; i += BATCH) {
      const tasks = Array.from({ length: Math.min(BATCH, N - i) }, () => ({ kind: "noop" }));
      ids.push(...(await request("POST", "/v1/tasks:batch", { tasks })).ids);
    }
    const submitted = now();
    await waitFor("the drain", async () => (await succeeded()) >= base + N, 20);
    let last = 0;
    const want = new Set(ids);
    let cursor = null;
    do {
      const q = `/v1/tasks?state=succeeded&limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
      const page = await request("GET", q);
      for (const t of page.tasks) if (want.has(t.id)) last = Math.max(last, iso(t.finished_at));
      cursor = page.next_cursor;
    } while (cursor);
    out.batch = {
      tasks: N,
      submit_tasks_per_sec: round(N / ((submitted - t0) / 1000), 1),
      end_to_end_tasks_per_sec: round(N / ((last - t0) / 1000), 1),
    };

    // (c) paced: enqueue (client clock before the request) -> the attempt's started_at.
    out.paced = {};
    for (const rate of opt.rates.split(",").map(Number)) {
      const { sent, achieved } = await paced(rate, submitOne);
      const lat = [];
      for (const { t0: s, h: id } of sent) {
        const t = await waitFor(`task ${id}`, async () => {
          const v = await request("GET", `/v1/tasks/${id}`);
          return v.started_at ? v : null;
        });
        lat.push(iso(t.started_at) - s);
      }
      out.paced[rate] = { ...latencySummary(lat), achieved_per_sec: round(achieved, 1) };
    }
    return out;
  } finally {
    agent.destroy();
    for (const c of children) if (c !== server) process.kill(c.pid, "SIGKILL"); // workers first
    process.kill(server.pid, "SIGKILL");
    await new Promise((r) => (server.exitCode !== null ? r() : server.once("exit", r)));
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- BullMQ ----

function redisConnection() {
  const u = new URL(opt.redis);
  return { host: u.hostname, port: +u.port, db: +(u.pathname.slice(1) || 0), maxRetriesPerRequest: null };
}

/** A BullMQ worker process: reports (n, first start, last end) every 20 ms and, for jobs that
 *  carry a client time `t0`, the handler's start time, to the parent over IPC. */
async function bullmqWorker() {
  const { Worker } = await import("bullmq");
  const st = { n: 0, first: null, last: null, starts: [] };
  const w = new Worker(
    opt.queue,
    async (job) => {
      const start = now();
      if (st.first === null) st.first = start;
      if (job.data.t0 !== undefined) st.starts.push([job.data.t0, start]);
      st.n++;
      st.last = now();
      return null;
    },
    { connection: redisConnection(), concurrency: CONC },
  );
  await w.waitUntilReady();
  process.send({ ready: true });
  setInterval(() => {
    process.send({ n: st.n, first: st.first, last: st.last, starts: st.starts.splice(0) });
  }, 20);
  process.on("message", async (m) => {
    if (m === "stop") {
      await w.close();
      process.exit(0);
    }
  });
  process.on("disconnect", () => process.exit(0));
}

async function bullmq() {
  const { Queue } = await import("bullmq");
  const queue = new Queue(opt.queue, { connection: redisConnection() });
  await queue.waitUntilReady();
  await queue.obliterate({ force: true });
  const jobOpts = { removeOnComplete: true, removeOnFail: true };
  const submitOne = async (i, t0) => (await queue.add("noop", t0 === undefined ? {} : { t0 }, jobOpts)).id;
  try {
    const out = { system: "bullmq", client: "bullmq Queue (ioredis)" };
    out.sequential = await sequential((i) => submitOne(i));
    await queue.obliterate({ force: true }); // (a) ran with no worker: start (b) on an empty queue

    const stats = [];
    const starts = [];
    const procs = [];
    for (let i = 0; i < WORKERS; i++) {
      const st = { n: 0, first: null, last: null };
      stats.push(st);
      const p = track(fork(new URL(import.meta.url).pathname, [...process.argv.slice(2), "--role", "worker"], { stdio: ["ignore", "ignore", "inherit", "ipc"] }));
      p.on("message", (m) => {
        if (m.ready) st.ready = true;
        else {
          st.n = m.n; st.first = m.first; st.last = m.last;
          starts.push(...m.starts);
        }
      });
      procs.push(p);
    }
    await waitFor("the BullMQ workers", () => stats.every((s) => s.ready));
    const t0 = now();
    for (let i = 0; i < N; i += BATCH) {
      const jobs = Array.from({ length: Math.min(BATCH, N - i) }, () => ({ name: "noop", data: {}, opts: jobOpts }));
      await queue.addBulk(jobs);
    }
    const submitted = now();
    const total = () => stats.reduce((a, s) => a + s.n, 0);
    await waitFor("the drain", () => total() >= N, 20);
    await sleep(50);
    const last = Math.max(...stats.map((s) => s.last ?? 0));
    out.batch = {
      tasks: N,
      submit_tasks_per_sec: round(N / ((submitted - t0) / 1000), 1),
      end_to_end_tasks_per_sec: round(N / ((last - t0) / 1000), 1),
    };

    out.paced = {};
    for (const rate of opt.rates.split(",").map(Number)) {
      starts.length = 0;
      const { sent, achieved } = await paced(rate, submitOne);
      await waitFor("the paced jobs", () => starts.length >= sent.length);
      const lat = starts.map(([a, b]) => b - a);
      out.paced[rate] = { ...latencySummary(lat), achieved_per_sec: round(achieved, 1) };
    }
    for (const p of procs) p.send("stop");
    await Promise.all(procs.map((p) => new Promise((r) => (p.exitCode !== null ? r() : p.once("exit", r)))));
    return out;
  } finally {
    await queue.obliterate({ force: true }).catch(() => {});
    await queue.close();
  }
}

if (opt.role === "worker") {
  await bullmqWorker();
} else {
  const out = opt.system === "drover" ? await drover() : await bullmq();
  console.log(JSON.stringify(out));
  process.exit(0);
}
