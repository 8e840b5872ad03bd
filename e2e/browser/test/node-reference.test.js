// node-reference.test.js: the same page against the original Node server
// (loadtest/reference, the seed's server rebuilt), which has none of the Go
// extensions: no token in the login ack, no `session`, no message ids, no
// `send message` ack, no `load older messages`. The page must fall back to
// the seed's behaviour. Needs PostgreSQL on 127.0.0.1:5432 (user postgres)
// and loadtest/reference/node_modules; skipped without them.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { freePort } = require('../free-port');

const REPO = path.resolve(__dirname, '..', '..', '..');
const REF = path.join(REPO, 'loadtest', 'reference');
const PG = 'postgres://postgres@127.0.0.1:5432';

function psql(db, sql) {
  return spawnSync('psql', [`${PG}/${db}`, '-v', 'ON_ERROR_STOP=1', '-tAqc', sql], { encoding: 'utf8', timeout: 10000 });
}

function why() {
  if (!fs.existsSync(path.join(REF, 'node_modules'))) return 'loadtest/reference/node_modules missing (npm ci there)';
  const r = psql('postgres', 'SELECT 1');
  if (r.status !== 0) return 'no PostgreSQL at ' + PG;
  return false;
}

const skip = why();
if (skip && process.env.CI === 'true') {
  // CI installs everything it needs: a skip there would hide a failure.
  throw new Error('node-reference tests cannot run under CI: ' + skip);
}
const T = { timeout: 60000, skip };
const db = `e2e_ref_${process.pid}_${Date.now() % 100000}`;
let browser, port, proc, dir;

async function startRef() {
  const log = fs.openSync(path.join(dir, 'ref.log'), 'a');
  proc = spawn(process.execPath, ['server.js'], {
    cwd: REF,
    env: { ...process.env, PORT: String(port), DATABASE_URL: `${PG}/${db}`, PUBLIC_DIR: path.join(REPO, 'public') },
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/socket.io/socket.io.js`);
      if (res.ok) { await new Promise((r) => setTimeout(r, 300)); return; } // let it read its tables
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('reference server did not start: ' + fs.readFileSync(path.join(dir, 'ref.log'), 'utf8'));
}

async function stopRef() { await h.stopProcess(proc, 5000); }

before(async () => {
  if (skip) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-e2e-ref-'));
  const made = psql('postgres', `CREATE DATABASE ${db}`);
  if (made.status !== 0) throw new Error(made.stderr);
  port = await freePort([Number(new URL(h.BASE_URL).port)]);
  await startRef();
  browser = await h.launch();
});

after(async () => {
  if (browser) await browser.close();
  await stopRef();
  if (!skip) psql('postgres', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('against the Node server: log in, chat, no duplicates, no token kept', T, async () => {
  const url = `http://127.0.0.1:${port}/`;
  const A = await h.openPage(browser, {}, url);
  const B = await h.openPage(browser, {}, url);
  const me = h.uniqueName('nia');
  const friend = h.uniqueName('ole');
  try {
    await h.register(A.page, me);
    await h.register(B.page, friend);
    assert.equal(await h.storedSession(A.page), null, 'no token from the Node server: nothing stored');
    await h.send(A.page, 'hello node');
    await h.send(A.page, 'hello node'); // the same text twice: two messages
    for (const p of [A.page, B.page]) {
      await h.confirmed(p, 'hello node', me).nth(1).waitFor();
    }
    await A.page.waitForTimeout(300);
    for (const p of [A.page, B.page]) {
      assert.equal(await h.message(p, 'hello node', me).count(), 2, 'each shown once');
      assert.equal(await h.pending(p).count(), 0, 'no pending left: the echo confirms');
    }
    assert.equal(await A.page.evaluate(() => localStorage.getItem('chat.outbox')), null, 'the outbox is empty');
    // No conversation events on the Node server: no rooms, search, direct
    // messages or edit buttons, the page as it was.
    assert.equal(await A.page.isVisible('#conv'), false, 'no room list');
    assert.equal(await A.page.locator('#messages .tools, #users .user-btn').count(), 0, 'no edit or message buttons');
    await h.message(A.page, 'hello node', me).first().waitFor();
    // (An empty room still says "Beginning of history": Node sends it all.)
    assert.equal(await A.page.isVisible('#messages .history-row[data-kind="loading"]'), false, 'no paging without ids');

    // A reload: no session to resume, so the card.
    await A.page.reload();
    await A.page.locator('#auth').waitFor({ state: 'visible' });
    await A.page.waitForTimeout(300);
    assert.equal(await A.page.isVisible('#chat'), false);
    await h.login(A.page, me);
    await h.confirmed(A.page, 'hello node', me).nth(1).waitFor();
    assert.equal(await h.message(A.page, 'hello node', me).count(), 2, 'history replaced, not doubled');
    for (const o of [A, B]) assert.deepEqual(o.problems, { dialogs: [], errors: [] });
  } finally {
    await A.context.close();
    await B.context.close();
  }
});

test('against the Node server: after a restart, `reload` leads to the card and the outbox goes out after login', T, async () => {
  const url = `http://127.0.0.1:${port}/`;
  const A = await h.openPage(browser, {}, url);
  const me = h.uniqueName('pia');
  try {
    const { page } = A;
    await h.register(page, me);
    await stopRef();
    await page.locator('#chat .status[data-state="reconnecting"]').waitFor();
    await h.send(page, 'queued for node');
    await h.pending(page).waitFor();
    await startRef();
    // The new connection is not logged in and the page has no password: the
    // outbox send gets `reload`, the seed's way back to the card.
    await page.locator('#auth').waitFor({ state: 'visible', timeout: 20000 });
    assert.match(await page.textContent('#auth-notice'), /log in again/i);
    assert.equal(await page.inputValue('#username'), me);
    await h.login(page, me);
    await h.confirmed(page, 'queued for node', me).waitFor({ timeout: 10000 });
    await page.waitForTimeout(300);
    assert.equal(await h.message(page, 'queued for node', me).count(), 1, 'sent once');
    assert.equal(await h.pending(page).count(), 0);
    const rows = psql(db, `SELECT count(*) FROM chat_history WHERE content = 'queued for node' AND username = '${me}'`);
    assert.equal(rows.stdout.trim(), '1', 'stored once');
    // (the console shows the refused connections while it was down)
    assert.deepEqual(A.problems.dialogs, []);
  } finally {
    await A.context.close();
  }
});
