// Plait benchmark load generator: real Yjs writers, cheap receivers, one Node process.
//
// Usage: node loadgen.mjs '<json config>'   (or the config on stdin)
// Prints progress on stderr and one JSON result object as the last line of stdout.
//
// Writers own a Y.Doc each: they create one schema-valid task (tasks/<uuid> Y.Map with a Y.Text description)
// and then type markers "~B<writer>.<seq>.<µs>;" into that description, sending the encoded Yjs update.
// They never apply remote updates. Receivers (every client, writers included) never decode Yjs: they look
// for the marker in the raw bytes of each sync-update frame and record now - µs. So the generator's cost
// per delivery is one indexOf plus a few digit reads, and it stays far from being the bottleneck (its CPU
// is reported with every result).
//
// Two wire dialects: "yws" (plain y-websocket: [type][...]) for Plait and vanilla pycrdt-websocket, and
// "hocuspocus" (every message prefixed with varString(documentName), an Auth message first).

import { randomUUID } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { performance } from "node:perf_hooks";
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import WebSocket from "ws";
import * as Y from "yjs";

const MSG_SYNC = 0;
const MSG_AUTH = 2;
const SYNC_STEP1 = 0;
const SYNC_STEP2 = 1;
const SYNC_UPDATE = 2;
const HP_SYNC_REPLY = 4;
const MARK = Buffer.from("~B");
const EMPTY_STATE_VECTOR = new Uint8Array([0]);
const EMPTY_UPDATE = new Uint8Array([0, 0]);

const log = (...args) => console.error(`[loadgen ${(performance.now() / 1000).toFixed(1)}s]`, ...args);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowUs = () => Math.round(performance.now() * 1000);

// ---------------------------------------------------------------------------------------------------------
// Server process sampling through /proc (Linux): exact window alignment without a round trip to the runner.

const CLK_TCK = 100;
let clkTck = CLK_TCK;

function procCpuTicks(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]); // utime + stime
  } catch {
    return null;
  }
}

function procRssKb(pid) {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** CPU ticks of every process whose command line contains `needle` (PostgreSQL backends of the bench DB). */
function auxCpuTicks(needle) {
  const out = new Map();
  if (!needle) return out;
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, "utf8").includes(needle)) {
        const t = procCpuTicks(name);
        if (t !== null) out.set(name, t);
      }
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Busy and total ticks of the whole machine, to tell how much CPU other processes took meanwhile. */
function machineTicks() {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n", 1)[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3] + (f[4] ?? 0);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return null;
  }
}

class Probe {
  constructor(cfg) {
    this.pid = cfg.serverPid ?? null;
    // s7 runs two server nodes: their CPU and RSS are summed.
    this.pids = cfg.serverPids ?? (this.pid ? [this.pid] : []);
    this.aux = cfg.auxMatch ?? null;
    this.peakRssKb = 0;
    this.timer = this.pid ? setInterval(() => this.sampleRss(), 250) : null;
    if (this.timer) this.timer.unref();
  }
  cpuTicks() {
    let sum = 0;
    for (const pid of this.pids) {
      const t = procCpuTicks(pid);
      if (t === null) return null;
      sum += t;
    }
    return sum;
  }
  sampleRss() {
    let rss = 0;
    for (const pid of this.pids) rss += procRssKb(pid) ?? 0;
    if (rss !== null && rss > this.peakRssKb) this.peakRssKb = rss;
    return rss;
  }
  mark() {
    return {
      t: performance.now(),
      cpu: this.pid ? this.cpuTicks() : null,
      aux: auxCpuTicks(this.aux),
      gen: process.cpuUsage(),
      machine: machineTicks(),
      rss: this.pid ? this.sampleRss() : null,
    };
  }
  /** Server CPU %, DB CPU %, generator CPU % and RSS between two marks. */
  between(a, b) {
    const secs = (b.t - a.t) / 1000;
    const serverCpuS = a.cpu !== null && b.cpu !== null ? (b.cpu - a.cpu) / clkTck : null;
    let auxTicks = 0;
    for (const [pid, t] of b.aux) auxTicks += t - (a.aux.get(pid) ?? t);
    const genUs = b.gen.user - a.gen.user + (b.gen.system - a.gen.system);
    // CPU used by everything else on the machine (other tenants, the OS), in % of one core.
    let otherPct = null;
    if (a.machine && b.machine && serverCpuS !== null) {
      const busyS = (b.machine.busy - a.machine.busy) / clkTck;
      otherPct = Math.max(0, (100 * (busyS - serverCpuS - auxTicks / clkTck - genUs / 1e6)) / secs);
    }
    return {
      other_cpu_pct: otherPct,
      seconds: secs,
      server_cpu_s: serverCpuS,
      server_cpu_pct: serverCpuS === null ? null : (100 * serverCpuS) / secs,
      db_cpu_pct: this.aux ? (100 * auxTicks) / clkTck / secs : null,
      generator_cpu_pct: genUs / 1e4 / secs,
      server_rss_mb: this.pid ? (this.sampleRss() ?? 0) / 1024 : null,
      server_rss_start_mb: a.rss === null ? null : a.rss / 1024,
    };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Latency bookkeeping.

class Window {
  constructor() {
    this.active = false;
    this.startUs = 0;
    this.endUs = Number.POSITIVE_INFINITY;
    this.expected = 0; // deliveries owed for updates sent inside the window
    this.latencies = []; // ms, one per delivery of an in-window update
    this.receivedAny = 0; // every marker delivered while the window was open (throughput)
    this.outOfOrder = 0;
    this.sentUpdates = 0;
    this.framesAny = 0; // update frames received while the window was open (Hocuspocus merges many per frame)
    this.byNode = {}; // s7: node tag -> {latencies, expected}, receivers split by the node they are connected to
  }
  node(tag) {
    this.byNode[tag] ??= { latencies: [], expected: 0 };
    return this.byNode[tag];
  }
}

let win = new Window();

function percentile(sorted, total, p) {
  // `total` counts undelivered updates as infinitely late, so a server that drops or lags cannot look fast.
  if (total === 0) return null;
  const rank = Math.ceil((p / 100) * total) - 1;
  return rank < sorted.length ? sorted[rank] : null;
}

function latencyStats(latencies, expected) {
  const lat = Float64Array.from(latencies).sort();
  const total = Math.max(expected, lat.length);
  return {
    expected_deliveries: expected,
    delivered: lat.length,
    delivered_fraction: expected ? lat.length / expected : null,
    p50_ms: percentile(lat, total, 50),
    p95_ms: percentile(lat, total, 95),
    p99_ms: percentile(lat, total, 99),
  };
}

function summarize(w, statsFromProbe) {
  const lat = Float64Array.from(w.latencies).sort();
  const total = Math.max(w.expected, lat.length);
  const delivered = lat.length;
  const secs = (w.endUs - w.startUs) / 1e6;
  const byNode = {};
  for (const [tag, n] of Object.entries(w.byNode)) byNode[tag] = latencyStats(n.latencies, n.expected);
  return {
    ...(Object.keys(byNode).length ? { by_node: byNode } : {}),
    offered_updates_per_s: w.sentUpdates / secs,
    expected_deliveries: w.expected,
    delivered: delivered,
    lost_or_late: Math.max(0, w.expected - delivered),
    delivered_fraction: w.expected ? delivered / w.expected : null,
    deliveries_per_s: w.receivedAny / secs,
    p50_ms: percentile(lat, total, 50),
    p95_ms: percentile(lat, total, 95),
    p99_ms: percentile(lat, total, 99),
    max_ms: delivered === total && delivered ? lat[lat.length - 1] : null,
    out_of_order: w.outOfOrder,
    ...statsFromProbe,
    deliveries_per_server_cpu_s:
      statsFromProbe.server_cpu_s > 0 ? w.receivedAny / statsFromProbe.server_cpu_s : null,
    frames_per_s: w.framesAny / secs,
    frames_per_server_cpu_s: statsFromProbe.server_cpu_s > 0 ? w.framesAny / statsFromProbe.server_cpu_s : null,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Wire.

function varStringBytes(s) {
  const e = encoding.createEncoder();
  encoding.writeVarString(e, s);
  return encoding.toUint8Array(e);
}

function syncMessage(prefix, subtype, payload) {
  const e = encoding.createEncoder();
  if (prefix) encoding.writeUint8Array(e, prefix);
  encoding.writeVarUint(e, MSG_SYNC);
  encoding.writeVarUint(e, subtype);
  encoding.writeVarUint8Array(e, payload);
  return encoding.toUint8Array(e);
}

const stats = { unexpectedCloses: 0, closeCodes: {}, errors: 0 };

class Client {
  /**
   * room: {url, doc?, token?}; `doc` selects the Hocuspocus dialect.
   * id: global client index (writers use it in their markers).
   */
  constructor(room, id) {
    this.room = room;
    this.id = id;
    this.prefix = room.doc ? varStringBytes(room.doc) : null;
    this.lastSeq = new Map();
    this.synced = false;
    this.closing = false;
    this.step2Bytes = 0;
    this.peers = null; // the Client[] of the room; set by the scenario for delivery accounting
    this.node = room.node ?? null; // s7: which server node this client is connected to
  }

  connect() {
    this.tStart = performance.now();
    this.syncedPromise = new Promise((resolve, reject) => {
      this.resolveSynced = resolve;
      this.rejectSynced = reject;
    });
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.room.url, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 });
      this.ws = ws;
      ws.binaryType = "nodebuffer";
      ws.on("open", () => {
        this.tOpen = performance.now();
        if (this.prefix) {
          const e = encoding.createEncoder();
          encoding.writeUint8Array(e, this.prefix);
          encoding.writeVarUint(e, MSG_AUTH);
          encoding.writeVarUint(e, 0); // AuthMessageType.Token
          encoding.writeVarString(e, this.room.token ?? "bench");
          ws.send(encoding.toUint8Array(e));
        }
        ws.send(syncMessage(this.prefix, SYNC_STEP1, EMPTY_STATE_VECTOR));
        resolve();
      });
      ws.on("message", (data) => this.onMessage(data));
      ws.on("error", (err) => {
        stats.errors++;
        if (!this.tOpen) reject(err);
        this.rejectSynced(err);
      });
      ws.on("close", (code) => {
        if (!this.closing) {
          stats.unexpectedCloses++;
          stats.closeCodes[code] = (stats.closeCodes[code] ?? 0) + 1;
          this.rejectSynced(new Error(`closed ${code} before sync`));
        }
        this.closed = true;
      });
    });
  }

  send(bytes) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  close() {
    this.closing = true;
    try {
      this.ws.terminate();
    } catch {
      /* already closed */
    }
  }

  /** A clean close handshake, as a browser tab does (vanilla pycrdt-websocket breaks on abrupt ones). */
  closeGracefully(timeoutMs = 2000) {
    this.closing = true;
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.close();
        resolve();
      }, timeoutMs);
      this.ws.once("close", () => {
        clearTimeout(t);
        resolve();
      });
      this.ws.close(1000);
    });
  }

  onMessage(buf) {
    let pos = 0;
    if (this.prefix) {
      // varString(documentName): skip the length and the name.
      let len = 0;
      let shift = 0;
      let b;
      do {
        b = buf[pos++];
        len |= (b & 0x7f) << shift;
        shift += 7;
      } while (b & 0x80);
      pos += len;
    }
    const type = buf[pos];
    if (type !== MSG_SYNC && type !== HP_SYNC_REPLY) return; // awareness, auth, sync status, ...
    const sub = buf[pos + 1];
    if (sub === SYNC_UPDATE) {
      if (win.active) {
        win.framesAny++;
        this.scan(buf, pos + 2);
      }
    } else if (sub === SYNC_STEP1) {
      this.send(syncMessage(this.prefix, SYNC_STEP2, EMPTY_UPDATE));
    } else if (sub === SYNC_STEP2 && !this.synced) {
      this.synced = true;
      this.tSynced = performance.now();
      this.step2Bytes = buf.length;
      this.resolveSynced();
    } else if (sub === SYNC_STEP2 && this.onStep2) {
      this.onStep2(buf.length);
    }
  }

  scan(buf, from) {
    const now = nowUs();
    let i = buf.indexOf(MARK, from);
    while (i !== -1) {
      let j = i + 2;
      let w = 0;
      let seq = 0;
      let ts = 0;
      let c;
      while ((c = buf[j]) >= 48 && c <= 57) w = w * 10 + (c - 48), j++;
      if (c !== 46) {
        i = buf.indexOf(MARK, i + 2);
        continue;
      }
      j++;
      while ((c = buf[j]) >= 48 && c <= 57) seq = seq * 10 + (c - 48), j++;
      if (c !== 46) {
        i = buf.indexOf(MARK, i + 2);
        continue;
      }
      j++;
      while ((c = buf[j]) >= 48 && c <= 57) ts = ts * 10 + (c - 48), j++;
      if (c === 59 && w !== this.id) {
        const last = this.lastSeq.get(w) ?? -1;
        if (seq > last) {
          this.lastSeq.set(w, seq);
          win.receivedAny++;
          if (ts >= win.startUs && ts < win.endUs) {
            win.latencies.push((now - ts) / 1000);
            if (this.node !== null) win.node(this.node).latencies.push((now - ts) / 1000);
          }
        } else {
          win.outOfOrder++;
        }
      }
      i = buf.indexOf(MARK, j);
    }
  }
}

class Writer extends Client {
  constructor(room, id, userId) {
    super(room, id);
    this.seq = 0;
    this.doc = new Y.Doc();
    this.captured = null;
    this.doc.on("update", (u) => {
      this.captured = u;
    });
    const taskId = randomUUID();
    const now = new Date().toISOString();
    const task = new Y.Map();
    task.set("id", taskId);
    task.set("title", `bench writer ${id}`);
    task.set("description", new Y.Text());
    task.set("status", "todo");
    task.set("assignee_id", null);
    task.set("due_date", null);
    task.set("created_by", userId ?? "bench");
    task.set("created_at", now);
    task.set("updated_at", now);
    task.set("completed_at", null);
    this.doc.getMap("tasks").set(taskId, task);
    this.createUpdate = this.captured;
    this.text = this.doc.getMap("tasks").get(taskId).get("description");
  }

  /** After sync: the task itself, so every later marker edit lands in a known, schema-valid task. */
  sendCreate() {
    this.send(syncMessage(this.prefix, SYNC_UPDATE, this.createUpdate));
  }

  write() {
    const ts = nowUs();
    const seq = this.seq++;
    this.text.insert(this.text.length, `~B${this.id}.${seq}.${ts};`);
    this.send(syncMessage(this.prefix, SYNC_UPDATE, this.captured));
    if (win.active && ts >= win.startUs && ts < win.endUs) {
      win.sentUpdates++;
      let receivers = 0;
      for (const p of this.peers) {
        if (p === this || p.closed) continue;
        receivers++;
        if (p.node !== null) win.node(p.node).expected++;
      }
      win.expected += receivers;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Helpers.

async function connectAll(clients, batch) {
  // The first client of each room syncs before the others join: a never-used room opened by many at once
  // is scenario s0's subject, not the steady-state scenarios' (vanilla pycrdt-websocket hangs on it).
  const seen = new Set();
  const firsts = [];
  const others = [];
  for (const c of clients) {
    (seen.has(c.room.url + (c.room.doc ?? "")) ? others : firsts).push(c);
    seen.add(c.room.url + (c.room.doc ?? ""));
  }
  if (firsts.length && others.length) {
    await connectBatches(firsts, batch);
    await connectBatches(others, batch);
  } else {
    await connectBatches(clients, batch);
  }
}

async function connectBatches(clients, batch) {
  for (let i = 0; i < clients.length; i += batch) {
    const part = clients.slice(i, i + batch);
    await Promise.all(part.map((c) => c.connect()));
    await Promise.all(part.map((c) => withTimeout(c.syncedPromise, 30000, "sync")));
  }
}

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise.finally(() => clearTimeout(t)),
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`timeout waiting for ${what}`)), ms);
    }),
  ]);
}

/** Open-loop rate control: each writer has its own schedule; a late tick sends what is due (no omission). */
function startWriting(writers, ratePerWriter) {
  const intervalMs = 1000 / ratePerWriter;
  const t0 = performance.now();
  const due = writers.map((_, i) => t0 + (intervalMs * i) / writers.length);
  let stopped = false;
  const tick = () => {
    if (stopped) return;
    const now = performance.now();
    for (let i = 0; i < writers.length; i++) {
      while (due[i] <= now) {
        writers[i].write();
        due[i] += intervalMs;
      }
    }
    setTimeout(tick, 1);
  };
  tick();
  return () => {
    stopped = true;
  };
}

async function measure(probe, warmupS, durationS, drainS, body) {
  win = new Window();
  const stop = body ? body() : () => {};
  await sleep(warmupS * 1000);
  const a = probe.mark();
  win.startUs = nowUs();
  win.active = true;
  await sleep(durationS * 1000);
  win.endUs = nowUs();
  const b = probe.mark();
  stop();
  const res = probe.between(a, b);
  // Late deliveries of in-window updates still count during the drain (but not towards throughput).
  const receivedAtEnd = win.receivedAny;
  const framesAtEnd = win.framesAny;
  const deadline = performance.now() + drainS * 1000;
  while (performance.now() < deadline && win.latencies.length < win.expected) await sleep(50);
  win.receivedAny = receivedAtEnd;
  win.framesAny = framesAtEnd;
  win.active = false;
  return summarize(win, res);
}

function buildRooms(cfg, userId) {
  // cfg.rooms: [{url, doc?, token?}], cfg.clientsPerRoom, cfg.writersPerRoom
  const clients = [];
  const writers = [];
  let id = 0;
  for (const room of cfg.rooms) {
    const peers = [];
    // s7: one workspace reached through several nodes ({nodes: [{url, node}, ...]}). Writers all connect to
    // the first node; the other clients are dealt over the nodes so that each node gets an equal share.
    const nodes = room.nodes ?? [room];
    const perNode = Math.ceil(cfg.clientsPerRoom / nodes.length);
    for (let k = 0; k < cfg.clientsPerRoom; k++) {
      const at = nodes[Math.min(nodes.length - 1, Math.floor(k / perNode))];
      const c = k < cfg.writersPerRoom ? new Writer(at, id++, userId) : new Client(at, id++);
      c.peers = peers;
      peers.push(c);
      clients.push(c);
      if (c instanceof Writer) writers.push(c);
    }
  }
  return { clients, writers };
}

// ---------------------------------------------------------------------------------------------------------
// Scenarios.

async function fanout(cfg, probe) {
  const { clients, writers } = buildRooms(cfg, cfg.userId);
  await connectAll(clients, cfg.connectBatch ?? 100);
  for (const w of writers) w.sendCreate();
  log(`${clients.length} clients synced in ${cfg.rooms.length} room(s), ${writers.length} writers`);
  await sleep(300);
  const steps = cfg.rates ?? [cfg.rate];
  const results = [];
  for (const rate of steps) {
    const perWriter = rate / writers.length;
    const r = await measure(probe, cfg.warmupS ?? 2, cfg.durationS ?? 10, cfg.drainS ?? 3, () =>
      startWriting(writers, perWriter),
    );
    r.rate = rate;
    r.offered_deliveries_per_s = rate * (cfg.clientsPerRoom - 1);
    results.push(r);
    log(
      `rate ${rate}/s: p95 ${fmt(r.p95_ms)} ms, ${Math.round(r.deliveries_per_s)} deliveries/s, ` +
        `server ${fmt(r.server_cpu_pct)} % CPU, gen ${fmt(r.generator_cpu_pct)} %, lost ${r.lost_or_late}`,
    );
    if (cfg.stopOnCollapse && (r.delivered_fraction ?? 0) < 0.95) break;
    if (cfg.stopOnCollapse && r.p95_ms !== null && r.p95_ms > (cfg.collapseP95Ms ?? 1000)) break;
    if (steps.length > 1) await sleep(500);
  }
  const unexpected = stats.unexpectedCloses;
  // The soak: what the document has grown to, as a fresh client downloads it (the server has to hold at
  // least that much more at the end than at the start, whatever its own overhead).
  const docBytes = cfg.finalJoin ? (await joinOnce(cfg.rooms[0], clients.length)).step2_bytes : null;
  for (const c of clients) c.close();
  return { steps: results, clients: clients.length, unexpected_closes: unexpected, doc_bytes_end: docBytes };
}

function fmt(x) {
  return x === null || x === undefined ? "n/a" : x.toFixed(1);
}

function seedDoc(cfg) {
  // 10,000 schema-valid tasks whose descriptions add up to ~1 MiB of text (the s4 workspace).
  const doc = new Y.Doc();
  const tasks = doc.getMap("tasks");
  const n = cfg.tasks ?? 10000;
  const textBytes = cfg.textBytes ?? 1024 * 1024;
  const per = Math.ceil(textBytes / n);
  const filler = "lorem ipsum dolor sit amet consectetur adipiscing elit ".repeat(Math.ceil(per / 56) + 1);
  const statuses = ["todo", "in_progress", "done"];
  const now = new Date().toISOString();
  doc.transact(() => {
    for (let i = 0; i < n; i++) {
      const id = randomUUID();
      const t = new Y.Map();
      const status = statuses[i % 3];
      t.set("id", id);
      t.set("title", `Task ${i}: ${filler.slice(0, 24)}`);
      t.set("description", new Y.Text(filler.slice(i % 7, (i % 7) + per)));
      t.set("status", status);
      t.set("assignee_id", null);
      t.set("due_date", i % 5 === 0 ? "2030-01-15" : null);
      t.set("created_by", cfg.userId ?? "bench");
      t.set("created_at", now);
      t.set("updated_at", now);
      t.set("completed_at", status === "done" ? now : null);
      tasks.set(id, t);
    }
  });
  return Y.encodeStateAsUpdate(doc);
}

async function joinOnce(room, id) {
  const c = new Client(room, id);
  await c.connect();
  try {
    await withTimeout(c.syncedPromise, 60000, "join step 2");
  } finally {
    await c.closeGracefully();
  }
  return { ms: c.tSynced - c.tStart, open_to_step2_ms: c.tSynced - c.tOpen, step2_bytes: c.step2Bytes };
}

async function join(cfg) {
  const room = cfg.rooms[0];
  const out = {};
  let seeder = null;
  if (cfg.seed) {
    const update = seedDoc(cfg);
    out.seed_update_bytes = update.length;
    seeder = new Client(room, 1_000_000);
    await seeder.connect();
    await withTimeout(seeder.syncedPromise, 30000, "seeder sync");
    seeder.send(syncMessage(seeder.prefix, SYNC_UPDATE, update));
    // Messages of one socket are handled in order: the answer to a second step 1 shows the seed applied.
    // (Probing with other sockets instead races the seed's broadcast, and a socket closing during a
    // broadcast takes vanilla pycrdt-websocket down.)
    const echoed = new Promise((resolve) => {
      seeder.onStep2 = resolve;
    });
    seeder.send(syncMessage(seeder.prefix, SYNC_STEP1, EMPTY_STATE_VECTOR));
    const echoedBytes = await withTimeout(echoed, 120000, "seed echo");
    if (echoedBytes < 0.9 * update.length) throw new Error(`seed not applied (step 2 of ${echoedBytes} B)`);
    await sleep(500);
    // And a fresh client sees it (Plait: the room state, persisted before anyone else receives it).
    const deadline = performance.now() + 120000;
    let last = "";
    for (;;) {
      try {
        const j = await joinOnce(room, 1_000_001);
        if (j.step2_bytes >= 0.9 * update.length) break;
        last = `step 2 of ${j.step2_bytes} B`;
      } catch (err) {
        last = String(err);
      }
      if (performance.now() > deadline) throw new Error(`seed never arrived (${last})`);
      await sleep(200);
    }
    log(`seeded ${update.length} bytes`);
  }
  if (cfg.sequential) {
    out.single = [];
    for (let i = 0; i < cfg.sequential; i++) {
      out.single.push(await joinOnce(room, 2_000_000 + i));
      await sleep(100);
    }
  }
  if (cfg.concurrent) {
    const t0 = performance.now();
    const all = await Promise.all(Array.from({ length: cfg.concurrent }, (_, i) => joinOnce(room, 3_000_000 + i)));
    out.concurrent = { all_synced_ms: performance.now() - t0, each: all };
  }
  if (seeder && !cfg.keepSeeder) seeder.close();
  return out;
}

async function idle(cfg, probe) {
  // Stage RSS: baseline, one client per room, then every client; idle hold; count survivors.
  const settle = (cfg.settleS ?? 2) * 1000;
  const perRoom = cfg.clientsPerRoom;
  const firsts = [];
  const rest = [];
  let id = 0;
  for (const room of cfg.rooms) {
    for (let k = 0; k < perRoom; k++) (k === 0 ? firsts : rest).push(new Client(room, id++));
  }
  await sleep(settle);
  const rss0 = probe.sampleRss();
  await connectAll(firsts, cfg.connectBatch ?? 50);
  await sleep(settle);
  const rss1 = probe.sampleRss();
  await connectAll(rest, cfg.connectBatch ?? 50);
  await sleep(settle);
  const rss2 = probe.sampleRss();
  await sleep((cfg.holdS ?? 5) * 1000);
  const rss3 = probe.sampleRss();
  const all = firsts.concat(rest);
  const open = all.filter((c) => !c.closed).length;
  for (const c of all) c.close();
  const rooms = cfg.rooms.length;
  return {
    rooms,
    clients: all.length,
    still_open: open,
    rss_baseline_mb: rss0 / 1024,
    rss_rooms_mb: rss1 / 1024,
    rss_all_mb: rss2 / 1024,
    rss_after_hold_mb: rss3 / 1024,
    kb_per_room: (rss1 - rss0) / rooms,
    kb_per_connection: (rss2 - rss1) / (all.length - rooms),
  };
}

async function burstJoin(cfg) {
  // s0: every client of every never-used room connects at the same instant.
  const clients = [];
  let id = 0;
  for (const room of cfg.rooms) for (let k = 0; k < cfg.clientsPerRoom; k++) clients.push(new Client(room, id++));
  await Promise.allSettled(clients.map((c) => c.connect()));
  const timeout = (cfg.timeoutS ?? 10) * 1000;
  await Promise.allSettled(clients.map((c) => withTimeout(c.syncedPromise, timeout, "s0 sync")));
  const times = clients
    .filter((c) => c.synced)
    .map((c) => c.tSynced - c.tStart)
    .sort((a, b) => a - b);
  for (const c of clients) c.close();
  return {
    clients: clients.length,
    synced: times.length,
    never_synced: clients.length - times.length,
    p50_ms: times.length ? times[Math.floor(times.length / 2)] : null,
    max_ms: times.length ? times[times.length - 1] : null,
  };
}

// ---------------------------------------------------------------------------------------------------------

async function main() {
  const raw = process.argv[2] ?? readFileSync(0, "utf8");
  const cfg = JSON.parse(raw);
  clkTck = cfg.clkTck ?? CLK_TCK;
  const probe = new Probe(cfg);
  const t0 = process.cpuUsage();
  const wall0 = performance.now();
  let result;
  switch (cfg.mode) {
    case "fanout":
      result = await fanout(cfg, probe);
      break;
    case "join":
      result = await join(cfg);
      break;
    case "idle":
      result = await idle(cfg, probe);
      break;
    case "burst":
      result = await burstJoin(cfg);
      break;
    default:
      throw new Error(`unknown mode ${cfg.mode}`);
  }
  const cpu = process.cpuUsage(t0);
  result.generator = {
    cpu_s: (cpu.user + cpu.system) / 1e6,
    wall_s: (performance.now() - wall0) / 1000,
    errors: stats.errors,
    unexpected_closes: stats.unexpectedCloses,
    close_codes: stats.closeCodes,
  };
  result.server_peak_rss_mb = probe.pid ? probe.peakRssKb / 1024 : null;
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

main().catch((err) => {
  process.stdout.write(`${JSON.stringify({ error: String(err?.stack ?? err) })}\n`);
  process.exit(1);
});
