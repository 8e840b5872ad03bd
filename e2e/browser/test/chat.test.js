// chat.test.js: what users notice in the browser: two people chatting live,
// a newcomer reading the history, hostile text staying text, error messages
// on the card, logging out, and the composer's keys and counter. (Scrolling
// up while messages arrive is scroll.test.js.)
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = { timeout: 45000 };
const { open } = h.sharedBrowser();

// Users shared by the tests below, created by the first one.
const alice = h.uniqueName('alice');
const bob = h.uniqueName('bob');
let A, B;

test('two users chat live and a newcomer sees the history', T, async () => {
  [A, B] = await h.signedIn(open, alice, bob);

  for (const p of [A.page, B.page]) {
    await h.onlineUser(p, alice).waitFor();
    await h.onlineUser(p, bob).waitFor();
  }
  assert.equal(await A.page.textContent('#me-name'), alice);
  await A.page.waitForFunction(() => document.activeElement && document.activeElement.id === 'text');

  const hello = 'hello from ' + alice;
  await h.send(A.page, hello);
  await h.message(B.page, hello, alice).waitFor();
  await h.message(A.page, hello, alice).waitFor();
  assert.equal(await A.page.locator('#messages .msg.mine').filter({ hasText: hello }).count(), 1,
    'the sender sees their own message marked as theirs');
  assert.equal(await B.page.locator('#messages .msg.mine').filter({ hasText: hello }).count(), 0,
    'the other user does not see it as theirs');

  const reply = 'hi ' + alice + ', ' + bob + ' here';
  await h.send(B.page, reply);
  await h.message(A.page, reply, bob).waitFor();
  assert.equal(await A.page.inputValue('#text'), '', 'the composer is cleared after sending');

  const C = await open();
  const carol = h.uniqueName('carol');
  await h.register(C.page, carol);
  await h.message(C.page, reply, bob).waitFor();
  const shown = await h.shownMessages(C.page);
  const iHello = shown.findIndex(([u, m]) => u === alice && m === hello);
  const iReply = shown.findIndex(([u, m]) => u === bob && m === reply);
  assert.ok(iHello >= 0 && iReply > iHello, 'the newcomer sees both messages, oldest first: ' + JSON.stringify(shown.slice(-5)));
  await h.onlineUser(A.page, carol).waitFor();
  assert.match(await A.page.textContent('#sidebar .user-count'), /^\d+$/);
  assert.ok(Number(await A.page.textContent('#sidebar .user-count')) >= 3, 'the online count includes everyone');
  await C.context.close();
  await h.onlineUser(A.page, carol).waitFor({ state: 'detached' });

  for (const o of [A, B]) assert.deepEqual(o.problems, { dialogs: [], errors: [] });
});

test('markup in a message is shown as text and never runs', T, async () => {
  assert.ok(A && B, 'needs the users of the first test');
  const evil = '<img src=x onerror=alert(1)>';
  const C = await open();
  await h.send(A.page, evil);
  for (const o of [A, B]) await h.message(o.page, evil, alice).waitFor();
  // The newcomer gets it through the history instead.
  await h.login(C.page, bob);
  await h.message(C.page, evil, alice).waitFor();
  await A.page.waitForTimeout(300); // room for an onerror handler to fire, if one existed
  for (const o of [A, B, C]) {
    assert.equal(await o.page.locator('#messages img').count(), 0, 'no img element in the message list');
    assert.deepEqual(o.problems.dialogs, [], 'no dialog opened');
    const texts = await o.page.$$eval('#messages .msg .text', (els) => els.map((e) => e.textContent));
    assert.ok(texts.includes(evil), 'the literal text is shown');
  }
  await C.context.close();
});

test('wrong password and taken name show the server message inline', T, async () => {
  assert.ok(A && B, 'needs the users of the first test');
  const C = await open();
  const { page } = C;
  assert.equal(await page.evaluate(() => document.activeElement.id), 'username', 'the first field has focus');

  // Watch the submit button so a short busy state is not missed.
  await page.evaluate(() => {
    const btn = document.getElementById('auth-submit');
    window.sawBusy = false;
    new MutationObserver(() => { if (btn.disabled) window.sawBusy = true; })
      .observe(btn, { attributes: true, subtree: true });
  });
  await h.showLogin(page);
  await h.fillCard(page, alice, 'not the password');
  await page.locator('#auth-error').getByText('Invalid username or password').waitFor();
  assert.ok(await page.evaluate(() => window.sawBusy), 'the button is disabled while waiting');
  assert.equal(await page.isEnabled('#auth-submit'), true, 'the button is usable again');
  assert.equal(await page.isVisible('#chat'), false);

  await h.showRegister(page);
  assert.equal(await page.textContent('#auth-error'), '', 'switching forms clears the error');
  await h.fillCard(page, bob, 'whatever');
  await page.locator('#auth-error').getByText('Username already taken').waitFor();
  assert.equal(await page.isVisible('#chat'), false);
  await C.context.close();
});

test('logging out returns to the card and leaves the online list', T, async () => {
  assert.ok(A && B, 'needs the users of the first test');
  await h.onlineUser(B.page, alice).waitFor();
  await A.page.click('#logout');
  await A.page.locator('#auth').waitFor({ state: 'visible' });
  assert.equal(await A.page.isVisible('#chat'), false);
  assert.match(await A.page.textContent('#auth-notice'), /logged out/i);
  await h.onlineUser(B.page, alice).waitFor({ state: 'detached' });
  await h.onlineUser(B.page, bob).waitFor();

  assert.equal(await h.storedSession(A.page), null, 'the stored session is gone');

  // Logging back in works on the same page.
  await h.login(A.page, alice);
  await h.onlineUser(B.page, alice).waitFor();
});

test('composer: Shift+Enter makes a new line, empty text is not sent, counter near the limit', T, async () => {
  assert.ok(A && B, 'needs the users of the first test');
  const { page } = A;
  await page.click('#text');
  await page.keyboard.type('first line');
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('second line');
  assert.equal(await page.inputValue('#text'), 'first line\nsecond line');
  await page.keyboard.press('Enter');
  await h.message(B.page, 'first line\nsecond line', alice).waitFor();

  const before = await B.page.locator('#messages .msg').count();
  await page.fill('#text', '   ');
  await page.press('#text', 'Enter');
  assert.equal(await page.isDisabled('#send'), true, 'Send is disabled for blank text');
  await B.page.waitForTimeout(400);
  assert.equal(await B.page.locator('#messages .msg').count(), before, 'blank text is not sent');

  assert.equal(await page.isVisible('#counter'), false, 'no counter for short text');
  await page.fill('#text', 'x'.repeat(1900));
  await page.locator('#counter').getByText('1900 / 2000').waitFor();
  await page.fill('#text', '');
  assert.equal(await page.isVisible('#counter'), false);

});

test('a message the server refuses stays in the composer area: reason, edit, retry, discard', T, async () => {
  // Uses the Go server's `send message` acknowledgement; only text past the
  // 2000-character limit (maxlength defeated) gets refused.
  assert.ok(A && B, 'needs the users of the first test');
  const { page } = A;
  await page.$eval('#text', (t) => t.removeAttribute('maxlength'));
  const tooLong = 'z'.repeat(1990) + ' the end.....';
  await page.fill('#text', tooLong);
  await page.locator('#counter.over').waitFor();
  await page.press('#text', 'Enter');
  const item = h.failed(page);
  await item.waitFor();
  assert.match(await item.locator('.failed-reason').textContent(), /2000/, 'the reason is shown');
  assert.equal(await item.locator('.failed-text').textContent(), tooLong, 'with the text');
  assert.equal(await h.pending(page).count(), 0, 'no longer pending in the list');
  assert.equal(await h.message(page, tooLong).count(), 0, 'not shown as a message');
  await h.screenshot(page, 'chat-failed');

  // Edit: the text goes back to the composer.
  await item.getByRole('button', { name: 'Edit' }).click();
  assert.equal(await page.inputValue('#text'), tooLong, 'the refused text is back in the composer');
  assert.equal(await h.failed(page).count(), 0);

  // Retry: sent again, refused again; Discard: gone, also from storage.
  await page.press('#text', 'Enter');
  await item.waitFor();
  await item.getByRole('button', { name: 'Retry' }).click();
  await h.pending(page).waitFor({ state: 'detached' });
  await item.waitFor();
  assert.equal(await h.failed(page).count(), 1, 'one entry, not two');
  await item.getByRole('button', { name: 'Discard' }).click();
  assert.equal(await h.failed(page).count(), 0);
  assert.equal(await page.evaluate(() => localStorage.getItem('chat.outbox')), null, 'the outbox is empty');
  assert.equal(await page.inputValue('#text'), '');
  await page.$eval('#text', (t) => t.setAttribute('maxlength', '2000'));
});

test('a reload goes straight back to the chat; no password is kept; logout forgets the session', T, async () => {
  assert.ok(A && B, 'needs the users of the first test');
  const dan = h.uniqueName('dan');
  const D = await open();
  const { page } = D;
  await h.register(page, dan);
  const saved = await h.storedSession(page);
  assert.equal(saved && saved.username, dan, 'the session is stored');
  assert.ok(typeof saved.token === 'string' && saved.token.length >= 20, 'with the token of the login ack');
  assert.ok(!(await page.evaluate(() => JSON.stringify(localStorage))).includes(h.PASSWORD), 'no password in storage');
  assert.equal(await page.inputValue('#password'), '', 'nor in the form');

  await page.reload();
  await page.locator('#chat').waitFor({ state: 'visible' });
  assert.equal(await page.isVisible('#auth'), false, 'no sign-in card');
  assert.equal(await page.textContent('#me-name'), dan);
  await page.locator('#chat .status[data-state="connected"]').waitFor();
  await h.onlineUser(A.page, dan).waitFor();
  await h.send(page, 'back after a reload');
  await h.confirmed(A.page, 'back after a reload', dan).waitFor();
  await h.confirmed(page, 'back after a reload', dan).waitFor();
  assert.equal(await h.message(page, 'back after a reload', dan).count(), 1);

  await page.click('#logout');
  await page.locator('#auth').waitFor({ state: 'visible' });
  assert.equal(await h.storedSession(page), null, 'logout clears the stored session');
  await h.onlineUser(A.page, dan).waitFor({ state: 'detached' });
  await page.reload();
  await page.locator('#auth').waitFor({ state: 'visible' });
  await page.waitForTimeout(500);
  assert.equal(await page.isVisible('#chat'), false, 'after logout a reload shows the card');
  assert.deepEqual(D.problems, { dialogs: [], errors: [] });
  await D.context.close();
});

test('pending messages survive a page reload while the server is unreachable', T, async () => {
  assert.ok(A && B, 'needs the users of the first test');
  const eve = h.uniqueName('eve');
  const E = await open();
  const { page, context } = E;
  await h.register(page, eve);
  // Cut the Socket.IO transport (its polling handshake; the WebSocket only
  // ever comes as an upgrade of it) and reload: the page cannot connect.
  const socketIO = (url) => new URL(url).pathname === '/socket.io/';
  await context.route(socketIO, (route) => route.abort());
  await page.reload();
  await page.locator('#chat').waitFor({ state: 'visible' });
  await page.locator('#chat .status[data-state="reconnecting"]').waitFor();
  const texts = ['written offline ' + eve, 'still offline ' + eve];
  for (const t of texts) await h.send(page, t);
  await h.pending(page).nth(1).waitFor();

  await page.reload(); // still cut off: the outbox comes back from localStorage
  await page.locator('#chat').waitFor({ state: 'visible' });
  await h.pending(page).nth(1).waitFor();
  assert.deepEqual(await h.pending(page).locator('.text').allTextContents(), texts, 'both still pending, in order');

  await context.unroute(socketIO);
  for (const t of texts) {
    await h.confirmed(page, t, eve).waitFor({ timeout: 15000 });
    await h.confirmed(B.page, t, eve).waitFor();
  }
  await h.pending(page).first().waitFor({ state: 'detached' });
  await B.page.waitForTimeout(300);
  for (const p of [page, B.page]) {
    for (const t of texts) assert.equal(await h.message(p, t, eve).count(), 1, `"${t}" once`);
  }
  assert.equal(await page.evaluate(() => localStorage.getItem('chat.outbox')), null, 'the outbox is empty');
  await E.context.close();
});

test('a bogus stored token: the sign-in card says the session expired', T, async () => {
  const o = await open();
  const { page } = o;
  await page.evaluate(() => localStorage.setItem('chat.session', JSON.stringify({ username: 'ghost', token: 'not-a-real-token' })));
  await page.reload();
  await page.locator('#auth-notice').getByText('Session expired, please log in again').waitFor();
  assert.equal(await page.isVisible('#auth'), true);
  assert.equal(await page.isVisible('#chat'), false);
  assert.equal(await h.storedSession(page), null, 'the bogus session is forgotten');
  assert.equal(await page.inputValue('#username'), 'ghost', 'the name is filled in');
  await o.context.close();
});
