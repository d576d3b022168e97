// The /chat page behind HAProxy (deploy/haproxy.cfg) in front of three
// reactors sharing one Redis bus: two pages and a TCP chat member, each
// let in through HAProxy, talk in one room across reactors; then the
// reactor serving one page is killed with SIGKILL, and that page
// reconnects (its own backoff) through HAProxy to another reactor, comes
// back into the room, and goes on talking with the others, both ways.
//
// Run by scripts/haproxy-test.sh, which starts Redis, the reactors and
// HAProxy on free loopback ports and stops them afterwards. This script
// kills one reactor itself (by pid); it starts nothing but Chromium.
//
// Environment: LB_HTTP_PORT, LB_CHAT_PORT, LB_STATS_PORT (HAProxy's),
// REACTORS ("PID:HTTP_PORT:CHAT_PORT" for r1, r2, r3, comma-separated, in
// the order of the config's servers), BUS_LEASE_MS (the reactors'
// --bus-lease), ARTIFACTS (screenshots), CHROMIUM (/usr/bin/chromium).
//
// Prints one line per step and `N passed, N failed`; exit status 1 on any
// failure. Later steps need the earlier ones, so the first failure ends
// the run.

import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { chromium } from "playwright-core";

const env = (k, d) => process.env[k] ?? d ?? (() => { throw new Error(`${k} is not set`); })();
const LB = { http: +env("LB_HTTP_PORT"), chat: +env("LB_CHAT_PORT"), stats: +env("LB_STATS_PORT") };
const REACTORS = env("REACTORS").split(",").map((s, i) => {
  const [pid, http, chat] = s.split(":").map(Number);
  return { name: `r${i + 1}`, pid, http, chat, tag: null };
});
const LEASE_MS = +env("BUS_LEASE_MS");
const ARTIFACTS = env("ARTIFACTS");
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");
const HTTP = `http://127.0.0.1:${LB.http}`;
const STATS = `http://127.0.0.1:${LB.stats}`;
const WAIT_MS = 10000; // the longest an ordinary wait may take
const ROOM = "lounge";

const tmp = mkdtempSync(path.join(os.tmpdir(), "reactor-haproxy."));
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(1));

// Polls `fn` every `every` ms until it returns something truthy (which is
// returned), or throws `what` after `ms`.
async function until(fn, ms, what, every = 100) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms${last ? ` (${last.message})` : ""}`);
    await sleep(every);
  }
}

// ---- HAProxy and the reactors, as seen from outside ---------------------------

// HAProxy's CSV status: one {pxname, svname, status, ...} per row.
async function haproxyCsv() {
  const res = await fetch(`${STATS}/;csv`, { signal: AbortSignal.timeout(2000) });
  const [head, ...rows] = (await res.text()).trim().split("\n");
  const cols = head.replace(/^# /, "").split(",");
  return rows.map((r) => Object.fromEntries(r.split(",").map((v, i) => [cols[i], v])));
}

// {"BACKEND/SERVER": status} (UP, DOWN, ...) of the servers.
async function haproxyStatus() {
  return Object.fromEntries((await haproxyCsv())
    .filter((f) => f.svname !== "FRONTEND" && f.svname !== "BACKEND")
    .map((f) => [`${f.pxname}/${f.svname}`, f.status]));
}

// Waits until HAProxy says each of `names` (r1, ...) is `want` in both backends.
async function waitHaproxy(names, want, ms) {
  let seen = {};
  await until(async () => {
    seen = await haproxyStatus();
    return names.every((n) => ["reactors_http", "reactors_chat"].every((b) => seen[`${b}/${n}`] === want));
  }, ms, `HAProxy: ${names.join(", ")} ${want} (saw ${JSON.stringify(seen)})`);
}

// One reactor's /stats, asked directly (not through HAProxy).
async function reactorStats(r) {
  const res = await fetch(`http://127.0.0.1:${r.http}/stats`, { signal: AbortSignal.timeout(2000) });
  return res.json();
}

// The reactor whose tag is in a default nick (guest7-3fa9c1).
function reactorOfNick(nick) {
  const m = /^guest\d+-([0-9a-f]{6})$/.exec(nick);
  const r = m && REACTORS.find((x) => x.tag === m[1]);
  if (!r) throw new Error(`no reactor has the tag of ${nick} (tags ${REACTORS.map((x) => x.tag)})`);
  return r;
}

const WELCOME = /^\* welcome to reactor chat, you are (\S+) in (\S+);/;

// ---- a TCP chat member, as nc would be -----------------------------------------

class TcpMember {
  constructor(label, port) {
    this.label = label;
    this.lines = [];
    this.buf = "";
    this.closed = false;
    this.sock = net.connect(port, "127.0.0.1");
    this.sock.setEncoding("utf8");
    this.sock.on("data", (d) => {
      this.buf += d;
      let i;
      while ((i = this.buf.indexOf("\n")) >= 0) {
        this.lines.push(this.buf.slice(0, i));
        this.buf = this.buf.slice(i + 1);
      }
    });
    this.sock.on("close", () => { this.closed = true; });
    this.sock.on("error", () => {});
  }

  send(line) {
    this.sock.write(line + "\n");
  }

  // Waits for a line equal to `want` (or matching it, a RegExp); returns it.
  async waitLine(want, ms = WAIT_MS, from = 0) {
    const match = (l) => (want instanceof RegExp ? want.test(l) : l === want);
    return until(() => this.lines.slice(from).find(match), ms,
      `${this.label}: line ${want} (last ${JSON.stringify(this.lines.slice(-6))})`, 50);
  }

  close() {
    this.sock.destroy();
  }
}

// ---- page helpers ------------------------------------------------------------------

// The lines a chat page shows: [{kind, line}].
function logOf(page) {
  return page.$$eval("#log li", (lis) => lis.map((li) => ({ kind: li.dataset.kind, line: li.dataset.line })));
}

// Waits until at least `n` lines of the page's log match `re` (a RegExp
// source); returns the lines that do.
async function waitLines(page, re, n = 1, kind = null, ms = WAIT_MS) {
  try {
    await page.waitForFunction(([re, n, kind]) => [...document.querySelectorAll("#log li")]
      .filter((li) => new RegExp(re).test(li.dataset.line) && (!kind || li.dataset.kind === kind)).length >= n,
    [re, n, kind], { timeout: ms });
  } catch {
    throw new Error(`${page.label}: fewer than ${n} ${kind || ""} lines /${re}/; last: ${JSON.stringify((await logOf(page)).slice(-6))}`);
  }
  return (await logOf(page)).map((l) => l.line).filter((l) => new RegExp(re).test(l));
}

const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const waitLine = (page, line, kind) => waitLines(page, `^${esc(line)}$`, 1, kind);

async function waitMembers(page, nicks, ms = WAIT_MS) {
  const want = [...nicks].sort().join(",");
  try {
    await page.waitForFunction((want) => [...document.querySelectorAll("#members li")]
      .map((li) => li.textContent).sort().join(",") === want, want, { timeout: ms });
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

// The nick the page last heard the server confirm (default or chosen).
async function nickOf(page) {
  const lines = (await logOf(page)).map((l) => l.line);
  let nick = null;
  for (const l of lines) {
    const m = WELCOME.exec(l) || /^\* you are now (\S+)$/.exec(l);
    if (m) nick = m[1];
  }
  return nick;
}

// The reactor serving the page now: the tag of its latest welcome.
async function reactorOfPage(page) {
  const welcomes = (await logOf(page)).map((l) => WELCOME.exec(l.line)).filter(Boolean);
  return reactorOfNick(welcomes.at(-1)[1]);
}

async function join(page, nick, room) {
  await page.fill("#nick", nick);
  await page.fill("#room", room);
  await page.click("#connect");
  await waitState(page, "online");
  await waitLine(page, `* you are now ${nick}`, "system");
  await waitLines(page, `^\\* you joined ${room} \\(`, 1, "system");
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

// ---- the steps -------------------------------------------------------------------

const steps = [];
const step = (name, fn) => steps.push({ name, fn });
const ctx = {};
const offOrigin = []; // anything a chat page reached other than HAProxy's http port
const pageErrors = [];

async function newPage(label) {
  const page = await ctx.browser.newPage();
  page.label = label;
  page.on("pageerror", (e) => pageErrors.push(`${label}: ${e.message}`));
  page.on("request", (r) => { if (!r.url().startsWith(`${HTTP}/`)) offOrigin.push(`${label}: ${r.url()}`); });
  page.on("websocket", (ws) => { if (ws.url() !== `ws://127.0.0.1:${LB.http}/ws`) offOrigin.push(`${label}: ${ws.url()}`); });
  return page;
}

step("HAProxy has the three reactors up; each reactor's nick tag", async () => {
  await waitHaproxy(REACTORS.map((r) => r.name), "UP", WAIT_MS);
  // A member connected to a reactor directly is named guestN-TAG: TAG
  // names the reactor in every default nick, whichever way a member came.
  for (const r of REACTORS) {
    const probe = new TcpMember(`probe ${r.name}`, r.chat);
    const nick = WELCOME.exec(await probe.waitLine(WELCOME))[1];
    probe.close();
    r.tag = /-([0-9a-f]{6})$/.exec(nick)?.[1];
    if (!r.tag) throw new Error(`${r.name}: default nick ${nick} has no tag`);
    const s = await reactorStats(r);
    if (s.bus_state !== 3) throw new Error(`${r.name}: bus_state ${s.bus_state}, want 3 (up)`);
  }
  if (new Set(REACTORS.map((r) => r.tag)).size !== REACTORS.length) throw new Error("two reactors share a tag");
  console.log(`  tags: ${REACTORS.map((r) => `${r.name}=${r.tag}`).join(" ")}`);
});

step("the /chat page comes through HAProxy", async () => {
  const res = await fetch(`${HTTP}/chat`);
  if (res.status !== 200) throw new Error(`GET /chat: ${res.status}`);
  const type = res.headers.get("content-type") || "";
  if (!type.startsWith("text/html")) throw new Error(`GET /chat: Content-Type ${type}`);
});

step("two pages join one room through HAProxy, on two reactors", async () => {
  ctx.alice = await newPage("alice");
  ctx.bob = await newPage("bob");
  await ctx.alice.goto(`${HTTP}/chat`);
  await join(ctx.alice, "alice", ROOM);
  await ctx.bob.goto(`${HTTP}/chat`);
  await join(ctx.bob, "bob", ROOM);
  // The page asks for its nick and the room at once; the nick takes a
  // round trip to Redis, so the others may see a guest join, then rename.
  await waitMembers(ctx.alice, ["alice", "bob"]);
  await waitMembers(ctx.bob, ["alice", "bob"]);
  ctx.alice.reactor = await reactorOfPage(ctx.alice);
  ctx.bob.reactor = await reactorOfPage(ctx.bob);
  console.log(`  alice on ${ctx.alice.reactor.name}, bob on ${ctx.bob.reactor.name}`);
  // balance leastconn: the second WebSocket goes to a reactor without one.
  if (ctx.alice.reactor === ctx.bob.reactor) throw new Error(`both pages on ${ctx.bob.reactor.name}`);
});

step("a TCP member joins the room through HAProxy", async () => {
  const carol = ctx.carol = new TcpMember("carol", LB.chat);
  const nick = WELCOME.exec(await carol.waitLine(WELCOME))[1];
  carol.reactor = reactorOfNick(nick);
  console.log(`  carol on ${carol.reactor.name}`);
  carol.send("/nick carol");
  await carol.waitLine("* you are now carol");
  carol.send(`/join ${ROOM}`);
  await carol.waitLine(new RegExp(`^\\* you joined ${ROOM} \\(`));
  for (const page of [ctx.alice, ctx.bob]) {
    await waitLine(page, `* carol joined ${ROOM}`, "system");
    await waitMembers(page, ["alice", "bob", "carol"]);
  }
});

step("lines cross the reactors every way", async () => {
  const { alice, bob, carol } = ctx;
  await say(alice, "hello from alice");
  await waitLine(bob, `[${ROOM}] alice: hello from alice`, "message");
  await carol.waitLine(`[${ROOM}] alice: hello from alice`);
  await say(bob, "hello from bob");
  await waitLine(alice, `[${ROOM}] bob: hello from bob`, "message");
  await carol.waitLine(`[${ROOM}] bob: hello from bob`);
  carol.send("hello from nc");
  await waitLine(alice, `[${ROOM}] carol: hello from nc`, "message");
  await waitLine(bob, `[${ROOM}] carol: hello from nc`, "message");
  await shot(alice, "haproxy-1-alice");
  await shot(bob, "haproxy-1-bob");
});

step("a reactor's /dashboard shows its bus up and lines crossing it", async () => {
  const dash = await newPage("dashboard");
  await dash.goto(`${HTTP}/dashboard`);
  await dash.waitForFunction(() => document.body.dataset.bus === "up", null, { timeout: 10000 });
  const about = await dash.evaluate(() => document.getElementById("about").textContent);
  if (!/ · bus up, round trip \d+\.\d ms$/.test(about)) throw new Error(`about line: ${about}`);
  // The bus chart is shown, and its counters are read (the lines above
  // went through the bus on every reactor).
  const shown = await dash.evaluate(() =>
    [...document.querySelectorAll("section")].some((s) => !s.hidden && /Chat bus/.test(s.textContent)));
  if (!shown) throw new Error("no bus chart on the dashboard");
  await dash.waitForFunction(() => {
    const b = document.querySelector('b[data-key="bus_published"]');
    return b && b.dataset.value !== "";
  }, null, { timeout: 10000 });
  await shot(dash, "haproxy-dashboard");
  await dash.close();
});

step("SIGKILL the reactor of one page: it shows the loss", async () => {
  // The page whose reactor serves no one else: alice's, unless carol is
  // there too, then bob's (the pages are on two different reactors).
  const [moved, stays] = ctx.carol.reactor === ctx.alice.reactor ? [ctx.bob, ctx.alice] : [ctx.alice, ctx.bob];
  Object.assign(ctx, { moved, stays, victim: moved.reactor, nick: moved.label });
  ctx.survivors = REACTORS.filter((r) => r !== ctx.victim);
  console.log(`  killing ${ctx.victim.name} (pid ${ctx.victim.pid}), which serves ${moved.label}`);
  ctx.logBefore = (await logOf(moved)).length;
  ctx.killedAt = Date.now();
  process.kill(ctx.victim.pid, "SIGKILL");
  const lost = waitLines(moved, "^\\* disconnected \\(connection lost\\); reconnecting in ", 1, "system")
    .then(() => Date.now() - ctx.killedAt);
  lost.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
  // Before a health check notices, a request HAProxy sends to the dead
  // reactor is refused there and retried on another ("redispatch").
  for (let i = 0; i < 6; i++) {
    const res = await fetch(`${HTTP}/chat`);
    if (res.status !== 200) throw new Error(`GET /chat right after the kill: ${res.status}`);
    await res.arrayBuffer();
  }
  ctx.redispatched = (await haproxyCsv()).find((f) => f.pxname === "reactors_http" && f.svname === ctx.victim.name).wredis;
  ctx.lostMs = await lost;
  console.log(`  6 GET /chat right after the kill: all 200, ${ctx.redispatched} of them redispatched from ${ctx.victim.name}`);
  await shot(moved, `haproxy-2-${moved.label}-disconnected`);
});

step("the page reconnects through HAProxy to another reactor, into the room", async () => {
  const { moved, nick } = ctx;
  await waitState(moved, "online", 20000);
  await waitLines(moved, WELCOME.source, 2, "system");
  await waitLines(moved, `^\\* you joined ${ROOM} \\(`, 2, "system");
  ctx.backMs = Date.now() - ctx.killedAt;
  moved.reactor = await reactorOfPage(moved);
  if (!ctx.survivors.includes(moved.reactor)) throw new Error(`${nick} came back on ${moved.reactor.name}`);
  const room = await moved.textContent("#room-name");
  if (room !== ROOM) throw new Error(`${nick}: the page names the room ${room}, want ${ROOM}`);
  // The nick: taken again at once if the dead reactor's lease had lapsed,
  // else refused (the dead reactor still holds it) and the page goes on
  // under its default nick.
  const after = (await logOf(moved)).slice(ctx.logBefore).map((l) => l.line);
  ctx.guest = WELCOME.exec(after.find((l) => WELCOME.test(l)))[1];
  const want = [`* you are now ${nick}`, `ERROR nick ${nick} is taken`];
  await until(async () => (await logOf(moved)).slice(ctx.logBefore).some((l) => want.includes(l.line)),
    WAIT_MS, `${nick}: neither "${want[0]}" nor "${want[1]}" after the reconnect (${JSON.stringify(after)})`);
  ctx.current = await nickOf(moved);
  ctx.refused = ctx.current !== nick;
  const s = await Promise.all(ctx.survivors.map(reactorStats));
  const ws = s.reduce((a, x) => a + x.open_ws, 0);
  if (ws !== 2) throw new Error(`open_ws on ${ctx.survivors.map((r) => r.name)}: ${s.map((x) => x.open_ws)}, want 2 in all`);
  console.log(`  ${nick}: connection lost after ${ctx.lostMs} ms, back in ${ROOM} on ${moved.reactor.name} ` +
    `after ${ctx.backMs} ms as ${ctx.current}${ctx.refused ? ` (nick ${nick} still held by ${ctx.victim.name})` : ""}`);
  await shot(moved, `haproxy-3-${nick}-reconnected`);
});

step("after the move, lines go both ways between it and the others", async () => {
  const { moved, stays, carol, current, guest } = ctx;
  // It joins under its new reactor's default nick, then (if the nick was
  // free again) takes its own.
  await waitLine(stays, `* ${guest} joined ${ROOM}`, "system");
  await carol.waitLine(`* ${guest} joined ${ROOM}`);
  if (current !== guest) await carol.waitLine(`* ${guest} is now ${current}`);
  await say(moved, `back on ${moved.reactor.name}`);
  await waitLine(stays, `[${ROOM}] ${current}: back on ${moved.reactor.name}`, "message");
  await carol.waitLine(`[${ROOM}] ${current}: back on ${moved.reactor.name}`);
  await say(stays, `welcome back ${current}`);
  await waitLine(moved, `[${ROOM}] ${stays.label}: welcome back ${current}`, "message");
  carol.send("nc still here");
  await waitLine(moved, `[${ROOM}] carol: nc still here`, "message");
});

step("the nick comes back once the dead reactor's lease lapses", async () => {
  const { moved, stays, carol, nick } = ctx;
  if (ctx.refused) {
    // What a user would do: ask again. Each try waits for its answer;
    // the lease bounds how long the refusals can last.
    const count = async (line) => (await logOf(moved)).filter((l) => l.line === line).length;
    const yes = `* you are now ${nick}`, no = `ERROR nick ${nick} is taken`;
    const had = await count(yes);
    let tries = 0;
    await until(async () => {
      const refusals = await count(no);
      tries += 1;
      await say(moved, `/nick ${nick}`);
      await until(async () => (await count(yes)) > had || (await count(no)) > refusals,
        WAIT_MS, `${nick}: no answer to /nick`, 50);
      return (await count(yes)) > had;
    }, LEASE_MS + WAIT_MS, `${nick}: nick not given back`, 250);
    console.log(`  ${nick} retook the nick after ${Date.now() - ctx.killedAt} ms from the kill (${tries} /nick tries; lease ${LEASE_MS} ms)`);
    await waitLine(stays, `* ${ctx.current} is now ${nick}`, "system");
    await carol.waitLine(`* ${ctx.current} is now ${nick}`);
  }
  // The dead reactor's members are gone from /who everywhere. The page
  // does not ask for the list again after its own rename, so its user
  // does, with /who.
  await waitMembers(stays, ["alice", "bob", "carol"]);
  await say(moved, "/who");
  await waitMembers(moved, ["alice", "bob", "carol"]);
  const from = carol.lines.length;
  carol.send("/who");
  const who = await carol.waitLine(new RegExp(`^\\* ${ROOM}: `), WAIT_MS, from);
  const listed = who.slice(`* ${ROOM}: `.length).split(", ").sort().join(",");
  if (listed !== "alice,bob,carol") throw new Error(`carol's /who: ${who}`);
  await say(moved, `${nick} again`);
  await waitLine(stays, `[${ROOM}] ${nick}: ${nick} again`, "message");
  await carol.waitLine(`[${ROOM}] ${nick}: ${nick} again`);
  await shot(moved, `haproxy-4-${nick}-nick-back`);
  await shot(stays, `haproxy-4-${stays.label}`);
});

step("HAProxy marks the killed reactor down, the others stay up", async () => {
  await waitHaproxy([ctx.victim.name], "DOWN", WAIT_MS);
  const st = await haproxyStatus();
  for (const r of ctx.survivors) {
    for (const b of ["reactors_http", "reactors_chat"]) {
      if (st[`${b}/${r.name}`] !== "UP") throw new Error(`HAProxy: ${b}/${r.name} is ${st[`${b}/${r.name}`]}`);
    }
  }
  const page = await ctx.browser.newPage();
  await page.goto(`${STATS}/`);
  await shot(page, "haproxy-5-stats");
  await page.close();
});

step("the pages reached only HAProxy; no script errors; carol never dropped", async () => {
  if (offOrigin.length) throw new Error(`requests elsewhere: ${offOrigin.join(", ")}`);
  if (pageErrors.length) throw new Error(`uncaught errors in the pages: ${pageErrors.join("; ")}`);
  if (ctx.carol.closed) throw new Error("carol's connection closed");
  const stayWelcomes = (await logOf(ctx.stays)).filter((l) => WELCOME.test(l.line)).length;
  if (stayWelcomes !== 1) throw new Error(`${ctx.stays.label} reconnected (${stayWelcomes} welcomes)`);
});

// ---- run -------------------------------------------------------------------------

async function main() {
  const t0 = Date.now();
  ctx.browser = await chromium.launchPersistentContext(path.join(tmp, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1000, height: 700 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  ctx.browser.setDefaultTimeout(WAIT_MS);
  console.log(`chromium ${ctx.browser.browser()?.version() ?? ""}, HAProxy ${HTTP} chat :${LB.chat}, ` +
    `reactors ${REACTORS.map((r) => `${r.name} :${r.http}/:${r.chat}`).join(", ")}`);
  let passed = 0, failed = 0;
  for (const [i, { name, fn }] of steps.entries()) {
    const ts = Date.now();
    try {
      await fn();
      passed += 1;
      console.log(`PASS ${name} (${Date.now() - ts} ms)`);
    } catch (e) {
      failed += 1;
      console.log(`FAIL ${name}: ${e.message}`);
      for (const page of ctx.browser.pages()) {
        await shot(page, `haproxy-failed-${i}-${page.label || "page"}`).catch(() => {});
      }
      break;
    }
  }
  const skipped = steps.length - passed - failed;
  if (skipped) console.log(`(${skipped} later steps not run)`);
  ctx.carol?.close();
  console.log(`screenshots: ${ARTIFACTS} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  console.log(`${passed} passed, ${failed + skipped} failed`);
  return failed + skipped ? 1 : 0;
}

let status = 1;
try {
  status = await main();
} catch (e) {
  console.log(`FAIL setup: ${e.stack || e}`);
} finally {
  if (ctx.browser) await ctx.browser.close().catch(() => {});
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(status);
