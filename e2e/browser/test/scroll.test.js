// scroll.test.js: a user who scrolls up to read is not pulled back down by
// new messages; a "New messages ↓" marker appears instead, and takes them
// to the newest. The page decides from where the list is when a message
// arrives, so the outcome does not depend on whether the scroll event has
// fired yet (the race that made an earlier version of this test flaky).
// Runs its own server (a room of known content) from CHATD_BIN.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const BIN = process.env.CHATD_BIN;
const T = { timeout: 60000, skip: BIN ? false : 'CHATD_BIN not set' };

let A, B;
const alice = h.uniqueName('alice');
const bob = h.uniqueName('bob');

const room = h.ownServer(BIN);
const { open } = room;

// gap is how far (px) the list is from its bottom.
const gap = (page) => page.$eval('#messages', (e) => e.scrollHeight - e.scrollTop - e.clientHeight);

test('scrolled up, a new message shows a marker instead of jumping', T, async () => {
  A = await open();
  B = await open({ viewport: { width: 1280, height: 420 } });
  await h.register(A.page, alice);
  await h.register(B.page, bob);
  for (let i = 0; i < 12; i++) await h.send(A.page, 'filler ' + i);
  await h.confirmed(B.page, 'filler 11', alice).waitFor();
  assert.ok(await gap(B.page) < 50, 'follows new messages while at the bottom');
  assert.equal(await B.page.isVisible('#jump'), false);

  // Scroll up as a user does, with the wheel, and wait until the list has
  // really moved well away from the bottom (not for some time to pass).
  await B.page.hover('#messages');
  await B.page.mouse.wheel(0, -3000);
  await B.page.waitForFunction(() => {
    const e = document.getElementById('messages');
    return e.scrollHeight - e.scrollTop - e.clientHeight > 200;
  });

  await h.send(A.page, 'while you were away');
  await h.confirmed(B.page, 'while you were away', alice).waitFor({ state: 'attached' });
  // The marker is set in the same step that adds the message: no waiting.
  assert.equal(await B.page.isVisible('#jump'), true, 'the "New messages" marker shows');
  assert.ok(await gap(B.page) > 200, 'the list stays where the user scrolled');
  await B.page.getByRole('button', { name: 'New messages ↓' }).click();
  await B.page.waitForFunction(() => {
    const e = document.getElementById('messages');
    return e.scrollHeight - e.scrollTop - e.clientHeight < 50;
  });
  assert.equal(await B.page.isVisible('#jump'), false, 'the marker goes once the newest is shown');
  assert.equal(await h.confirmed(B.page, 'while you were away', alice).isVisible(), true);
  assert.equal(await B.page.evaluate(() => document.activeElement.id), 'text', 'ready to reply');
});

test('a message that arrives before the scroll event fires does not jump either', T, async () => {
  assert.ok(A && B, 'needs the users of the first test');
  const { page } = B;
  await h.send(A.page, 'back at the bottom');
  await h.confirmed(page, 'back at the bottom', alice).waitFor();
  assert.ok(await gap(page) < 50, 'at the bottom to begin with');

  // Hold back every scroll event of the list, as if the message below came
  // in between the scroll and its event (scroll events are only dispatched
  // at the next frame): the page must read the position itself.
  const top = await page.evaluate(() => {
    window.heldScrolls = 0;
    window.addEventListener('scroll', (e) => {
      if (e.target.id === 'messages') { window.heldScrolls++; e.stopImmediatePropagation(); }
    }, true);
    const list = document.getElementById('messages');
    list.scrollTop = 0;
    return list.scrollTop;
  });
  assert.equal(top, 0, 'scrolled to the top');

  await h.send(A.page, 'arrived before the scroll event');
  await h.confirmed(page, 'arrived before the scroll event', alice).waitFor({ state: 'attached' });
  assert.equal(await page.isVisible('#jump'), true, 'the marker shows');
  assert.ok(await page.$eval('#messages', (e) => e.scrollTop) < 50, 'still at the top, where the user is');
  assert.ok(await page.evaluate(() => window.heldScrolls) > 0, 'the list\'s scroll events were really held back');
  await page.click('#jump');
  assert.ok(await gap(page) < 50, 'the marker scrolls to the newest message');
  for (const o of [A, B]) assert.deepEqual(o.problems, { dialogs: [], errors: [] });
});
