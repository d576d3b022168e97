// The /game page of `reactor serve` in a real browser: two pages in one
// arena (with the Python UDP client as a third player) see each other
// move; the page shows ping, tick and loss, fetches nothing from
// elsewhere and throws no errors.
//
// Run by scripts/browser-test.sh after the chat test. Environment: BIN,
// PORT (a free loopback port: HTTP on TCP, the game on UDP), ARTIFACTS,
// CHROMIUM, PIDFILE (optional), ROOT (the repository, for the Python
// client). Prints one line per step and `N passed, N failed`.

import { spawn } from "node:child_process";
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const env = (k, d) => process.env[k] ?? d ?? (() => { throw new Error(`${k} is not set`); })();
const BIN = env("BIN");
const PORT = +env("PORT");
const ARTIFACTS = path.join(env("ARTIFACTS"), "game");
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");
const ROOT = env("ROOT");
const PIDFILE = process.env.PIDFILE;
const HTTP = `http://127.0.0.1:${PORT}`;
const WAIT_MS = 10000;

mkdirSync(ARTIFACTS, { recursive: true });
const tmp = mkdtempSync(path.join(os.tmpdir(), "reactor-game."));
const children = new Set();

function started(child) {
  children.add(child);
  child.on("exit", () => children.delete(child));
  if (PIDFILE) appendFileSync(PIDFILE, `${child.pid}\n`);
  return child;
}
function killChildren() {
  for (const c of children) {
    try { process.kill(c.pid, "SIGKILL"); } catch { /* gone */ }
  }
}
process.on("exit", killChildren);
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(1));

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms); }),
  ]);
}

let server = null;
async function startServer() {
  const out = [];
  const child = started(spawn(BIN, ["serve", "--http", `127.0.0.1:${PORT}`, "--game", `127.0.0.1:${PORT}`,
    "--grace", "1s", "--log-level", "info"], { stdio: ["ignore", "pipe", "pipe"] }));
  const ready = new Promise((resolve, reject) => {
    const onData = (d) => {
      out.push(d);
      writeFileSync(path.join(ARTIFACTS, "server.log"), Buffer.concat(out));
      if (Buffer.concat(out).includes(": ready")) resolve();
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => reject(new Error(`server exited (${code})`)));
  });
  await withTimeout(ready, WAIT_MS, "server start");
  server = child;
}

const steps = [];
const step = (name, fn) => steps.push({ name, fn });
const ctx = {};
const offOrigin = [];
const pageErrors = [];

async function newPage(label) {
  const page = await ctx.browser.newPage();
  page.label = label;
  page.on("pageerror", (e) => pageErrors.push(`${label}: ${e.message}`));
  page.on("request", (r) => { if (!r.url().startsWith(HTTP)) offOrigin.push(`${label}: ${r.url()}`); });
  page.on("websocket", (ws) => {
    if (ws.url() !== `ws://127.0.0.1:${PORT}/game/ws`) offOrigin.push(`${label}: websocket ${ws.url()}`);
  });
  await page.goto(HTTP + "/game");
  await page.waitForFunction(() => window.game.me && window.game.self, null, { timeout: WAIT_MS });
  page.id = await page.evaluate(() => window.game.me.id);
  return page;
}

// Where `page` shows player `id`, in arena units.
const where = (page, id) => page.evaluate((id) => window.game.positions()[id] || null, id);

// Holds `key` down in `page` until `watcher` shows `page`'s player moved
// by `by` along `axis`; then lets go.
async function moveAndWatch(page, watcher, key, axis, by) {
  await watcher.waitForFunction((id) => window.game.positions()[id], page.id, { timeout: WAIT_MS });
  const from = await where(watcher, page.id);
  await page.evaluate((code) => dispatchEvent(new KeyboardEvent("keydown", { code })), key);
  try {
    await watcher.waitForFunction(([id, axis, start, by]) => {
      const p = window.game.positions()[id];
      return p && p[axis] - start >= by;
    }, [page.id, axis, from[axis], by], { timeout: WAIT_MS });
  } catch {
    const now = await where(watcher, page.id);
    throw new Error(`${watcher.label} saw ${page.label} go from ${JSON.stringify(from)} to ${JSON.stringify(now)}`);
  } finally {
    await page.evaluate((code) => dispatchEvent(new KeyboardEvent("keyup", { code })), key);
  }
}

step("the page is served, self-contained", async () => {
  const res = await fetch(HTTP + "/game");
  if (res.status !== 200) throw new Error(`GET /game: ${res.status}`);
  const body = await res.text();
  const external = body.match(/(?:src|href)\s*=\s*["']?(?:https?:)?\/\/|@import|url\(\s*["']?(?:https?:)?\/\//i);
  if (external) throw new Error(`refers to another site: ${external[0]}`);
});

step("two pages join one arena and see each other", async () => {
  ctx.a = await newPage("a");
  ctx.b = await newPage("b");
  if (ctx.a.id === ctx.b.id) throw new Error("same player id");
  for (const [p, other] of [[ctx.a, ctx.b], [ctx.b, ctx.a]]) {
    await p.waitForFunction((id) => window.game.positions()[id], other.id, { timeout: WAIT_MS });
  }
});

step("a moves right: b sees it", async () => {
  await moveAndWatch(ctx.a, ctx.b, "ArrowRight", "x", 40);
});

step("b moves down: a sees it", async () => {
  await moveAndWatch(ctx.b, ctx.a, "ArrowDown", "y", 40);
});

step("a UDP player (the Python client) shows in the pages", async () => {
  const py = started(spawn("python3", [path.join(ROOT, "examples/game_client.py"), `127.0.0.1:${PORT}`,
    "--seconds", "5", "--quiet"], { stdio: ["ignore", "pipe", "pipe"] }));
  ctx.python = new Promise((resolve) => {
    let out = "";
    py.stdout.on("data", (d) => { out += d; });
    py.on("exit", (code) => resolve({ code, out }));
  });
  await ctx.a.waitForFunction(() => Object.keys(window.game.positions()).length === 3, null, { timeout: WAIT_MS });
});

step("the page shows ping, tick and loss", async () => {
  await ctx.a.waitForFunction(() => /ms$/.test(document.getElementById("ping").textContent), null, { timeout: WAIT_MS });
  const hud = await ctx.a.evaluate(() => ["ping", "tick", "loss", "count", "bytes"]
    .map((id) => `${id} ${document.getElementById(id).textContent}`).join(", "));
  if (!/tick \d+ @ 30 Hz/.test(hud) || !/loss \d/.test(hud)) throw new Error(hud);
  ctx.hud = hud;
  await ctx.a.screenshot({ path: path.join(ARTIFACTS, "a.png") });
  await ctx.b.screenshot({ path: path.join(ARTIFACTS, "b.png") });
});

step("the Python client saw the pages", async () => {
  const { code, out } = await withTimeout(ctx.python, WAIT_MS, "python client");
  const players = (out.match(/players=([\d,]*)/) || [])[1] || "";
  const ids = players.split(",").map(Number);
  if (code !== 0 || !ids.includes(ctx.a.id) || !ids.includes(ctx.b.id)) {
    throw new Error(`exit ${code}: ${out}`);
  }
});

step("nothing fetched from elsewhere, no script errors", async () => {
  if (offOrigin.length) throw new Error(`requests to other origins: ${offOrigin.join(", ")}`);
  if (pageErrors.length) throw new Error(`uncaught errors in the pages: ${pageErrors.join("; ")}`);
});

async function main() {
  await startServer();
  ctx.browser = await chromium.launchPersistentContext(path.join(tmp, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 900, height: 700 },
    // Two pages play at once: neither may be throttled as a background tab.
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
      "--disable-backgrounding-occluded-windows"],
  });
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
        await page.screenshot({ path: path.join(ARTIFACTS, `failed-${page.label || "page"}.png`) }).catch(() => {});
      }
    }
  }
  if (ctx.hud) console.log(`page a: ${ctx.hud}`);
  await ctx.browser.close();
  const exited = new Promise((resolve) => server.on("exit", (code, sig) => resolve(code ?? sig)));
  server.kill("SIGTERM");
  const status = await withTimeout(exited, WAIT_MS, "server stop");
  if (status === 0) { passed += 1; console.log("PASS server exits 0 on SIGTERM"); }
  else { failed += 1; console.log(`FAIL server exit status ${status}`); }
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
