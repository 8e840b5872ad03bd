// reconnect.test.js: the server goes away and comes back (a restart, or the
// hand-over to the backup): the page says so honestly, keeps what is typed
// and sent in its outbox, and carries on logged in through its session token.
// The sign-in card tells screen readers about the connection too.
// Runs its own server from CHATD_BIN (run.sh sets it); skipped without one.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const BIN = process.env.CHATD_BIN;
const T = { timeout: 60000, skip: BIN ? false : 'CHATD_BIN not set' };

const room = h.ownServer(BIN);
const { open } = room;

test('after a server restart the page reconnects, still logged in, and sends what waited in the outbox', T, async () => {
  const me = h.uniqueName('fay');
  const friend = h.uniqueName('hal');
  const A = await open();
  const B = await open();
  const { page } = A;
  await h.register(page, me);
  await h.register(B.page, friend);
  await h.send(page, 'before the restart');
  await h.confirmed(page, 'before the restart', me).waitFor();
  await page.locator('#chat .status[data-state="connected"]').waitFor();

  await room.srv.stop();
  await page.locator('#chat .status[data-state="reconnecting"]').waitFor();
  await page.locator('#chat .status').getByText(/Reconnecting \(attempt \d+\)/).first().waitFor();
  assert.equal(await page.isVisible('#chat'), true, 'the chat stays on screen');
  await page.locator('#hint.waiting').waitFor();

  // The composer keeps working: messages wait in the outbox, greyed.
  const texts = ['typed while offline', 'and a second one'];
  for (const t of texts) {
    await page.fill('#text', t);
    assert.equal(await page.isDisabled('#send'), false, 'Send works while offline');
    await page.press('#text', 'Enter');
  }
  await h.pending(page).nth(1).waitFor();
  assert.deepEqual(await h.pending(page).locator('.text').allTextContents(), texts, 'both shown as pending, in order');
  assert.equal(await h.pending(page).locator('.clock').count(), 2, 'each has a clock');
  const stored = await page.evaluate(() => Object.values(JSON.parse(localStorage.getItem('chat.outbox') || '{}')).map((e) => e.text));
  assert.deepEqual(stored.sort(), texts.slice().sort(), 'the outbox is in localStorage');
  await h.screenshot(page, 'chat-pending').then(({ buffer }) => {
    assert.ok(h.looksStyled(h.imageStats(buffer)), 'chat-pending looks styled');
  });

  // The browser says it is offline: so does the page; back online, it retries.
  await A.context.setOffline(true);
  await page.locator('#chat .status[data-state="offline"]').waitFor();
  await A.context.setOffline(false);
  await page.locator('#chat .status[data-state="reconnecting"]').waitFor();

  await room.srv.start(); // same port, same SQLite file
  await page.locator('#chat .status[data-state="connected"]').waitFor({ timeout: 20000 });
  await h.onlineUser(page, me).waitFor({ timeout: 10000 });
  for (const t of texts) {
    for (const p of [page, B.page]) await h.confirmed(p, t, me).waitFor({ timeout: 15000 });
  }
  await h.pending(page).first().waitFor({ state: 'detached' });
  await page.waitForFunction(() => !localStorage.getItem('chat.outbox'), null, { timeout: 5000 });
  for (const p of [page, B.page]) {
    for (const t of texts) assert.equal(await h.message(p, t, me).count(), 1, `"${t}" shown once`);
    assert.equal(await h.pending(p).count(), 0, 'no pending marker left');
    const shown = await h.shownMessages(p);
    assert.ok(shown.some(([u, m]) => u === me && m === 'before the restart'), 'the history is still there');
    const ids = await p.$$eval('#messages .msg', (els) => els.map((e) => Number(e.dataset.id)));
    assert.deepEqual(ids, ids.slice().sort((a, b) => a - b), 'ordered by id');
    assert.equal(new Set(ids).size, ids.length, 'no id twice');
  }
  assert.equal(await page.locator('#me-name').textContent(), me, 'still logged in, no password asked');

  // The database has each once: a newcomer's history.
  const C = await open();
  await h.register(C.page, h.uniqueName('ivy'));
  await h.message(C.page, texts[1], me).waitFor();
  for (const t of texts) assert.equal(await h.confirmed(C.page, t, me).count(), 1, `"${t}" stored once`);

  for (const o of [A, B, C]) assert.deepEqual(o.problems.dialogs, []);
  for (const o of [A, B, C]) await o.context.close();
});

test('if the server no longer knows the session, the page asks to log in again', T, async () => {
  const me = h.uniqueName('gus');
  const o = await open();
  const { page } = o;
  await h.register(page, me);
  await room.srv.stop();
  await page.locator('#chat .status[data-state="reconnecting"]').waitFor();
  // A backup whose database lacks the account: start on an empty store.
  room.srv.wipe();
  await room.srv.start();
  await page.locator('#auth').waitFor({ state: 'visible', timeout: 20000 });
  assert.match(await page.textContent('#auth-notice'), /log in again/i);
  assert.equal(await page.inputValue('#username'), me, 'the name is filled in');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'password');
  assert.equal(await h.storedSession(page), null, 'the dead session is forgotten');
  await o.context.close();
});

test('the sign-in card announces the connection: a polite status whose text follows the server', T, async () => {
  const o = await open();
  const { page } = o;
  // What assistive technology finds: one status on the card (the notice
  // line is empty, so not shown), read out politely, saying "Connected".
  const status = page.locator('#auth').getByRole('status');
  await status.getByText('Connected', { exact: true }).waitFor();
  assert.equal(await status.count(), 1, 'one status on the card');
  assert.equal(await status.getAttribute('aria-live'), 'polite');
  assert.match(await page.locator('#auth').ariaSnapshot(), /- status: Connected/);

  await room.srv.stop();
  await status.getByText(/^Reconnecting/).waitFor();
  assert.match(await page.locator('#auth').ariaSnapshot(), /- status: Reconnecting/);
  await h.screenshot(page, 'login-reconnecting');

  await room.srv.start();
  await status.getByText('Connected', { exact: true }).waitFor({ timeout: 20000 });
  assert.deepEqual(o.problems.dialogs, []);
  await o.context.close();
});
