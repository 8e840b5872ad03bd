// empty-room.test.js: where the history begins. The first user of an empty
// room is told so ("Beginning of history", and an invitation to say hello);
// the marker stays above the first message once there is one, a newcomer to
// a short history sees it above the oldest message, and a page that was
// away while the room filled up does not claim the beginning above a
// history that has older pages. Runs its own server (an empty store) from
// CHATD_BIN, with a history of 20 so that "older pages" come quickly.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const BIN = process.env.CHATD_BIN;
const T = { timeout: 60000, skip: BIN ? false : 'CHATD_BIN not set' };
const HISTORY = 20;

const room = h.ownServer(BIN, { HISTORY_LIMIT: String(HISTORY), BCRYPT_COST: '4' });
const { open } = room;

const beginning = (page) => page.locator('#messages .history-row').getByText('Beginning of history', { exact: true });

// above: is element a above element b on screen?
async function above(a, b) {
  const [ra, rb] = [await a.boundingBox(), await b.boundingBox()];
  return ra && rb && ra.y + ra.height <= rb.y;
}

let first;

test('the first user of an empty room sees the beginning of the history', T, async () => {
  first = h.uniqueName('pia');
  const P = await open();
  const { page } = P;
  await h.register(page, first);
  await page.locator('#chat .status[data-state="connected"]').waitFor();
  await beginning(page).waitFor();
  assert.equal(await page.isVisible('#empty'), true, 'the invitation to say hello shows too');
  assert.match(await page.textContent('#empty'), /No messages yet/);
  await h.screenshot(page, 'chat-empty-room');

  await h.send(page, 'first!');
  await h.confirmed(page, 'first!', first).waitFor();
  assert.equal(await page.isVisible('#empty'), false, 'no "no messages" once there is one');
  assert.equal(await beginning(page).isVisible(), true, 'still the beginning');
  assert.ok(await above(beginning(page), h.confirmed(page, 'first!', first)), 'above the first message');

  // A newcomer to this short, complete history: the same picture.
  const Q = await open();
  await h.register(Q.page, h.uniqueName('quy'));
  await h.confirmed(Q.page, 'first!', first).waitFor();
  await beginning(Q.page).waitFor();
  assert.ok(await above(beginning(Q.page), h.confirmed(Q.page, 'first!', first)), 'the newcomer sees it above the first message');
  assert.equal(await Q.page.isVisible('#empty'), false);
  for (const o of [P, Q]) assert.deepEqual(o.problems, { dialogs: [], errors: [] });
  await Q.context.close();
  await P.context.close();
});

test('a page that was away while the room filled up does not claim the beginning too early', T, async () => {
  // An empty room again (a fresh store), seen by R.
  await room.srv.stop();
  room.srv.wipe();
  await room.srv.start();
  const R = await open();
  const { page, context } = R;
  const me = h.uniqueName('ria');
  await h.register(page, me);
  await beginning(page).waitFor();

  // R loses the server; meanwhile someone writes more than one history's
  // worth. (Only the Socket.IO handshakes of R are refused, the way
  // chat.test.js cuts a page off: its old session died with the server.)
  const socketIO = (url) => new URL(url).pathname === '/socket.io/';
  await context.route(socketIO, (route) => route.abort());
  await room.srv.stop();
  await page.locator('#chat .status[data-state="reconnecting"]').waitFor();
  await room.srv.start();
  const S = await open();
  const writer = h.uniqueName('sol');
  const texts = Array.from({ length: HISTORY + 10 }, (_, i) => 'filled ' + String(i + 1).padStart(2, '0'));
  await h.seedMessages(S.page, writer, texts);
  await S.context.close();

  await context.unroute(socketIO);
  await page.locator('#chat .status[data-state="connected"]').waitFor({ timeout: 20000 });
  await h.confirmed(page, texts[texts.length - 1], writer).waitFor();
  // The newest 20 are shown; the first 10 are older pages, not yet loaded.
  // (The list is taller than the screen: nothing loads older pages until
  // the user scrolls up.)
  await h.confirmed(page, texts[10], writer).waitFor({ state: 'attached' });
  assert.equal(await h.confirmed(page, texts[9], writer).count(), 0, 'only the newest 20 came');
  assert.equal(await beginning(page).count(), 0, 'no "Beginning of history" above a history with older pages');
  // Scrolled to the top, the older page comes, and then the beginning.
  await page.$eval('#messages', (e) => { e.scrollTop = 0; });
  await h.confirmed(page, texts[0], writer).waitFor({ state: 'attached' });
  await page.$eval('#messages', (e) => { e.scrollTop = 0; });
  await beginning(page).waitFor();
  const shown = await page.$$eval('#messages .msg .text', (els) => els.map((e) => e.textContent));
  assert.deepEqual(shown, texts, 'every message once, oldest first');
  assert.ok(await above(beginning(page), h.confirmed(page, texts[0], writer)), 'the beginning above the first message');
  // (The refused handshakes above are logged as failed loads: expected.)
  const errors = R.problems.errors.filter((e) => !/^Failed to load resource: net::ERR_FAILED$/.test(e));
  assert.deepEqual({ ...R.problems, errors }, { dialogs: [], errors: [] });
});
