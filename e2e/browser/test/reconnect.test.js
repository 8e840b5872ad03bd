// reconnect.test.js: the server goes away and comes back (a restart, or the
// hand-over to the backup): the page says so, then carries on logged in.
// Runs its own server from CHATD_BIN (run.sh sets it); skipped without one.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { freePort } = require('../free-port');

const BIN = process.env.CHATD_BIN;
const T = { timeout: 60000, skip: BIN ? false : 'CHATD_BIN not set' };

let browser, dir, port, server;

// startServer runs the binary on its own port and store, resolving once
// /healthz answers.
async function startServer() {
  const log = fs.openSync(path.join(dir, 'chatd.log'), 'a');
  server = spawn(BIN, [], {
    env: { ...process.env, PORT: String(port), ADDR: '127.0.0.1', SQLITE_PATH: path.join(dir, 'chat.db'), DATABASE_URL: '' },
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (res.ok) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('server did not become healthy; see ' + path.join(dir, 'chatd.log'));
}

async function stopServer() {
  if (!server || server.exitCode !== null) return;
  const exited = new Promise((r) => server.once('exit', r));
  server.kill('SIGTERM');
  const timer = setTimeout(() => server.kill('SIGKILL'), 8000);
  await exited;
  clearTimeout(timer);
}

before(async () => {
  if (!BIN) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-e2e-restart-'));
  port = await freePort([Number(new URL(h.BASE_URL).port)]);
  await startServer();
  browser = await h.launch();
});

after(async () => {
  if (browser) await browser.close();
  await stopServer();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('after a server restart the page reconnects and is still logged in', T, async () => {
  const me = h.uniqueName('fay');
  const o = await h.openPage(browser, {}, `http://127.0.0.1:${port}/`);
  const { page } = o;
  await h.register(page, me);
  await h.send(page, 'before the restart');
  await h.message(page, 'before the restart', me).waitFor();
  await page.locator('#chat .status[data-state="connected"]').waitFor();

  await stopServer();
  await page.locator('#chat .status[data-state="reconnecting"]').waitFor();
  assert.equal(await page.isVisible('#chat'), true, 'the chat stays on screen');
  await page.fill('#text', 'typed while offline');
  assert.equal(await page.isDisabled('#send'), true, 'nothing can be sent while offline');

  await startServer();
  await page.locator('#chat .status[data-state="connected"]').waitFor({ timeout: 20000 });
  await h.onlineUser(page, me).waitFor({ timeout: 10000 });
  await page.waitForFunction(() => !document.getElementById('send').disabled);
  assert.equal(await page.inputValue('#text'), 'typed while offline', 'the draft survives');
  await page.press('#text', 'Enter');
  await h.message(page, 'typed while offline', me).waitFor();
  const shown = await h.shownMessages(page);
  assert.ok(shown.some(([u, m]) => u === me && m === 'before the restart'), 'the history came back');
  assert.deepEqual(o.problems.dialogs, []);
  await o.context.close();
});

test('if the server no longer knows the user, the page asks to log in again', T, async () => {
  const me = h.uniqueName('gus');
  const o = await h.openPage(browser, {}, `http://127.0.0.1:${port}/`);
  const { page } = o;
  await h.register(page, me);
  await stopServer();
  await page.locator('#chat .status[data-state="reconnecting"]').waitFor();
  // A backup whose database lacks the account: start on an empty store.
  for (const f of fs.readdirSync(dir)) if (f.startsWith('chat.db')) fs.rmSync(path.join(dir, f));
  await startServer();
  await page.locator('#auth').waitFor({ state: 'visible', timeout: 20000 });
  assert.match(await page.textContent('#auth-notice'), /log in again/i);
  assert.equal(await page.inputValue('#username'), me, 'the name is filled in');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'password');
  await o.context.close();
});
