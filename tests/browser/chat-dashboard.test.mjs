// The /chat and /dashboard pages of `reactor serve` in a real browser:
// Debian's headless Chromium (/usr/bin/chromium) driven by playwright-core,
// with a TCP chat member (what `nc` would be) in the same room.
//
// Run by scripts/browser-test.sh, which installs what it needs and picks
// the ports. This script starts the server itself (and restarts it, to see
// the pages reconnect), runs `reactor bench http` for the dashboard, and
// stops every process it started. Screenshots go to $ARTIFACTS.
//
// Environment: BIN (the reactor binary), HTTP_PORT, CHAT_PORT, HTTPS_PORT
// (free loopback ports), ARTIFACTS (a directory), CHROMIUM
// (/usr/bin/chromium), PIDFILE (optional: each pid started is appended,
// so the caller can clean up if this script is killed).
//
// Prints one line per step and `N passed, N failed`; exit status 1 on any
// failure.

import { spawn, spawnSync } from "node:child_process";
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { chromium } from "playwright-core";

const env = (k, d) => process.env[k] ?? d ?? (() => { throw new Error(`${k} is not set`); })();
const BIN = env("BIN");
const PORTS = { http: +env("HTTP_PORT"), chat: +env("CHAT_PORT"), https: +env("HTTPS_PORT") };
const ARTIFACTS = env("ARTIFACTS");
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");
const PIDFILE = process.env.PIDFILE;
const HTTP = `http://127.0.0.1:${PORTS.http}`;
const HTTPS = `https://127.0.0.1:${PORTS.https}`;
const WAIT_MS = 10000; // the longest any single wait may take
const ROOM = "studio";

mkdirSync(ARTIFACTS, { recursive: true });
const tmp = mkdtempSync(path.join(os.tmpdir(), "reactor-browser."));

// ---- processes we start ------------------------------------------------------

const children = new Set();

function started(child) {
  children.add(child);
  child.on("exit", () => children.delete(child));
  if (PIDFILE) appendFileSync(PIDFILE, `${child.pid}\n`);
  return child;
}

// Kills what is still running (only our own children, by pid).
function killChildren() {
  for (const c of children) {
    try { process.kill(c.pid, "SIGKILL"); } catch { /* already gone */ }
  }
}
process.on("exit", killChildren);
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(1));

const cert = path.join(tmp, "tls");
let server = null;
let serverRuns = 0;

// Starts `reactor serve` on our ports and waits for its "ready" line.
async function startServer() {
  serverRuns += 1;
  const log = path.join(ARTIFACTS, `server-${serverRuns}.log`);
  const out = [];
  const child = started(spawn(BIN, [
    "serve", "--http", `127.0.0.1:${PORTS.http}`, "--chat", `127.0.0.1:${PORTS.chat}`,
    "--https", `127.0.0.1:${PORTS.https}`, "--tls-cert", `${cert}/cert.pem`, "--tls-key", `${cert}/key.pem`,
    "--grace", "1s", "--log-level", "info",
  ], { stdio: ["ignore", "pipe", "pipe"] }));
  const ready = new Promise((resolve, reject) => {
    const onData = (d) => {
      out.push(d);
      writeFileSync(log, Buffer.concat(out));
      if (Buffer.concat(out).includes(": ready")) resolve();
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => reject(new Error(`server exited (${code}): ${Buffer.concat(out)}`)));
  });
  await withTimeout(ready, WAIT_MS, "server start");
  server = child;
}

// SIGTERM, and wait for the exit; its status must be 0.
async function stopServer() {
  const child = server;
  server = null;
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.on("exit", (code, sig) => resolve(code ?? sig)));
  child.kill("SIGTERM");
  const status = await withTimeout(exited, WAIT_MS, "server stop");
  if (status !== 0) throw new Error(`server exit status ${status} after SIGTERM, want 0`);
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms); }),
  ]);
}

// ---- a TCP chat member, as nc would be -------------------------------------------

class TcpMember {
  constructor(port) {
    this.lines = [];
    this.waiters = [];
    this.buf = "";
    this.sock = net.connect(port, "127.0.0.1");
    this.sock.setEncoding("utf8");
    this.sock.on("data", (d) => {
      this.buf += d;
      let i;
      while ((i = this.buf.indexOf("\n")) >= 0) {
        this.lines.push(this.buf.slice(0, i));
        this.buf = this.buf.slice(i + 1);
      }
      this.waiters.forEach((w) => w());
    });
    this.sock.on("error", () => {});
  }

  send(line) {
    this.sock.write(line + "\n");
  }

  // Waits until a line equal to `want` (or matching it, a RegExp) arrived.
  async waitLine(want, ms = WAIT_MS) {
    const seen = () => this.lines.some((l) => (want instanceof RegExp ? want.test(l) : l === want));
    const deadline = Date.now() + ms;
    while (!seen()) {
      if (Date.now() > deadline) {
        throw new Error(`tcp member: no line ${want} in ${ms} ms; got ${JSON.stringify(this.lines.slice(-6))}`);
      }
      await new Promise((resolve) => { this.waiters = [resolve]; setTimeout(resolve, 100); });
    }
  }

  close() {
    this.sock.destroy();
  }
}

// ---- page helpers --------------------------------------------------------------

// The log lines a chat page shows: [{kind, line}].
function logOf(page) {
  return page.$$eval("#log li", (lis) => lis.map((li) => ({ kind: li.dataset.kind, line: li.dataset.line })));
}

// Waits until page's log holds `line` (or a line starting with it, if
// `prefix`) shown as `kind`.
async function waitLine(page, line, kind, prefix = false) {
  try {
    await page.waitForFunction(([line, kind, prefix]) => [...document.querySelectorAll("#log li")]
      .some((li) => (prefix ? li.dataset.line.startsWith(line) : li.dataset.line === line) &&
        (!kind || li.dataset.kind === kind)), [line, kind, prefix], { timeout: WAIT_MS });
  } catch {
    const log = await logOf(page);
    throw new Error(`${page.label}: no ${kind || ""} line ${JSON.stringify(line)}; last: ${JSON.stringify(log.slice(-6))}`);
  }
}

// Waits until the member list shows exactly `nicks`.
async function waitMembers(page, nicks) {
  const want = [...nicks].sort().join(",");
  try {
    await page.waitForFunction((want) => [...document.querySelectorAll("#members li")]
      .map((li) => li.textContent).sort().join(",") === want, want, { timeout: WAIT_MS });
  } catch {
    const got = await page.$$eval("#members li", (lis) => lis.map((li) => li.textContent));
    throw new Error(`${page.label}: members ${JSON.stringify(got)}, want ${want}`);
  }
}

async function waitState(page, state, ms = WAIT_MS) {
  try {
    await page.waitForFunction((s) => document.body.dataset.state === s, state, { timeout: ms });
  } catch {
    const got = await page.evaluate(() => `${document.body.dataset.state}: ${document.getElementById("status").textContent}`);
    throw new Error(`${page.label}: state ${got}, want ${state}`);
  }
}

async function say(page, line) {
  await page.fill("#line", line);
  await page.press("#line", "Enter");
}

async function join(page, nick, room) {
  await page.fill("#nick", nick);
  await page.fill("#room", room);
  await page.click("#connect");
  await waitState(page, "online");
  await waitLine(page, `* you are now ${nick}`, "system");
  await waitLine(page, `* you joined ${room} (`, "system", true);
  const shown = await page.textContent("#room-name");
  if (shown !== room) throw new Error(`${page.label}: the page names the room ${JSON.stringify(shown)}, want ${room}`);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

// The dashboard's current figures: {key: number} from the legends' data-value.
function dashboardValues(page) {
  return page.$$eval("[data-key]", (els) => Object.fromEntries(els
    .filter((e) => e.dataset.value !== undefined && e.dataset.value !== "")
    .map((e) => [e.dataset.key, Number(e.dataset.value)])));
}

// A raw figure from the dashboard's table (what /stats said last).
async function figure(page, name) {
  return Number(await page.getAttribute(`[data-field="${name}"]`, "data-value"));
}

// ---- the steps -------------------------------------------------------------------

const steps = [];
const step = (name, fn) => steps.push({ name, fn });
const ctx = {}; // what the steps share: pages, the tcp member
const offOrigin = []; // requests the pages made anywhere but our server
const pageErrors = [];

async function newPage(label) {
  const page = await ctx.browser.newPage();
  page.label = label;
  page.on("pageerror", (e) => pageErrors.push(`${label}: ${e.message}`));
  page.on("request", (r) => {
    if (!r.url().startsWith(HTTP) && !r.url().startsWith(HTTPS)) offOrigin.push(`${label}: ${r.url()}`);
  });
  page.on("websocket", (ws) => {
    const ok = ws.url() === `ws://127.0.0.1:${PORTS.http}/ws` || ws.url() === `wss://127.0.0.1:${PORTS.https}/ws`;
    if (!ok) offOrigin.push(`${label}: websocket ${ws.url()}`);
  });
  return page;
}

step("pages are served, self-contained", async () => {
  for (const p of ["/chat", "/dashboard"]) {
    const res = await fetch(HTTP + p);
    if (res.status !== 200) throw new Error(`GET ${p}: ${res.status}`);
    const type = res.headers.get("content-type") || "";
    if (!type.startsWith("text/html")) throw new Error(`GET ${p}: Content-Type ${type}`);
    const body = await res.text();
    const external = body.match(/(?:src|href)\s*=\s*["']?(?:https?:)?\/\/|@import|url\(\s*["']?(?:https?:)?\/\//i);
    if (external) throw new Error(`GET ${p}: refers to another site: ${external[0]}`);
    if (!/<script>/.test(body)) throw new Error(`GET ${p}: no inline script`);
  }
});

step("two pages join one room", async () => {
  ctx.alice = await newPage("alice");
  ctx.bob = await newPage("bob");
  await ctx.alice.goto(`${HTTP}/chat`);
  await ctx.bob.goto(`${HTTP}/chat`);
  await join(ctx.alice, "alice", ROOM);
  await join(ctx.bob, "bob", ROOM);
  await waitLine(ctx.alice, `* bob joined ${ROOM}`, "system");
  await waitMembers(ctx.alice, ["alice", "bob"]);
  await waitMembers(ctx.bob, ["alice", "bob"]);
});

step("a TCP (nc) member joins the same room", async () => {
  ctx.carol = new TcpMember(PORTS.chat);
  await ctx.carol.waitLine(/^\* welcome to reactor chat, you are guest\d+ in lobby/);
  ctx.carol.send("/nick carol");
  await ctx.carol.waitLine("* you are now carol");
  ctx.carol.send(`/join ${ROOM}`);
  await ctx.carol.waitLine(`* you joined ${ROOM} (3 members)`);
  for (const page of [ctx.alice, ctx.bob]) {
    await waitLine(page, `* carol joined ${ROOM}`, "system");
    await waitMembers(page, ["alice", "bob", "carol"]);
  }
});

step("a line from one page reaches the other page and nc", async () => {
  await say(ctx.alice, "hello from alice");
  await waitLine(ctx.alice, `[${ROOM}] alice: hello from alice`, "own");
  await waitLine(ctx.bob, `[${ROOM}] alice: hello from alice`, "message");
  await ctx.carol.waitLine(`[${ROOM}] alice: hello from alice`);
});

step("nc's reply shows in both pages", async () => {
  ctx.carol.send("hi from nc <b>not bold</b>");
  for (const page of [ctx.alice, ctx.bob]) {
    await waitLine(page, `[${ROOM}] carol: hi from nc <b>not bold</b>`, "message");
    // Text is text: the markup must not have become an element.
    const bold = await page.$$eval("#log li b", (bs) => bs.length);
    if (bold) throw new Error(`${page.label}: a member's text was rendered as HTML`);
  }
  await shot(ctx.alice, "chat-alice");
  await shot(ctx.bob, "chat-bob");
});

step("system and error lines look different from messages", async () => {
  await say(ctx.alice, "/nick bob");
  await waitLine(ctx.alice, "ERROR nick bob is taken", "error");
  // The computed look of the first log line of `kind` on `page`.
  const look = (page, kind) => page.evaluate((kind) => {
    const li = document.querySelector(`#log li[data-kind="${kind}"]`);
    if (!li) return `no ${kind} line`;
    const s = getComputedStyle(li);
    return `${s.color} / ${s.backgroundColor} / ${s.fontStyle}`;
  }, kind);
  const looks = {
    message: await look(ctx.bob, "message"),
    system: await look(ctx.alice, "system"),
    error: await look(ctx.alice, "error"),
  };
  if (new Set(Object.values(looks)).size !== 3) {
    throw new Error(`message, system and error lines must look different: ${JSON.stringify(looks)}`);
  }
  await shot(ctx.alice, "chat-alice-error");
});

step("dashboard counters move under reactor bench http", async () => {
  const dash = ctx.dash = await newPage("dashboard");
  await dash.setViewportSize({ width: 1200, height: 900 });
  await dash.goto(`${HTTP}/dashboard`);
  await waitState(dash, "live");
  await dash.waitForFunction(() => Number(document.body.dataset.samples) >= 3, null, { timeout: WAIT_MS });
  const before = { accepted: await figure(dash, "accepted"), http: await figure(dash, "http_requests") };
  const wsOpen = (await dashboardValues(dash)).open_ws;
  if (!(wsOpen >= 2)) throw new Error(`dashboard: open_ws ${wsOpen} with two chat pages open, want >= 2`);

  const out = [];
  const bench = started(spawn(BIN, ["bench", "http", `${HTTP}/`, "-c", "20", "-d", "3s", "-q"], { stdio: ["ignore", "pipe", "pipe"] }));
  bench.stdout.on("data", (d) => out.push(d));
  bench.stderr.on("data", (d) => out.push(d));
  const done = new Promise((resolve) => bench.on("exit", (code) => resolve(code)));
  // Sample the dashboard's legends while the load runs: keep the maxima.
  const max = {};
  let shotTaken = false;
  let finished = false;
  done.then(() => { finished = true; });
  const t0 = Date.now();
  while (!finished && Date.now() - t0 < 15000) {
    const v = await dashboardValues(dash);
    for (const [k, x] of Object.entries(v)) max[k] = Math.max(max[k] ?? -Infinity, x);
    if (!shotTaken && Date.now() - t0 > 2200) {
      await shot(dash, "dashboard-under-load");
      shotTaken = true;
    }
    await sleep(200);
  }
  const code = await withTimeout(done, 15000, "reactor bench");
  writeFileSync(path.join(ARTIFACTS, "bench.txt"), Buffer.concat(out));
  if (code !== 0) throw new Error(`reactor bench exited ${code}: ${Buffer.concat(out).toString().slice(-500)}`);
  // One more sample after the load, so the table has the final counters.
  const n = Number(await dash.getAttribute("body", "data-samples"));
  await dash.waitForFunction((n) => Number(document.body.dataset.samples) >= n + 2, n, { timeout: WAIT_MS });
  const after = { accepted: await figure(dash, "accepted"), http: await figure(dash, "http_requests") };
  await shot(dash, "dashboard-after-load");

  const want = [
    [after.accepted - before.accepted >= 20, `accepted grew by ${after.accepted - before.accepted}, want >= 20 (bench's 20 connections)`],
    [after.http - before.http >= 100, `http_requests grew by ${after.http - before.http}, want >= 100`],
    [max.open_http >= 20, `open_http peaked at ${max.open_http}, want >= 20`],
    [max.accepted > 0, `accepted/s peaked at ${max.accepted}, want > 0`],
    [max.http_requests >= 100, `responses/s peaked at ${max.http_requests}, want >= 100`],
    [max.bytes_in > 0 && max.bytes_out > max.bytes_in, `bytes in/out per second peaked at ${max.bytes_in}/${max.bytes_out}`],
    [max.events_per_wakeup >= 1, `events per wakeup peaked at ${max.events_per_wakeup}, want >= 1`],
    [max.rss_kib > 0, `rss_kib ${max.rss_kib}`],
  ];
  const bad = want.filter(([ok]) => !ok).map(([, why]) => why);
  if (bad.length) throw new Error(`dashboard: ${bad.join("; ")} (maxima ${JSON.stringify(max)})`);
  ctx.benchSummary = `accepted +${after.accepted - before.accepted}, responses +${after.http - before.http}, ` +
    `peak ${Math.round(max.http_requests)}/s, open_http peak ${max.open_http}, events/wakeup peak ${max.events_per_wakeup.toFixed(2)}`;
});

step("server restart: pages show it, then reconnect and rejoin", async () => {
  ctx.carol.close();
  await stopServer();
  try {
    await waitState(ctx.alice, "waiting");
    await waitState(ctx.bob, "waiting");
    await waitState(ctx.dash, "down", 5000);
    await shot(ctx.alice, "chat-alice-disconnected");
    await shot(ctx.dash, "dashboard-server-down");
    await sleep(1500); // down for a while: the pages keep retrying
  } finally {
    await startServer(); // the later steps need it, whatever happened here
  }
  for (const [page, nick] of [[ctx.alice, "alice"], [ctx.bob, "bob"]]) {
    await waitState(page, "online", 20000);
    await page.waitForFunction(([nick, room]) => document.getElementById("room-name").textContent === room &&
      [...document.querySelectorAll("#log li")].filter((li) => li.dataset.line === `* you are now ${nick}`).length >= 2,
    [nick, ROOM], { timeout: WAIT_MS }).catch(async () => {
      throw new Error(`${nick}: did not rejoin as ${nick} in ${ROOM}: ${JSON.stringify((await logOf(page)).slice(-6))}`);
    });
  }
  await waitMembers(ctx.alice, ["alice", "bob"]);
  await waitMembers(ctx.bob, ["alice", "bob"]);
  await say(ctx.bob, "back after the restart");
  await waitLine(ctx.alice, `[${ROOM}] bob: back after the restart`, "message");
  await waitState(ctx.dash, "live");
  await shot(ctx.alice, "chat-alice-reconnected");
  await shot(ctx.dash, "dashboard-after-restart");
});

step("a page over https talks over wss:// to the others", async () => {
  const dave = ctx.dave = await newPage("dave");
  await dave.goto(`${HTTPS}/chat`);
  await join(dave, "dave", ROOM);
  await waitLine(ctx.alice, `* dave joined ${ROOM}`, "system");
  await say(dave, "over wss");
  await waitLine(ctx.alice, `[${ROOM}] dave: over wss`, "message");
  await say(ctx.alice, "seen it");
  await waitLine(dave, `[${ROOM}] alice: seen it`, "message");
  await waitMembers(dave, ["alice", "bob", "dave"]);
});

step("leaving: /quit closes, and the others see it", async () => {
  await say(ctx.dave, "/quit");
  await waitLine(ctx.dave, "* bye", "system");
  await waitState(ctx.dave, "idle");
  await waitLine(ctx.alice, `* dave left ${ROOM}`, "system");
  await waitMembers(ctx.alice, ["alice", "bob"]);
  await sleep(1500); // no reconnect after a /quit
  await waitState(ctx.dave, "idle", 100);
});

step("nothing fetched from elsewhere, no script errors", async () => {
  if (offOrigin.length) throw new Error(`requests to other origins: ${offOrigin.join(", ")}`);
  if (pageErrors.length) throw new Error(`uncaught errors in the pages: ${pageErrors.join("; ")}`);
});

// ---- run -------------------------------------------------------------------------

async function main() {
  const t0 = Date.now();
  const r = spawnSync(BIN, ["cert", "--out", cert], { stdio: "ignore" });
  if (r.status !== 0) throw new Error(`reactor cert failed (${r.status})`);
  await startServer();
  const profile = path.join(tmp, "profile"); // a fresh, empty user data dir
  ctx.browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    ignoreHTTPSErrors: true, // reactor cert's self-signed certificate
    viewport: { width: 1000, height: 700 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  ctx.browser.setDefaultTimeout(WAIT_MS);
  console.log(`chromium ${ctx.browser.browser()?.version() ?? ""}, server ${HTTP} chat :${PORTS.chat} ${HTTPS}`);
  let passed = 0, failed = 0;
  for (const { name, fn } of steps) {
    const ts = Date.now();
    try {
      await fn();
      passed += 1;
      console.log(`PASS ${name} (${Date.now() - ts} ms)`);
    } catch (e) {
      failed += 1;
      console.log(`FAIL ${name}: ${e.message}`);
      for (const page of ctx.browser.pages()) {
        await shot(page, `failed-${steps.findIndex((s) => s.name === name)}-${page.label || "page"}`).catch(() => {});
      }
    }
  }
  if (ctx.benchSummary) console.log(`dashboard under load: ${ctx.benchSummary}`);
  await ctx.browser.close();
  try {
    await stopServer();
    passed += 1;
    console.log("PASS server exits 0 on SIGTERM");
  } catch (e) {
    failed += 1;
    console.log(`FAIL server exits 0 on SIGTERM: ${e.message}`);
  }
  const logs = [1, 2].map((i) => { try { return readFileSync(path.join(ARTIFACTS, `server-${i}.log`), "utf8"); } catch { return ""; } }).join("");
  if (logs.includes("panicked")) {
    failed += 1;
    console.log("FAIL no panic in the server logs");
  }
  console.log(`screenshots and logs: ${ARTIFACTS} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  console.log(`${passed} passed, ${failed} failed`);
  return failed ? 1 : 0;
}

let status = 1;
try {
  status = await main();
} catch (e) {
  console.log(`FAIL setup: ${e.stack || e}`);
} finally {
  if (ctx.browser) await ctx.browser.close().catch(() => {});
  killChildren();
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(status);
