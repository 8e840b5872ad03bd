// history.test.js: a long history. A newcomer gets the most recent 100
// messages (the server's default HISTORY_LIMIT); scrolling to the top loads
// older pages with `load older messages`, in order, without duplicates,
// keeping what the user reads in place, down to "Beginning of history".
// Runs its own server (a history of known length) from CHATD_BIN.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const BIN = process.env.CHATD_BIN;
const T = { timeout: 60000, skip: BIN ? false : 'CHATD_BIN not set' };
const TOTAL = 120;

const room = h.ownServer(BIN);
let seeder;

const label = (i) => 'history ' + String(i).padStart(3, '0');

test('scrolling to the top loads older messages down to the beginning', T, async () => {
  seeder = h.uniqueName('sam');
  const texts = Array.from({ length: TOTAL }, (_, i) => label(i + 1));
  const S = await room.open();
  const ids = await h.seedMessages(S.page, seeder, texts);
  assert.equal(ids.length, TOTAL);
  await S.context.close();

  const N = await room.open({ viewport: { width: 1280, height: 700 } });
  const { page } = N;
  await h.register(page, h.uniqueName('newt'));
  await h.confirmed(page, label(TOTAL), seeder).waitFor();
  const texts0 = await page.$$eval('#messages .msg .text', (els) => els.map((e) => e.textContent));
  assert.equal(texts0.length, 100, 'the newcomer sees the last 100');
  assert.equal(texts0[0], label(TOTAL - 99));

  // To the top: the next page comes in above, the view stays where it was.
  const anchor = h.confirmed(page, label(TOTAL - 99), seeder);
  await page.$eval('#messages', (e) => { e.scrollTop = 0; });
  const y0 = await anchor.evaluate((e) => e.getBoundingClientRect().top);
  await h.confirmed(page, label(1), seeder).waitFor({ state: 'attached' });
  await page.locator('#messages .history-row[data-kind="loading"]').waitFor({ state: 'hidden' });
  const y1 = await anchor.evaluate((e) => e.getBoundingClientRect().top);
  assert.ok(Math.abs(y1 - y0) <= 2, `the message read before stays in place (${y0} -> ${y1})`);
  assert.ok(await page.$eval('#messages', (e) => e.scrollTop > 0), 'older messages are above the view');

  // Once more: an empty page, the beginning.
  await page.$eval('#messages', (e) => { e.scrollTop = 0; });
  await page.locator('#messages .history-row[data-kind="start"]').getByText('Beginning of history').waitFor();
  const all = await page.$$eval('#messages .msg', (els) => els.map((e) => [Number(e.dataset.id), e.querySelector('.text').textContent]));
  assert.deepEqual(all.map(([, t]) => t), texts, 'every message once, oldest first');
  assert.deepEqual(all.map(([id]) => id), ids, 'with the ids the server gave');
  await h.screenshot(page, 'chat-history-start');

  // A reconnection's `load all messages` merges: nothing lost, nothing twice.
  await room.srv.stop();
  await page.locator('#hint.waiting').waitFor();
  await room.srv.start();
  await page.locator('#chat .status[data-state="connected"]').waitFor({ timeout: 20000 });
  // Logged in again by the token: `session` comes after `load all messages`.
  await page.locator('#hint:not(.waiting)').waitFor();
  const after = await page.$$eval('#messages .msg', (els) => els.map((e) => Number(e.dataset.id)));
  assert.deepEqual(after, ids, 'after reconnecting: the same 120, once each');
  assert.deepEqual(N.problems, { dialogs: [], errors: [] });
  await N.context.close();
});

// withoutPaging makes the page's socket swallow `load older messages`, as a
// server without the extension does (the Node server never answers it).
function withoutPaging() {
  Object.defineProperty(window, 'io', {
    configurable: true,
    get() { return window.__io; },
    set(real) {
      window.olderAsked = 0;
      window.__io = Object.assign(function (...args) {
        const s = real(...args);
        const emit = s.emit.bind(s);
        s.emit = (event, ...rest) => {
          if (event === 'load older messages') { window.olderAsked++; return s; }
          return emit(event, ...rest);
        };
        return s;
      }, real);
    },
  });
}

test('with no answer to `load older messages`, the page gives up quietly', T, async () => {
  assert.ok(seeder, 'needs the history of the first test');
  const context = await room.browser.newContext({ viewport: { width: 1280, height: 700 } });
  try {
    await context.addInitScript(withoutPaging);
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(room.srv.url + '/');
    await h.register(page, h.uniqueName('quin'));
    await h.confirmed(page, label(TOTAL), seeder).waitFor();
    await page.$eval('#messages', (e) => { e.scrollTop = 0; });
    await page.locator('#messages .history-row[data-kind="loading"]').waitFor();
    assert.equal(await page.evaluate(() => window.olderAsked), 1);
    await page.locator('#messages .history-row').waitFor({ state: 'hidden', timeout: 15000 });
    assert.equal(await page.locator('#messages .msg').count(), 100, 'what was shown stays');
    // It does not ask again.
    await page.$eval('#messages', (e) => { e.scrollTop = 10; });
    await page.$eval('#messages', (e) => { e.scrollTop = 0; });
    await page.waitForTimeout(300);
    assert.equal(await page.evaluate(() => window.olderAsked), 1, 'gave up for good');
    assert.equal(await page.isVisible('#messages .history-row'), false);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});
