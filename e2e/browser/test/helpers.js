// helpers.js: shared pieces of the browser tests: launching Debian's
// Chromium through playwright-core, driving the sign-in card, reading what
// the page shows, and measuring screenshots.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { chromium } = require('playwright-core');
const { PNG } = require('pngjs');

const BASE_URL = process.env.BASE_URL || 'http://127.0.0.1:3101';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OUT_DIR = path.join(__dirname, '..', 'out');
const PASSWORD = 'correct horse 42';

// launch starts a headless Chromium; playwright gives it a fresh, temporary
// profile directory and removes it on close().
async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

// uniqueName returns a short username that no earlier run has used.
function uniqueName(prefix) {
  return prefix + crypto.randomBytes(4).toString('hex');
}

// openPage opens the chat page in a new browser context and records what a
// user should never see: dialogs, uncaught errors and refused resources.
async function openPage(browser, options = {}, url = BASE_URL + '/') {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  const problems = { dialogs: [], errors: [] };
  page.on('dialog', (d) => { problems.dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  page.on('pageerror', (e) => problems.errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') problems.errors.push(m.text()); });
  await page.goto(url);
  await page.locator('#auth').waitFor({ state: 'visible' });
  return { context, page, problems };
}

async function fillCard(page, username, password) {
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.press('#password', 'Enter');
}

async function showRegister(page) {
  if ((await page.getAttribute('#auth', 'data-mode')) !== 'register') await page.click('#auth-toggle');
}

async function showLogin(page) {
  if ((await page.getAttribute('#auth', 'data-mode')) !== 'login') await page.click('#auth-toggle');
}

// register creates an account through the card; the page logs in with it.
async function register(page, username, password = PASSWORD) {
  await showRegister(page);
  await fillCard(page, username, password);
  await page.locator('#chat').waitFor({ state: 'visible' });
}

// signedIn opens a page for each name with open (a set's open, or
// failover-helpers' openTracked bound to a url), then registers each name
// on its page, in order. Resolves with the pages, in the same order.
async function signedIn(open, ...names) {
  const pages = [];
  for (let i = 0; i < names.length; i++) pages.push(await open());
  for (let i = 0; i < names.length; i++) await register(pages[i].page, names[i]);
  return pages;
}

async function login(page, username, password = PASSWORD) {
  await showLogin(page);
  await fillCard(page, username, password);
  await page.locator('#chat').waitFor({ state: 'visible' });
}

// send types a message in the composer and presses Enter.
async function send(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

// onlineUser finds a name in the online list.
function onlineUser(page, name) {
  return page.locator('#users .name').getByText(name, { exact: true });
}

// messageFrom finds the message with this exact text (and author, if given).
function message(page, text, author, base = '#messages .msg') {
  let loc = page.locator(base).filter({ has: page.locator('.text').getByText(text, { exact: true }) });
  if (author) loc = loc.filter({ has: page.locator('.author').getByText(author, { exact: true }) });
  return loc;
}

// confirmed is message() without the pending ones: stored by the server.
function confirmed(page, text, author) {
  return message(page, text, author, '#messages .msg:not(.pending)');
}

// shownMessages lists [author, text] pairs as the page shows them, in order:
// general's by default, or those of base (such as the room list on screen,
// '#chat .messages:not([hidden]) .msg').
function shownMessages(page, base = '#messages .msg') {
  return page.$$eval(base, (items) => items.map((li) =>
    [li.querySelector('.author').textContent, li.querySelector('.text').textContent]));
}

// imageStats decodes a PNG and reports how much it varies: the standard
// deviation of luminance and the share of pixels in the most common colour.
function imageStats(buffer) {
  const png = PNG.sync.read(buffer);
  const counts = new Map();
  let sum = 0, sumSq = 0;
  const n = png.width * png.height;
  for (let i = 0; i < png.data.length; i += 4) {
    const r = png.data[i], g = png.data[i + 1], b = png.data[i + 2];
    const y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    sum += y; sumSq += y * y;
    const key = (r << 16) | (g << 8) | b;
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  const mean = sum / n;
  return {
    width: png.width,
    height: png.height,
    stddev: Math.sqrt(Math.max(0, sumSq / n - mean * mean)),
    dominant: Math.max(...counts.values()) / n,
    colours: counts.size,
  };
}

// looksStyled is the bar a screenshot must pass to count as a real render:
// no single colour covers most of it, as the page's background does when the
// stylesheet is missing (over 95% there; under 70% on every styled screen).
function looksStyled(stats) {
  return stats.dominant < 0.85 && stats.stddev > 8;
}

// pending finds the messages still waiting in the outbox (shown greyed,
// with a clock) and failed the refused ones in the composer area.
function pending(page) { return page.locator('#messages .msg.pending'); }
function failed(page) { return page.locator('#failed .failed-item'); }

// storedSession reads what the page keeps in localStorage.
function storedSession(page) {
  return page.evaluate(() => JSON.parse(localStorage.getItem('chat.session') || 'null'));
}

// seedMessages registers `user` on a second socket of the page (the page's
// own socket.io client, so no extra npm package) and sends the texts one by
// one, each waiting for its acknowledgement. Resolves with the ids. A send
// the server's per-user message limit refuses (MESSAGE_RATE/MESSAGE_BURST,
// 10/s after a burst of 30) is retried after a pause, as a polite client
// would: nothing was stored.
function seedMessages(page, user, texts, password = PASSWORD) {
  return page.evaluate(async ({ user, password, texts }) => {
    const s = io({ forceNew: true, transports: ['websocket'] });
    const ask = (...args) => new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no ack for ' + args[0])), 10000);
      s.emit(...args, (res) => { clearTimeout(t); resolve(res); });
    });
    try {
      await new Promise((r) => s.once('connect', r));
      const reg = await ask('register', { username: user, password });
      if (!reg.success) throw new Error('register: ' + reg.message);
      const log = await ask('login', { username: user, password });
      if (!log.success) throw new Error('login: ' + log.message);
      const ids = [];
      for (const text of texts) {
        let res = await ask('send message', text);
        for (let retry = 0; retry < 100 && res && !res.success && /too fast/i.test(res.message); retry++) {
          await new Promise((r) => setTimeout(r, 150));
          res = await ask('send message', text);
        }
        if (!res || !res.success) throw new Error('send: ' + JSON.stringify(res));
        ids.push(res.id);
      }
      return ids;
    } finally {
      s.disconnect();
    }
  }, { user, password, texts });
}

// OwnServer runs the binary from CHATD_BIN (run.sh sets it) on its own port
// and SQLite file, for tests that stop and restart the server or need a
// history of their own. start() resolves once /healthz answers.
class OwnServer {
  constructor(bin = process.env.CHATD_BIN, env = {}) {
    this.bin = bin;
    this.env = env;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-e2e-own-'));
    this.proc = null;
    this.port = 0;
  }

  get url() { return `http://127.0.0.1:${this.port}`; }
  get db() { return path.join(this.dir, 'chat.db'); }
  get logFile() { return path.join(this.dir, 'chatd.log'); }

  async start() {
    if (!this.port) {
      const { freePort } = require('../free-port');
      this.port = await freePort([Number(new URL(BASE_URL).port)]);
    }
    const log = fs.openSync(this.logFile, 'a');
    this.proc = spawn(this.bin, [], {
      env: { ...process.env, PORT: String(this.port), ADDR: '127.0.0.1', SQLITE_PATH: this.db, DATABASE_URL: '', ...this.env },
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) break;
      try {
        const res = await fetch(this.url + '/healthz');
        if (res.ok) return;
      } catch { /* not up yet */ }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('server did not become healthy:\n' + this.log());
  }

  async stop() { await stopProcess(this.proc, 8000); }

  // wipe removes the store, as on a backup whose database lacks the data.
  wipe() {
    for (const f of fs.readdirSync(this.dir)) if (f.startsWith('chat.db')) fs.rmSync(path.join(this.dir, f));
  }

  log() {
    try { return fs.readFileSync(this.logFile, 'utf8').split('\n').slice(-30).join('\n'); } catch { return ''; }
  }

  async close() {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

// pageSet is one Chromium and the pages opened in it, for a test file's
// hooks: launch() starts the browser, open(options, url) opens a page
// (openPage) at url, by default url(), and keeps it to be closed by close(),
// which then closes the browser.
function pageSet(url) {
  const set = { browser: null, opened: [] };
  set.launch = async () => { set.browser = await launch(); };
  set.open = async (options, at = url()) => {
    const o = await openPage(set.browser, options, at);
    set.opened.push(o);
    return o;
  };
  set.close = async () => {
    for (const o of set.opened) await o.context.close().catch(() => {});
    if (set.browser) await set.browser.close();
  };
  return set;
}

// sharedBrowser is the set-up of a test file whose tests use the suite's
// server (BASE_URL) in one browser: it registers the file's before and
// after hooks, which launch Chromium and then close every page opened and
// the browser. It returns the set: set.open(options) opens a page on the
// suite's server (set.browser for a context of one's own).
function sharedBrowser() {
  const { before, after } = require('node:test');
  const set = pageSet(() => BASE_URL + '/');
  before(set.launch);
  after(set.close);
  return set;
}

// ownServer is the set-up of a test file that runs a server of its own
// (OwnServer from bin, with env) and one browser: it registers the file's
// before and after hooks, which start both and then close every page
// opened, the browser and the server. It returns the room: room.srv is the
// server (to stop, wipe or restart it), room.open(options) opens a page on
// it (room.browser for a context of one's own). Without bin nothing starts
// (the file's tests skip themselves).
function ownServer(bin, env) {
  const { before, after } = require('node:test');
  const room = pageSet(() => room.srv.url + '/');
  room.srv = null;
  before(async () => {
    if (!bin) return;
    room.srv = new OwnServer(bin, env);
    await room.srv.start();
    await room.launch();
  });
  after(async () => {
    await room.close();
    if (room.srv) await room.srv.close();
  });
  return room;
}

// stopProcess ends a child process and waits for it: SIGTERM, then SIGKILL
// after graceMs. Nothing to do when it has already exited.
async function stopProcess(proc, graceMs) {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

// roomButton finds a room's entry in the room list by its label: '#name'
// or '@peer'.
function roomButton(page, label) {
  return page.locator('#rooms .room-btn').filter({ has: page.locator('.room-label').getByText(label, { exact: true }) });
}

// shown is confirmed() in the message list on screen: general's #messages
// or another room's.
function shown(page, text, author) {
  return message(page, text, author, '#chat .messages:not([hidden]) .msg:not(.pending)');
}

async function screenshot(page, name) {
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const file = path.join(OUT_DIR, name + '.png');
  const buffer = await page.screenshot({ path: file });
  return { file, buffer };
}

// styledShot saves a screenshot of the page as out/<name>.png and asserts
// that it is a real render (looksStyled).
async function styledShot(page, name) {
  const shot = await screenshot(page, name);
  const stats = imageStats(shot.buffer);
  require('node:assert/strict').ok(looksStyled(stats), `${name}.png looks blank or unstyled: ${JSON.stringify(stats)}`);
  return shot;
}

module.exports = {
  BASE_URL, PASSWORD, launch, uniqueName, openPage, fillCard, showRegister, showLogin,
  register, signedIn, login, send, onlineUser, message, confirmed, shownMessages, imageStats, looksStyled, screenshot, styledShot,
  pending, failed, storedSession, seedMessages, OwnServer, ownServer, sharedBrowser, stopProcess,
  roomButton, shown,
};
