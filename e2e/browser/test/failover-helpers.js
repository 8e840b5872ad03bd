// failover-helpers.js: what failover.test.js, failover-websocket.test.js and
// the report-nginx*.test.js files share: a cluster of the report's
// deployment (section 3.1) - the Go binary as primary and backup on one
// PostgreSQL (a throw-away e2e_fo_* database), nginx in front with the
// repository's nginx.conf (or test/report-nginx.conf) rewritten the way
// test/failover/cluster_test.go does - and the failover story a browser
// lives through when the primary is killed. Not a test file itself.
//
// Needs CHATD_BIN (run.sh sets it), nginx (NGINX_BIN, PATH or /usr/sbin;
// run.sh runs scripts/ensure-nginx.sh) and PostgreSQL on 127.0.0.1:5432
// (user postgres, trust; reached with psql). Without them the tests skip with
// the reason (`T.skip`), and under CI=true they fail instead (`mustRun`).
// Every process started here is stopped and every database dropped by
// closeAll() (each test file's after hook), and also when the run is cut
// short (SIGTERM from run.sh's `timeout 600`, SIGINT, exit).
'use strict';

const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { freePort } = require('../free-port');

const REPO = path.resolve(__dirname, '..', '..', '..');
const BIN = process.env.CHATD_BIN;
const PG = 'postgres://postgres@127.0.0.1:5432';
const CI = process.env.CI === 'true';
const RECOVER_LIMIT_MS = 10000; // the target is 2 s; asserted generously

function psql(db, sql) {
  return spawnSync('psql', [`${PG}/${db}`, '-v', 'ON_ERROR_STOP=1', '-tAqc', sql], { encoding: 'utf8', timeout: 15000 });
}

function findNginx() {
  const candidates = [process.env.NGINX_BIN, '/usr/sbin/nginx', '/usr/local/sbin/nginx'];
  for (const dir of (process.env.PATH || '').split(':')) if (dir) candidates.push(path.join(dir, 'nginx'));
  for (const c of candidates) {
    if (!c) continue;
    try { fs.accessSync(c, fs.constants.X_OK); return c; } catch { /* next */ }
  }
  return null;
}

const NGINX = findNginx();

// why returns the reason to skip, or false.
function why() {
  if (!BIN) return 'CHATD_BIN not set (run the suite with run.sh)';
  if (!NGINX) return 'nginx is not installed (scripts/ensure-nginx.sh installs it)';
  const r = psql('postgres', 'SELECT 1');
  if (r.error && r.error.code === 'ENOENT') return 'psql is not installed (needed to make a throw-away database)';
  if (r.status !== 0) return `no PostgreSQL at ${PG} (${(r.stderr || '').trim().split('\n')[0]})`;
  return false;
}

// Under CI=true nothing is skipped: each test fails with the reason instead.
const reason = why();
if (reason) console.log(`# failover: ${CI ? 'FAILS under CI=true' : 'skipped'}: ${reason}`);
const T = { timeout: 60000, skip: reason && !CI ? reason : false };
function mustRun() {
  if (reason) throw new Error('the failover test cannot run under CI=true: ' + reason);
}

// ---------- the cluster: primary + backup + nginx ----------

const usedPorts = [Number(new URL(h.BASE_URL).port)];
const clusters = [];

function alive(p) { return !!p && p.exitCode === null && p.signalCode === null; }

function tail(file, n = 30) {
  try { return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n'); } catch { return '(no log)'; }
}

class Cluster {
  // env(ports) gives extra environment for both chat servers; conf is the
  // nginx configuration to run, relative to the repository (nginx.conf, or
  // test/report-nginx.conf for the report's own block).
  constructor(env = () => ({}), conf = 'nginx.conf') {
    this.env = env;
    this.conf = conf;
    this.db = 'e2e_fo_' + crypto.randomBytes(5).toString('hex');
    this.dbMade = false;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-e2e-fo-'));
    fs.chmodSync(this.dir, 0o755); // nginx workers (nobody) walk into the prefix
    this.procs = {};
    this.ports = {};
    clusters.push(this);
  }

  get url() { return `http://127.0.0.1:${this.ports.nginx}/`; }
  logFile(name) { return path.join(this.dir, name + '.log'); }

  async start() {
    const made = psql('postgres', `CREATE DATABASE ${this.db}`);
    if (made.status !== 0) throw new Error('CREATE DATABASE: ' + made.stderr);
    this.dbMade = true;
    for (const name of ['primary', 'backup', 'nginx']) {
      this.ports[name] = await freePort(usedPorts);
      usedPorts.push(this.ports[name]);
    }
    await this.startChat('primary');
    await this.startChat('backup');
    await this.startNginx();
  }

  async waitHealthy(url, name) {
    const proc = this.procs[name];
    const deadline = Date.now() + 20000;
    while (Date.now() < deadline && alive(proc)) {
      try {
        const res = await fetch(url);
        if (res.ok) return;
      } catch { /* not up yet */ }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${name} did not answer ${url}:\n${tail(this.logFile(name))}`);
  }

  // startChat starts one chat server and waits until it is up. Like nginx
  // (see startNginx), it counts as up only when its own log says it is
  // listening and it still runs: a health check alone may be answered by
  // another run's server that took the port first. Before nginx runs (whose
  // configuration names the ports), a lost port is chosen again.
  async startChat(name) {
    for (let attempt = 1; ; attempt++) {
      const logFrom = fs.existsSync(this.logFile(name)) ? fs.statSync(this.logFile(name)).size : 0;
      try {
        await this.startChatOnce(name, logFrom);
        return;
      } catch (err) {
        const said = fs.readFileSync(this.logFile(name), 'utf8').slice(logFrom);
        if (attempt >= 3 || this.procs.nginx || !/address already in use/i.test(said)) throw err;
        console.log(`# ${name} lost port ${this.ports[name]} to another process; trying another`);
        this.ports[name] = await freePort(usedPorts);
        usedPorts.push(this.ports[name]);
      }
    }
  }

  async startChatOnce(name, logFrom) {
    const log = fs.openSync(this.logFile(name), 'a');
    const proc = spawn(BIN, [], {
      env: {
        ...process.env,
        DATABASE_URL: `${PG}/${this.db}?sslmode=disable`,
        PORT: String(this.ports[name]), ADDR: '127.0.0.1', BCRYPT_COST: '4',
        ...this.env(this.ports),
      },
      stdio: ['ignore', log, log],
    });
    this.procs[name] = proc;
    fs.closeSync(log);
    const listening = () => fs.readFileSync(this.logFile(name), 'utf8').slice(logFrom).match(/msg=listening|"msg":"listening"/);
    const deadline = Date.now() + 20000;
    while (alive(proc) && !listening() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (!alive(proc) || !listening()) throw new Error(`${name} did not start:\n${tail(this.logFile(name))}`);
    await this.waitHealthy(`http://127.0.0.1:${this.ports[name]}/healthz`, name);
  }

  // startNginx runs nginx with the repository's nginx.conf (or this.conf),
  // rewritten exactly as test/failover/cluster_test.go does: the ports only.
  // Its port was free when chosen, but another run on this machine can take
  // it before nginx binds (the chat servers start in between): then nginx
  // gives up, and a health check on that port would be answered by someone
  // else's server. So nginx counts as up only once it has written its pid
  // file (after binding) and still runs; a lost port is chosen again.
  async startNginx() {
    for (let attempt = 1; ; attempt++) {
      const logFrom = fs.existsSync(this.logFile('nginx')) ? fs.statSync(this.logFile('nginx')).size : 0;
      try {
        await this.startNginxOnce();
        return;
      } catch (err) {
        const said = fs.readFileSync(this.logFile('nginx'), 'utf8').slice(logFrom);
        if (attempt >= 3 || !/Address already in use/.test(said)) throw err;
        console.log(`# nginx lost port ${this.ports.nginx} to another process; trying another`);
        this.ports.nginx = await freePort(usedPorts);
        usedPorts.push(this.ports.nginx);
      }
    }
  }

  async startNginxOnce() {
    let conf = fs.readFileSync(path.join(REPO, this.conf), 'utf8');
    for (const [from, to] of [
      ['127.0.0.1:3000', `127.0.0.1:${this.ports.primary}`],
      ['127.0.0.1:3001', `127.0.0.1:${this.ports.backup}`],
      ['listen 80;', `listen 127.0.0.1:${this.ports.nginx};`],
    ]) {
      assert.ok(conf.includes(from), `${this.conf} has no ${from} to rewrite`);
      conf = conf.split(from).join(to);
    }
    const prefix = path.join(this.dir, 'nginx');
    const pidFile = path.join(prefix, 'nginx.pid');
    fs.mkdirSync(path.join(prefix, 'logs'), { recursive: true });
    fs.chmodSync(prefix, 0o777); // workers run as nobody when started by root
    fs.writeFileSync(path.join(prefix, 'nginx.conf'), conf);
    fs.rmSync(pidFile, { force: true });
    const log = fs.openSync(this.logFile('nginx'), 'a');
    const proc = spawn(NGINX, ['-p', prefix, '-c', path.join(prefix, 'nginx.conf'),
      '-g', `daemon off; pid ${pidFile}; error_log ${prefix}/error.log;`], {
      stdio: ['ignore', log, log],
      detached: true, // its own process group, so the workers can be reached too
    });
    this.procs.nginx = proc;
    fs.closeSync(log);
    const deadline = Date.now() + 20000;
    while (alive(proc) && !fs.existsSync(pidFile) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (!alive(proc) || !fs.existsSync(pidFile)) {
      throw new Error(`nginx did not start on port ${this.ports.nginx}:\n${tail(this.logFile('nginx'))}`);
    }
    await this.waitHealthy(`http://127.0.0.1:${this.ports.nginx}/healthz`, 'nginx');
    if (!alive(proc)) throw new Error(`nginx exited after start-up:\n${tail(this.logFile('nginx'))}`);
  }

  kill(name) { this.procs[name].kill('SIGKILL'); }

  // stopOne ends a process and waits for it: the chat servers with SIGKILL
  // (throw-away, and SIGTERM would lame-duck for LAME_DUCK, 3 s), nginx with
  // SIGTERM so that the master reaps its workers (see cluster_test.go).
  async stopOne(name) {
    const p = this.procs[name];
    if (!alive(p)) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill(name === 'nginx' ? 'SIGTERM' : 'SIGKILL');
    // (the group: nginx runs detached, master and workers in their own group)
    const timer = setTimeout(() => {
      try { if (name === 'nginx') process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ }
    }, 3000);
    await exited;
    clearTimeout(timer);
  }

  async stop() {
    await this.stopOne('nginx');
    await this.stopOne('backup');
    await this.stopOne('primary');
    this.dropDB();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  dropDB() {
    if (!this.dbMade) return;
    this.dbMade = false;
    const r = psql('postgres', `DROP DATABASE IF EXISTS ${this.db} WITH (FORCE)`);
    if (r.status !== 0) console.log(`# failover: DROP DATABASE ${this.db} failed: ${r.stderr}`);
  }

  // emergency is the synchronous last resort (process exit, signals).
  emergency() {
    for (const [name, p] of Object.entries(this.procs)) {
      if (!alive(p)) continue;
      try { if (name === 'nginx') process.kill(-p.pid, 'SIGTERM'); else p.kill('SIGKILL'); } catch { /* gone */ }
    }
    this.dropDB();
    try { fs.rmSync(this.dir, { recursive: true, force: true }); } catch { /* nginx may still be writing */ }
  }

  printLogs() {
    for (const name of ['primary', 'backup', 'nginx']) console.log(`# --- ${name} log ---\n${tail(this.logFile(name))}`);
    console.log(`# --- nginx error.log ---\n${tail(path.join(this.dir, 'nginx', 'error.log'), 20)}`);
  }

  // access counts what nginx's access log saw of Socket.IO, by method,
  // transport and status (101: a WebSocket upgrade).
  access() {
    let lines;
    try { lines = fs.readFileSync(path.join(this.dir, 'nginx', 'logs', 'access.log'), 'utf8').trim().split('\n'); } catch { return {}; }
    const counts = {};
    for (const l of lines) {
      const m = l.match(/"(\w+) \/socket\.io\/\?[^"]*transport=(\w+)[^"]*" (\d+)/);
      if (!m) continue;
      const k = `${m[1]} ${m[2]} ${m[3]}`;
      counts[k] = (counts[k] || 0) + 1;
    }
    return counts;
  }
}

// Nothing may outlive the test, the databases neither: `timeout 600` in
// run.sh sends SIGTERM to the whole process group, Ctrl-C SIGINT.
process.on('exit', () => { for (const c of clusters) c.emergency(); });
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => { for (const c of clusters) c.emergency(); process.exit(sig === 'SIGINT' ? 130 : 143); });
}

let browser = null;
async function getBrowser() {
  browser = browser || await h.launch();
  return browser;
}

// closeAll is each test file's after hook.
async function closeAll() {
  if (browser) await browser.close().catch(() => {});
  browser = null;
  for (const c of clusters) await c.stop();
}

// ---------- watching the pages ----------

// openTracked opens the page in a new context with everything this test
// watches attached before the first request: dialogs and errors, every
// finished HTTP request with its transferred size (playwright's
// request.sizes()), every WebSocket (frames, close), and every Socket.IO
// event the page sends (WebSocket frames and long-polling POST bodies).
async function openTracked(url) {
  const context = await (await getBrowser()).newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  const o = { context, page, problems: { dialogs: [], errors: [] }, requests: [], sockets: [], sent: [] };
  page.on('dialog', (d) => { o.problems.dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  page.on('pageerror', (e) => o.problems.errors.push(String(e)));
  const sizes = [];
  page.on('requestfinished', (req) => {
    sizes.push(req.sizes().then((s) => o.requests.push({
      t: Date.now(), url: req.url(), method: req.method(),
      bytes: s.responseBodySize + s.responseHeadersSize, body: s.responseBodySize,
    })).catch(() => {}));
  });
  o.settled = () => Promise.all(sizes);
  const noteSent = (payload) => {
    const m = String(payload).match(/\["([^"]+)"/g);
    if (m) for (const e of m) o.sent.push({ t: Date.now(), event: e.slice(2, -1) });
  };
  page.on('websocket', (ws) => {
    const s = { opened: Date.now(), frames: 0, bytes: 0, closed: 0 };
    o.sockets.push(s);
    ws.on('framereceived', (f) => { s.frames++; s.bytes += Buffer.byteLength(String(f.payload)); });
    ws.on('framesent', (f) => noteSent(f.payload));
    ws.on('close', () => { s.closed = s.closed || Date.now(); });
    ws.on('socketerror', () => { s.closed = s.closed || Date.now(); });
  });
  page.on('request', (r) => { if (r.method() === 'POST' && r.url().includes('/socket.io/')) noteSent(r.postData() || ''); });
  // onWebSocket(t): was a WebSocket carrying traffic open at time t?
  o.onWebSocket = (t) => o.sockets.some((s) => s.frames > 0 && s.opened <= t && (!s.closed || s.closed > t));
  o.t0 = Date.now();
  await page.goto(url);
  await page.locator('#auth').waitFor({ state: 'visible' });
  o.tCard = Date.now();
  return o;
}

// record installs an observer on the page that notes, with wall-clock
// times (Date.now(), the same clock as this process), every change of the
// connection status, every message bubble carrying `text` that is added or
// removed (and whether it was pending), Enter in the composer, and the
// sign-in card appearing. Read back with recorded().
function record(page, text) {
  return page.evaluate((text) => {
    const events = [];
    window.__fo = events;
    const status = document.querySelector('#chat .status');
    const statusNow = () => status.dataset.state + ' | ' + status.textContent;
    const rec = (type, detail) => events.push({ t: Date.now(), type, detail, status: statusNow() });
    new MutationObserver(() => rec('status', statusNow()))
      .observe(status, { attributes: true, childList: true, characterData: true, subtree: true });
    const textOf = (n) => (n.querySelector && n.querySelector('.text') || {}).textContent;
    new MutationObserver((muts) => {
      for (const m of muts) {
        for (const [list, what] of [[m.addedNodes, 'added'], [m.removedNodes, 'removed']]) {
          for (const n of list) {
            if (n.nodeType === 1 && n.classList.contains('msg') && textOf(n) === text) {
              rec(what, n.classList.contains('pending') ? 'pending' : 'confirmed');
            }
          }
        }
      }
    }).observe(document.querySelector('#messages'), { childList: true });
    const auth = document.querySelector('#auth');
    // (the page re-sets `hidden` on every `session`: only a shown card counts)
    new MutationObserver(() => { if (!auth.hidden) rec('auth', 'shown'); })
      .observe(auth, { attributes: true, attributeFilter: ['hidden'] });
    document.querySelector('#text').addEventListener('keydown', (e) => {
      if (e.key === 'Enter') rec('enter', document.querySelector('#text').value);
    }, true);
  }, text);
}

function recorded(page) { return page.evaluate(() => window.__fo.slice()); }

function kb(n) { return (n / 1024).toFixed(1) + ' KiB'; }

// measureFirstLoad prints what A's first load through nginx weighed and how
// long it took, up to the chat after registering, and a reload with the
// stored session. Measured, not asserted.
async function measureFirstLoad(A, me) {
  const tSubmit = Date.now();
  await h.register(A.page, me);
  const tChat = Date.now();
  await A.page.locator('#chat .status[data-state="connected"]').waitFor();
  await h.onlineUser(A.page, me).waitFor();
  const tReady = Date.now();
  const perf = await A.page.evaluate(() => {
    const n = performance.getEntriesByType('navigation')[0];
    const res = performance.getEntriesByType('resource').filter((r) => !r.name.includes('/socket.io/?'));
    return {
      responseEnd: Math.round(n.responseEnd), domContentLoaded: Math.round(n.domContentLoadedEventEnd),
      load: Math.round(n.loadEventEnd),
      transfer: n.transferSize + res.reduce((s, r) => s + (r.transferSize || 0), 0),
      decoded: n.decodedBodySize + res.reduce((s, r) => s + (r.decodedBodySize || 0), 0),
    };
  });
  await A.settled();
  const isAsset = (r) => !r.url.includes('/socket.io/?') && r.t <= tChat;
  const assets = A.requests.filter(isAsset);
  const assetBytes = assets.reduce((s, r) => s + r.bytes, 0);
  const polls = A.requests.filter((r) => !isAsset(r) && r.t <= tChat);
  const pollBytes = polls.reduce((s, r) => s + r.bytes, 0);
  const wsFrames = A.sockets.reduce((s, w) => s + w.frames, 0);
  const wsBytes = A.sockets.reduce((s, w) => s + w.bytes, 0);
  console.log('# first load through nginx on 127.0.0.1, empty cache (bytes = response headers + body as transferred):');
  for (const r of assets) {
    console.log(`#   ${r.method} ${new URL(r.url).pathname.padEnd(28)} ${kb(r.bytes).padStart(9)}  (body ${r.body} B)`);
  }
  console.log(`#   page weight: ${assets.length} responses, ${kb(assetBytes)} transferred`
    + ` (performance API: transferSize ${kb(perf.transfer)}, decoded ${kb(perf.decoded)});`
    + ` Socket.IO until the chat showed: ${polls.length} polling responses ${kb(pollBytes)},`
    + ` ${wsFrames} WebSocket frames ${kb(wsBytes)}`);
  console.log(`#   navigation -> sign-in card ${A.tCard - A.t0} ms (responseEnd ${perf.responseEnd} ms,`
    + ` DOMContentLoaded ${perf.domContentLoaded} ms, load ${perf.load} ms);`
    + ` register+login submitted -> chat visible ${tChat - tSubmit} ms (BCRYPT_COST=4);`
    + ` navigation -> chat visible ${tChat - A.t0} ms, -> connected and listed online ${tReady - A.t0} ms`);
  const tReload = Date.now();
  await A.page.reload();
  await A.page.locator('#chat').waitFor({ state: 'visible' });
  const tReloadChat = Date.now();
  await A.page.locator('#chat .status[data-state="connected"]').waitFor();
  await h.onlineUser(A.page, me).waitFor();
  console.log(`#   reload with the stored session (no password) -> chat visible ${tReloadChat - tReload} ms,`
    + ` -> connected and listed online ${Date.now() - tReload} ms`);
}

// holdHandshakes makes the page's new Socket.IO handshakes wait until
// release(), so that what a test does right after killing the primary
// happens while the page is still reconnecting, however slow this machine.
// The client waits 0.5..1.5 s before its first attempt, which is plenty; if
// this process is slower than that, the attempts (HTTP, every one starts
// with a polling handshake) wait here. Only new handshakes (no sid) are
// held: what the dead session still sends must fail as it would. release()
// lets them go and resolves with the longest wait, in ms.
async function holdHandshakes(page) {
  let open, held = 0;
  const released = new Promise((r) => { open = r; });
  const isSocketIO = (u) => u.pathname === '/socket.io/';
  const hold = async (route) => {
    if (!new URL(route.request().url()).searchParams.has('sid')) {
      const t = Date.now();
      await released;
      held = Math.max(held, Date.now() - t);
    }
    await route.continue().catch(() => {});
  };
  await page.route(isSocketIO, hold);
  return {
    async release() {
      open();
      await page.unroute(isSocketIO, hold);
      return held;
    },
  };
}

// connectedOrWhy waits for the sign-in card to say "Connected"; if it never
// does, it fails with what the server answers a page's Socket.IO handshake
// through this nginx (the origin check refused it: 403 "origin not allowed").
async function connectedOrWhy(cluster, page) {
  try {
    await page.locator('#auth .status[data-state="connected"]').waitFor({ timeout: 15000 });
  } catch (err) {
    const origin = new URL(cluster.url).origin;
    const res = await fetch(cluster.url + 'socket.io/?EIO=4&transport=polling', { headers: { Origin: origin } })
      .then(async (r) => `${r.status} ${await r.text()}`, (e) => String(e));
    throw new Error(`the page never connected behind the report's nginx block; a handshake with Origin ${origin}`
      + ` gets: ${res.slice(0, 200)} (403 "origin not allowed": the server's Origin check refuses its own page`
      + ` when nginx passes Host "backend", see server/guard.go)\n${err.message}`);
  }
}

// withCluster runs body(cluster, open, opened) on a started cluster with
// the nginx configuration conf (relative to the repository): open() opens
// a tracked page (openTracked) on it and waits until it is connected
// (connectedOrWhy); opened lists those pages, all closed at the end. After
// body, no page still listed may have shown a dialog or an uncaught error,
// and the cluster is stopped. On a failure the logs of the cluster are
// printed, then whatever onFailure(opened) prints.
async function withCluster(conf, body, onFailure) {
  const cluster = new Cluster(() => ({}), conf);
  const opened = [];
  try {
    await cluster.start();
    const open = async () => {
      const o = await openTracked(cluster.url);
      opened.push(o);
      await connectedOrWhy(cluster, o.page);
      return o;
    };
    await body(cluster, open, opened);
    for (const o of opened) assert.deepEqual(o.problems, { dialogs: [], errors: [] }, 'no dialog, no uncaught error');
    await cluster.stop();
  } catch (err) {
    cluster.printLogs();
    if (onFailure) await onFailure(opened).catch((e) => console.log(`# (could not say more: ${e})`));
    throw err;
  } finally {
    for (const o of opened) await o.context.close().catch(() => {});
  }
}

// ---------- the scenario ----------

// failover runs the whole story on a started cluster and returns the
// measured times. opts.measure: print the first-load numbers; opts.shots:
// save the two screenshots; opts.webSocket: require that both pages were on
// a WebSocket when the primary died and are on one again afterwards.
async function failover(cluster, label, opts = {}) {
  const me = h.uniqueName('foa');
  const friend = h.uniqueName('fob');
  const text = 'sent during the failover ' + crypto.randomBytes(3).toString('hex');
  const opened = [];
  try {
    const A = await openTracked(cluster.url);
    opened.push(A);
    if (opts.measure) await measureFirstLoad(A, me);
    else await h.register(A.page, me);
    const B = await openTracked(cluster.url);
    opened.push(B);
    await h.register(B.page, friend);
    await h.onlineUser(A.page, friend).waitFor();
    await h.onlineUser(B.page, me).waitFor();
    await h.send(B.page, 'hello before the failover');
    await h.confirmed(A.page, 'hello before the failover', friend).waitFor();
    for (const p of [A.page, B.page]) await p.locator('#chat .status[data-state="connected"]').waitFor();
    if (opts.webSocket) {
      for (const [who, o] of [['A', A], ['B', B]]) {
        const deadline = Date.now() + 5000;
        while (!o.onWebSocket(Date.now()) && Date.now() < deadline) await o.page.waitForTimeout(100);
        assert.ok(o.onWebSocket(Date.now()), `${who} upgraded to a WebSocket through nginx`);
      }
    }

    // ----- 1. a message in the composer; the primary dies -----
    await A.page.fill('#text', text);
    await record(A.page, text);
    await record(B.page, text);
    // Safety net for a slow machine: Enter must land while A reconnects.
    const gate = await holdHandshakes(A.page);
    const tKill = Date.now();
    cluster.kill('primary');
    await A.page.locator('#chat .status[data-state="reconnecting"]').waitFor({ timeout: 5000 });
    await A.page.press('#text', 'Enter');
    const held = await gate.release();
    if (held > 5) console.log(`# ${label}: NOTE: A's reconnection waited ${held} ms for Enter; its times include that`);
    let shot, shotStart, shotEnd;
    if (opts.shots) {
      shotStart = Date.now();
      shot = await h.screenshot(A.page, 'failover-reconnecting');
      shotEnd = Date.now();
    }

    // ----- 2. back within 10 s, still logged in, the message once -----
    await A.page.locator('#chat .status[data-state="connected"]').waitFor({ timeout: RECOVER_LIMIT_MS });
    await h.confirmed(A.page, text, me).waitFor({ timeout: RECOVER_LIMIT_MS });
    await h.confirmed(B.page, text, me).waitFor({ timeout: RECOVER_LIMIT_MS });
    await h.pending(A.page).first().waitFor({ state: 'detached', timeout: 5000 });
    // Time for a duplicate (a re-sent outbox entry, a late broadcast) to show.
    await A.page.waitForTimeout(1500);

    const evA = await recorded(A.page);
    const evB = await recorded(B.page);
    const timeline = (evs) => evs.map((e) => `+${e.t - tKill} ms ${e.type}: `
      + (e.type === 'status' ? e.detail : `${e.detail} [${e.status}]`)).join('\n#     ');
    console.log(`# ${label}: timeline after the kill, A:\n#     ${timeline(evA)}`);
    console.log(`# ${label}: timeline after the kill, B:\n#     ${timeline(evB)}`);
    const find = (evs, type, re) => evs.find((e) => e.type === type && re.test(e.detail));
    const reconnectingA = find(evA, 'status', /^reconnecting \| Reconnecting/);
    const connectedA = find(evA, 'status', /^connected \| Connected$/);
    const connectedB = find(evB, 'status', /^connected \| Connected$/);
    const enter = evA.find((e) => e.type === 'enter');
    const pendingA = find(evA, 'added', /^pending$/);
    const confirmedA = find(evA, 'added', /^confirmed$/);
    const confirmedB = find(evB, 'added', /^confirmed$/);

    assert.ok(reconnectingA, 'A showed "Reconnecting…"');
    assert.ok(enter && /^reconnecting \| Reconnecting/.test(enter.status),
      'Enter was pressed while A showed "Reconnecting…": ' + JSON.stringify(enter));
    assert.ok(pendingA && /^reconnecting \| Reconnecting/.test(pendingA.status), 'the message showed as pending while reconnecting: ' + JSON.stringify(pendingA));
    assert.ok(connectedA, 'A showed "Connected" again');
    assert.ok(confirmedB, 'B showed the message');
    const times = {
      reconnecting: reconnectingA.t - tKill,
      connectedA: connectedA.t - tKill,
      connectedB: connectedB ? connectedB.t - tKill : NaN,
      confirmedA: confirmedA ? confirmedA.t - tKill : NaN,
      visibleB: confirmedB.t - tKill,
    };
    console.log(`# ${label}: kill -> "Reconnecting" on A ${times.reconnecting} ms;`
      + ` kill -> "Connected" on A ${times.connectedA} ms (B ${times.connectedB} ms);`
      + ` kill -> message confirmed on A ${times.confirmedA} ms;`
      + ` kill -> message visible on B ${times.visibleB} ms (target 2000 ms, asserted <= ${RECOVER_LIMIT_MS} ms)`);
    assert.ok(times.connectedA <= RECOVER_LIMIT_MS, `"Connected" again only after ${times.connectedA} ms`);
    if (opts.shots) {
      console.log(`# ${label}: failover-reconnecting.png requested +${shotStart - tKill} ms after the kill,`
        + ` returned +${shotEnd - tKill} ms ("Connected" at +${times.connectedA} ms)`);
    }

    // Still logged in through the session token: the card never came back
    // and no `login`/`register` (a password) went out after the kill.
    for (const [who, o, evs, name] of [['A', A, evA, me], ['B', B, evB, friend]]) {
      assert.deepEqual(evs.filter((e) => e.type === 'auth'), [], `the sign-in card never showed on ${who}`);
      assert.equal(await o.page.isVisible('#chat'), true, `the chat is visible on ${who}`);
      assert.equal(await o.page.isVisible('#auth'), false, `no sign-in card on ${who}`);
      assert.equal(await o.page.inputValue('#password'), '', `no password typed on ${who}`);
      assert.equal(await o.page.textContent('#me-name'), name, `${who} signed in as before`);
      const logins = o.sent.filter((e) => e.t >= tKill && (e.event === 'login' || e.event === 'register'));
      assert.deepEqual(logins, [], `no login or register sent by ${who} after the kill`);
    }
    assert.ok(A.sent.some((e) => e.t >= tKill && e.event === 'send message'), 'the outbox sent the message');

    // Exactly once, on both pages and in the database; no pending marker.
    for (const [who, p] of [['A', A.page], ['B', B.page]]) {
      assert.equal(await h.message(p, text).count(), 1, `one bubble with the text on ${who}`);
      assert.equal(await h.confirmed(p, text, me).count(), 1, `confirmed once on ${who}`);
      assert.equal(await h.pending(p).count(), 0, `no pending marker on ${who}`);
      assert.equal(await h.message(p, 'hello before the failover', friend).count(), 1, `the earlier message once on ${who}`);
    }
    assert.equal(await A.page.evaluate(() => localStorage.getItem('chat.outbox')), null, 'the outbox is empty');
    const rows = psql(cluster.db, `SELECT count(*) FROM chat_history WHERE content = '${text}' AND username = '${me}'`);
    assert.equal(rows.stdout.trim(), '1', 'stored once ' + rows.stderr);

    // ----- 3. both online again, and only they -----
    await h.onlineUser(A.page, friend).waitFor({ timeout: 10000 });
    await h.onlineUser(B.page, me).waitFor({ timeout: 10000 });
    for (const [who, p] of [['A', A.page], ['B', B.page]]) {
      const names = await p.locator('#users .name').allTextContents();
      assert.deepEqual(names.slice().sort(), [me, friend].sort(), `online list on ${who} after the failover`);
    }

    if (opts.webSocket) {
      for (const [who, o] of [['A', A], ['B', B]]) {
        assert.ok(o.onWebSocket(tKill), `${who} was on a WebSocket when the primary died`);
        const deadline = Date.now() + 5000;
        const again = () => o.sockets.some((s) => s.opened > tKill && s.frames > 0 && !s.closed);
        while (!again() && Date.now() < deadline) await o.page.waitForTimeout(100);
        assert.ok(again(), `${who} is on a WebSocket again, on the backup`);
      }
    }
    const transport = (o) => (o.onWebSocket(tKill) ? 'WebSocket' : 'long-polling');
    console.log(`# ${label}: transport when the primary died: A ${transport(A)}, B ${transport(B)};`
      + ` nginx saw (method transport status): ${JSON.stringify(cluster.access())}`);

    // ----- 4. screenshots -----
    if (opts.shots) {
      const recovered = await h.screenshot(A.page, 'failover-recovered');
      for (const [name, s] of [['failover-reconnecting', shot], ['failover-recovered', recovered]]) {
        const stats = h.imageStats(s.buffer);
        assert.ok(h.looksStyled(stats), name + ' looks blank or unstyled: ' + JSON.stringify(stats));
      }
    }
    assert.equal(alive(cluster.procs.primary), false, 'the primary is dead');
    assert.equal(alive(cluster.procs.backup), true, 'the backup still runs');
    for (const o of opened) assert.deepEqual(o.problems, { dialogs: [], errors: [] }, 'no dialog, no uncaught error');
    return times;
  } catch (err) {
    cluster.printLogs();
    throw err;
  } finally {
    for (const o of opened) await o.context.close().catch(() => {});
  }
}

module.exports = {
  T, mustRun, Cluster, withCluster, failover, closeAll, openTracked, connectedOrWhy, holdHandshakes, alive, psql,
  RECOVER_LIMIT_MS,
};
