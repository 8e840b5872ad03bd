// rooms.test.js: the conversation features of the page: rooms with unread
// counts (create, join, leave, mark read surviving a reload), a direct
// message from the online list, the typing line across two browsers, edit
// and delete of one's own messages, and search jumping to a message.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = { timeout: 90000 };
const { open } = h.sharedBrowser();
const { roomButton, shown } = h;

const alice = h.uniqueName('alice');
const bob = h.uniqueName('bob');
let A, B;

test('rooms: general first and selected, create, join, unread counts, mark read, leave', T, async () => {
  [A, B] = await h.signedIn(open, alice, bob);
  for (const p of [A.page, B.page]) {
    await roomButton(p, '#general').waitFor();
    assert.equal(await p.locator('#rooms .room-btn').first().locator('.room-label').textContent(), '#general', 'general is first');
    assert.equal(await roomButton(p, '#general').getAttribute('aria-current'), 'true', 'general is selected');
    assert.equal((await p.textContent('#room-title')).trim(), 'general');
  }

  // Create: the new room is selected; a taken name shows the server's answer.
  const name = h.uniqueName('plans-');
  await A.page.getByRole('textbox', { name: 'New room name' }).fill(name);
  await A.page.getByRole('button', { name: 'Create' }).click();
  await roomButton(A.page, '#' + name).waitFor();
  assert.equal(await roomButton(A.page, '#' + name).getAttribute('aria-current'), 'true');
  assert.equal(await A.page.textContent('#room-title'), name);
  await A.page.locator('#room-empty').waitFor();
  await A.page.getByRole('textbox', { name: 'New room name' }).fill(name.toUpperCase());
  await A.page.getByRole('button', { name: 'Create' }).click();
  await A.page.locator('#room-error').getByText('A room with that name already exists').waitFor();

  // Bob sees it after a reload (no password asked) and joins it.
  await B.page.reload();
  await B.page.getByRole('button', { name: 'Join #' + name }).click();
  await roomButton(B.page, '#' + name).and(B.page.locator('[aria-current="true"]')).waitFor();
  assert.equal(await B.page.textContent('#room-title'), name);

  // Alice writes there while Bob reads general: an unread count for Bob.
  await roomButton(B.page, '#general').click();
  await h.send(A.page, 'first in ' + name);
  await shown(A.page, 'first in ' + name, alice).waitFor();
  await h.send(A.page, 'second in ' + name);
  await roomButton(B.page, '#' + name).locator('.unread').getByText('2').waitFor();
  assert.equal(await roomButton(B.page, '#' + name).getAttribute('aria-label'), '#' + name + ', 2 unread');
  assert.equal(await h.message(B.page, 'first in ' + name).count(), 0, 'not in general');
  assert.equal(await h.message(A.page, 'first in ' + name, alice, '#messages .msg').count(), 0, "not in Alice's general either");

  // Viewing the room reads it: the count goes, and stays gone after a reload.
  await roomButton(B.page, '#' + name).click();
  await shown(B.page, 'second in ' + name, alice).waitFor();
  await roomButton(B.page, '#' + name).locator('.unread').waitFor({ state: 'detached' });
  await B.page.waitForTimeout(1500); // the mark read goes out within a second
  await B.page.reload();
  await roomButton(B.page, '#' + name).waitFor();
  await B.page.waitForTimeout(500);
  assert.equal(await roomButton(B.page, '#' + name).locator('.unread').count(), 0, 'read survives a reload');

  // Leave: back to general, the room is offered to join again.
  await B.page.getByRole('button', { name: 'Leave #' + name }).click();
  await B.page.getByRole('button', { name: 'Join #' + name }).waitFor();
  assert.equal(await B.page.textContent('#room-title'), 'general');
  for (const o of [A, B]) assert.deepEqual(o.problems, { dialogs: [], errors: [] });
});

test('a direct message from the online list', T, async () => {
  assert.ok(A && B, 'needs the users of the first test');
  await roomButton(A.page, '#general').click();
  await roomButton(B.page, '#general').click();
  await A.page.getByRole('button', { name: 'Message ' + bob }).click();
  assert.equal(await A.page.textContent('#room-title'), bob);
  assert.equal(await A.page.getAttribute('#text', 'placeholder'), 'Message @' + bob);
  await h.send(A.page, 'psst, ' + bob);
  await roomButton(A.page, '@' + bob).and(A.page.locator('[aria-current="true"]')).waitFor();
  await shown(A.page, 'psst, ' + bob, alice).waitFor();
  assert.equal(await h.message(A.page, 'psst, ' + bob, alice, '#messages .msg').count(), 0, 'not in general');

  // Bob: the new direct room appears with an unread count; his online list
  // opens that same room.
  await roomButton(B.page, '@' + alice).locator('.unread').getByText('1').waitFor();
  await B.page.getByRole('button', { name: 'Message ' + alice }).click();
  await shown(B.page, 'psst, ' + bob, alice).waitFor();
  assert.equal(await roomButton(B.page, '@' + alice).getAttribute('aria-current'), 'true');
  await h.send(B.page, 'hey ' + alice);
  await shown(A.page, 'hey ' + alice, bob).waitFor();
  assert.equal(await B.page.locator('#rooms .room-btn').filter({ hasText: '@' + alice }).count(), 1, 'one direct room');

  // A third user never sees it.
  const C = await open();
  await h.register(C.page, h.uniqueName('carol'));
  await roomButton(C.page, '#general').waitFor();
  assert.equal(await C.page.locator('#rooms .room-btn').filter({ hasText: '@' }).count(), 0);
  await C.context.close();
  for (const o of [A, B]) assert.deepEqual(o.problems, { dialogs: [], errors: [] });
});

test('the typing line across two browsers, gone after its time', T, async () => {
  assert.ok(A && B, 'needs the users of the first test');
  await roomButton(A.page, '#general').click();
  await roomButton(B.page, '#general').click();
  await A.page.locator('#text').pressSequentially('hello the', { delay: 30 });
  await B.page.locator('#typing').getByText(alice + ' is typing…').waitFor();
  assert.equal(await A.page.textContent('#typing'), '', 'nobody sees themselves typing');
  // Only while the room is shown: in another room Bob does not see it.
  await roomButton(B.page, '@' + alice).click();
  assert.equal(await B.page.textContent('#typing'), '');
  await roomButton(B.page, '#general').click();
  await B.page.locator('#typing').getByText(alice + ' is typing…').waitFor({ state: 'visible' }).catch(() => {});
  // No more typing: gone by itself after the ttl (5 s).
  await B.page.locator('#typing').getByText(alice + ' is typing…').waitFor({ state: 'detached', timeout: 9000 });
  await A.page.fill('#text', '');
  for (const o of [A, B]) assert.deepEqual(o.problems, { dialogs: [], errors: [] });
});

test('edit and delete your own message; no controls on others\'', T, async () => {
  assert.ok(A && B, 'needs the users of the first test');
  const text = 'tpyo here ' + alice;
  await h.send(A.page, text);
  const mine = h.confirmed(A.page, text, alice);
  await mine.waitFor();
  await h.confirmed(B.page, text, alice).waitFor();
  assert.equal(await h.confirmed(B.page, text, alice).getByRole('button', { name: 'Edit message' }).count(), 0, 'no edit on others\' messages');
  assert.equal(await h.confirmed(B.page, text, alice).getByRole('button', { name: 'Delete message' }).count(), 0, 'no delete on others\' messages');

  await mine.getByRole('button', { name: 'Edit message' }).click();
  const box = A.page.getByRole('textbox', { name: 'Edit message' });
  await box.fill('typo fixed ' + alice);
  await box.press('Enter');
  const fixed = h.confirmed(A.page, 'typo fixed ' + alice, alice);
  await fixed.locator('.edited').getByText('(edited)').waitFor();
  await h.confirmed(B.page, 'typo fixed ' + alice, alice).locator('.edited').waitFor();

  // Escape leaves an edit unchanged.
  await fixed.getByRole('button', { name: 'Edit message' }).click();
  await A.page.getByRole('textbox', { name: 'Edit message' }).press('Escape');
  await A.page.getByRole('textbox', { name: 'Edit message' }).waitFor({ state: 'detached' });

  const id = await fixed.getAttribute('data-id');
  await fixed.getByRole('button', { name: 'Delete message' }).click();
  for (const p of [A.page, B.page]) {
    const li = p.locator(`#messages .msg[data-id="${id}"]`);
    await li.locator('.deleted-text').getByText('Message deleted').waitFor();
    assert.equal(await li.getByRole('button').count(), 0, 'a deleted message has no controls');
  }
  for (const o of [A, B]) assert.deepEqual(o.problems, { dialogs: [], errors: [] });
});

test('search: results newest first, a click jumps to the message in its room', T, async () => {
  assert.ok(A && B, 'needs the users of the first test');
  const word = h.uniqueName('needle');
  const seeder = h.uniqueName('sam');
  // An old message in general, 120 messages up the history.
  const texts = ['the ' + word + ' is old'].concat(Array.from({ length: 120 }, (_, i) => 'filler ' + i));
  await h.seedMessages(A.page, seeder, texts);
  // And a newer one in a direct room.
  await A.page.getByRole('button', { name: 'Message ' + bob }).click();
  await h.send(A.page, 'the ' + word + ' is new');
  await shown(A.page, 'the ' + word + ' is new', alice).waitFor();
  // A fresh page holds only the latest 100 messages of general.
  await A.page.reload();
  await roomButton(A.page, '#general').waitFor();
  await h.confirmed(A.page, 'filler 119', seeder).waitFor();

  await A.page.getByRole('searchbox', { name: 'Search messages' }).fill(word);
  await A.page.getByRole('searchbox', { name: 'Search messages' }).press('Enter');
  const results = A.page.locator('#search-results .result');
  await results.nth(1).waitFor();
  assert.equal(await results.count(), 2);
  assert.match(await results.nth(0).textContent(), /is new/, 'newest first');
  assert.match(await results.nth(0).locator('.result-room').textContent(), new RegExp('@' + bob));
  assert.match(await results.nth(1).textContent(), /is old/);

  // The old one: general pages back until it is there, in view, highlighted.
  assert.equal(await h.message(A.page, 'the ' + word + ' is old').count(), 0, 'not loaded yet');
  await results.nth(1).click();
  const old = A.page.locator('#messages .msg.highlight').filter({ hasText: 'the ' + word + ' is old' });
  await old.waitFor({ timeout: 20000 });
  assert.equal(await old.isVisible(), true);
  const inView = await old.evaluate((li) => {
    const r = li.getBoundingClientRect(), box = li.parentElement.getBoundingClientRect();
    return r.top >= box.top && r.bottom <= box.bottom;
  });
  assert.ok(inView, 'scrolled into view');

  // The new one: its room is selected.
  await results.nth(0).click();
  await A.page.locator('#chat .messages:not([hidden]) .msg.highlight').filter({ hasText: 'is new' }).waitFor();
  assert.equal(await A.page.textContent('#room-title'), bob);

  // Back in general, the place read before is still on screen.
  await roomButton(A.page, '#general').click();
  const back = A.page.locator('#messages .msg').filter({ hasText: 'the ' + word + ' is old' });
  await back.waitFor();
  const stillInView = await back.evaluate((li) => {
    const r = li.getBoundingClientRect(), box = li.parentElement.getBoundingClientRect();
    return r.top >= box.top && r.bottom <= box.bottom;
  });
  assert.ok(stillInView, 'general keeps its scroll position across a visit to another room');
  for (const o of [A, B]) assert.deepEqual(o.problems, { dialogs: [], errors: [] });
});

test('keyboard only: search, jump to the result, edit it', T, async () => {
  assert.ok(A && B, 'needs the users of the first test');
  const word = h.uniqueName('keys');
  await roomButton(A.page, '#general').click();
  await h.send(A.page, 'typed with ' + word);
  await h.confirmed(A.page, 'typed with ' + word, alice).waitFor();
  const page = A.page;
  await page.focus('#search');
  await page.keyboard.press('Escape'); // clears the last search
  assert.equal(await page.inputValue('#search'), '');
  await page.keyboard.type(word);
  await page.keyboard.press('Enter');
  await page.locator('#search-results .result').first().waitFor();
  for (let i = 0; i < 6 && !(await page.evaluate(() => document.activeElement.classList.contains('result'))); i++) {
    await page.keyboard.press('Tab');
  }
  assert.equal(await page.evaluate(() => document.activeElement.classList.contains('result')), true, 'Tab reaches the result');
  await page.keyboard.press('Enter');
  const li = page.locator('#messages .msg.highlight').filter({ hasText: 'typed with ' + word });
  await li.waitFor();
  assert.equal(await li.evaluate((e) => e === document.activeElement), true, 'the message has the focus');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute('aria-label')), 'Edit message');
  await page.keyboard.press('Enter');
  await page.keyboard.press('End');
  await page.keyboard.type(' (by keyboard)');
  await page.keyboard.press('Enter');
  await h.confirmed(B.page, 'typed with ' + word + ' (by keyboard)', alice).locator('.edited').waitFor();
  for (const o of [A, B]) assert.deepEqual(o.problems, { dialogs: [], errors: [] });
});

test('a room on screen catches up after the connection was lost', T, async () => {
  assert.ok(A && B, 'needs the users of the first test');
  await roomButton(A.page, '@' + bob).click();
  await A.page.locator('#chat .messages:not([hidden]) .msg').first().waitFor();
  await A.context.setOffline(true);
  await A.page.locator('#chat .status:not([data-state="connected"])').first().waitFor({ timeout: 20000 });
  const missed = 'while you were away, ' + alice;
  await roomButton(B.page, '@' + alice).click(); // Alice is no longer in the online list
  await h.send(B.page, missed);
  await shown(B.page, missed, bob).waitFor();
  await A.context.setOffline(false);
  await A.page.locator('#chat .status[data-state="connected"]').waitFor({ timeout: 20000 });
  await shown(A.page, missed, bob).waitFor({ timeout: 15000 });
  assert.equal(await A.page.textContent('#room-title'), bob, 'still in the same room');
  assert.equal(await shown(A.page, missed, bob).count(), 1, 'shown once');
  for (const o of [A, B]) assert.deepEqual(o.problems.dialogs, []);
});
