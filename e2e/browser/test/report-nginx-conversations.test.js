// report-nginx-conversations.test.js: the conversation features (rooms,
// direct messages, typing, edit and delete, search, unread counts) in real
// Chromium behind the nginx block users already have, the seed report's
// section 3.1 (test/report-nginx.conf): no Host, no Upgrade (both pages stay
// on long-polling), no X-Forwarded-For (both come from nginx's address).
// Primary and backup on one PostgreSQL as in report-nginx.test.js (see
// failover-helpers.js). Two users in two browser contexts: one creates a
// room, the other joins, they talk there; a direct message from the online
// list; the typing line; an edit and a delete reaching the other; search
// finding a room message and jumping to it; unread counts for a room the
// other is not viewing. Then the primary is killed (SIGKILL) mid-
// conversation, just as one page sends a room message, and the other page
// sends one while it says "Reconnecting…"; the room carries on on the
// backup: every room message, sent before and after, shown once on both
// pages and stored once, and the room list still right. Saves
// out/report-nginx-conversations.png. Skips without nginx or PostgreSQL,
// except under CI=true, where it fails.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const h = require('./helpers');
const fo = require('./failover-helpers');

after(fo.closeAll);

const ROOM_VIEW = '#chat .messages:not([hidden]) .msg';

// pageState is what a page shows, printed when the test fails.
function pageState(page) {
  return page.evaluate(() => ({
    me: document.querySelector('#me-name').textContent,
    status: document.querySelector('#chat .status').textContent,
    room: document.querySelector('#room-title').textContent,
    roomError: document.querySelector('#room-error').textContent,
    composer: document.querySelector('#text').value,
    rooms: [...document.querySelectorAll('#rooms .room-btn')].map((b) => b.getAttribute('aria-label')),
    shown: [...document.querySelectorAll('#chat .messages:not([hidden]) .msg')].map((li) =>
      (li.classList.contains('pending') ? '(pending) ' : '') + li.querySelector('.author').textContent + ': '
      + li.querySelector('.text').textContent),
  }));
}

test('behind the report\'s own nginx block: a room, a direct message, typing, edit, delete, search, unread; kill -9 the primary and the room carries on', { ...fo.T, timeout: 180000 }, async () => {
  fo.mustRun();
  const tag = crypto.randomBytes(3).toString('hex');
  await fo.withCluster('test/report-nginx.conf', async (cluster, open) => {
    const a = h.uniqueName('rca');
    const b = h.uniqueName('rcb');
    const [A, B] = await h.signedIn(open, a, b);
    const who = (o) => (o === A ? a : b);
    const other = (o) => (o === A ? B : A);
    const button = (o, name) => o.page.getByRole('button', { name, exact: true });
    const selected = (o, label) => h.roomButton(o.page, label).and(o.page.locator('[aria-current="true"]'));
    // What was said in the room, in order: [author, text]; a deleted
    // message stays in its place as [author, 'Message deleted'].
    const said = [];
    // post sends a room message and waits until its sender's page shows it
    // stored; say also waits for the other page.
    const post = async (o, text) => {
      await h.send(o.page, text);
      said.push([who(o), text]);
      await h.shown(o.page, text, who(o)).waitFor();
    };
    const say = async (o, text) => {
      await post(o, text);
      await h.shown(other(o).page, text, who(o)).waitFor();
    };
    await h.onlineUser(A.page, b).waitFor();
    await h.onlineUser(B.page, a).waitFor();

    // ----- 1. A creates a room; B joins it -----
    const room = h.uniqueName('ops-');
    await A.page.getByRole('textbox', { name: 'New room name' }).fill(room);
    await button(A, 'Create').click();
    await selected(A, '#' + room).waitFor();
    assert.equal(await A.page.textContent('#room-title'), room);
    // A public room made by someone else shows in B's list at B's next
    // `list rooms` (`rooms changed` goes to the creator's sockets only):
    // here, a reload, which resumes B's session through nginx.
    await B.page.reload();
    await button(B, 'Join #' + room).click();
    await selected(B, '#' + room).waitFor();
    assert.equal(await B.page.textContent('#room-title'), room);

    // ----- 2. room messages both ways -----
    const draft = `the plan is tbd ${tag}`;
    await say(A, draft);
    await say(B, `sounds good ${tag}`);
    assert.equal(await h.message(B.page, draft, a, ROOM_VIEW).count(), 1, 'once in the room');
    assert.equal(await h.message(B.page, draft, a, '#messages .msg').count(), 0, 'not in general');

    // ----- 3. the typing line, ended by the message -----
    const word = h.uniqueName('needle');
    const typed = `the ${word} is here ${tag}`;
    const composerA = A.page.getByRole('textbox', { name: 'Message', exact: true });
    // At a person's pace (~100 ms a key) for over 2.5 s: the page announces
    // typing at most once every 2.5 s a room (the server allows one every
    // 2 s), and A's last announcement came with the message just sent.
    await composerA.pressSequentially(typed, { delay: 100 });
    await B.page.getByText(a + ' is typing…').waitFor();
    assert.equal(await A.page.textContent('#typing'), '', 'nobody sees themselves typing');
    await composerA.press('Enter');
    said.push([a, typed]);
    await h.shown(B.page, typed, a).waitFor();
    await B.page.getByText(a + ' is typing…').waitFor({ state: 'detached', timeout: 3000 });

    // ----- 4. an edit and a delete reach the other -----
    await h.shown(A.page, draft, a).getByRole('button', { name: 'Edit message' }).click();
    const box = A.page.getByRole('textbox', { name: 'Edit message' });
    const fixed = `the plan is ready ${tag}`;
    await box.fill(fixed);
    await box.press('Enter');
    said[said.findIndex(([, t]) => t === draft)] = [a, fixed];
    await h.shown(B.page, fixed, a).getByText('(edited)').waitFor();
    assert.equal(await h.message(B.page, draft, a, ROOM_VIEW).count(), 0, 'the old text is gone on B');
    const gone = h.uniqueName('oops');
    await say(A, `${gone} wrong room ${tag}`);
    const id = await h.shown(B.page, `${gone} wrong room ${tag}`, a).getAttribute('data-id');
    await h.shown(A.page, `${gone} wrong room ${tag}`, a).getByRole('button', { name: 'Delete message' }).click();
    said[said.length - 1] = [a, 'Message deleted'];
    for (const o of [A, B]) {
      const li = o.page.locator(`${ROOM_VIEW}[data-id="${id}"]`);
      await li.getByText('Message deleted').waitFor();
      assert.equal(await li.getByRole('button').count(), 0, `no controls on a deleted message on ${who(o)}'s page`);
    }

    // ----- 5. unread counts for the room B is not viewing -----
    await button(B, '#general').click();
    await selected(B, '#general').waitFor();
    await post(A, `first while B is away ${tag}`);
    await post(A, `second while B is away ${tag}`);
    await button(B, `#${room}, 2 unread`).waitFor();
    assert.equal(await h.roomButton(B.page, '#' + room).locator('.unread').textContent(), '2', 'the badge says 2');
    assert.equal(await h.message(B.page, `first while B is away ${tag}`).count(), 0, 'not in general');
    await button(B, `#${room}, 2 unread`).click();
    await h.shown(B.page, `second while B is away ${tag}`, a).waitFor();
    await button(B, '#' + room).waitFor(); // read: the count is gone

    // ----- 6. a direct message from the online list -----
    await B.page.getByRole('button', { name: 'Message ' + a }).click();
    assert.equal(await B.page.textContent('#room-title'), a);
    const psst = `psst ${tag}`;
    await h.send(B.page, psst);
    await selected(B, '@' + a).waitFor();
    await h.shown(B.page, psst, b).waitFor();
    await button(A, `@${b}, 1 unread`).waitFor(); // A is in the room: unread
    assert.equal(await h.message(A.page, psst, b, ROOM_VIEW).count(), 0, 'not in the room A is viewing');
    await button(A, `@${b}, 1 unread`).click();
    await h.shown(A.page, psst, b).waitFor();
    await h.send(A.page, `got it ${tag}`);
    await h.shown(B.page, `got it ${tag}`, a).waitFor();
    await button(A, '@' + b).waitFor();

    // ----- 7. search finds the room message and jumps to it -----
    await button(B, '#general').click();
    const search = B.page.getByRole('searchbox', { name: 'Search messages' });
    await search.fill(word);
    await search.press('Enter');
    const results = B.page.locator('#search-results').getByRole('button');
    await results.first().waitFor();
    assert.equal(await results.count(), 1, 'one message has the word');
    assert.match(await results.first().textContent(), new RegExp('#' + room + '.*' + typed));
    await results.first().click();
    await selected(B, '#' + room).waitFor();
    const hit = B.page.locator(ROOM_VIEW + '.highlight').filter({ hasText: typed });
    await hit.waitFor();
    assert.equal(await hit.evaluate((li) => li === document.activeElement), true, 'the message has the focus');
    // A deleted message is never found.
    await search.fill(gone);
    await search.press('Enter');
    await B.page.locator('#search-status').getByText('Nothing found').waitFor();
    await B.page.getByRole('button', { name: 'Close search results' }).click();

    // Both on long-polling, as nginx passes no Upgrade.
    for (const o of [A, B]) assert.equal(o.onWebSocket(Date.now()), false, `${who(o)} is on long-polling`);

    // ----- 8. kill -9 the primary mid-conversation -----
    await button(A, '#' + room).click();
    await selected(A, '#' + room).waitFor();
    await selected(B, '#' + room).waitFor();
    const before = said.slice();
    for (const o of [A, B]) assert.deepEqual(await h.shownMessages(o.page, ROOM_VIEW), before, `the room on ${who(o)}'s page before the kill`);
    // A's message leaves the page just as the primary dies: the primary is
    // killed while the request carrying it waits here, so it reaches nginx
    // (and the backup, which does not know A's session) after the kill. B
    // presses Enter while its page says "Reconnecting…" (B's new
    // handshakes wait for it, however slow this machine).
    const inFlight = `in flight when the primary died ${tag}`;
    const during = `typed while reconnecting ${tag}`;
    let tKill = 0;
    const isSocketIO = (u) => u.pathname === '/socket.io/';
    const killOnSend = async (route) => {
      const req = route.request();
      if (!tKill && req.method() === 'POST' && (req.postData() || '').includes(inFlight)) {
        tKill = Date.now();
        const primary = cluster.procs.primary;
        const exited = new Promise((r) => primary.once('exit', r));
        cluster.kill('primary');
        await exited;
      }
      await route.continue().catch(() => {});
    };
    await A.page.route(isSocketIO, killOnSend);
    const gate = await fo.holdHandshakes(B.page);
    await B.page.getByRole('textbox', { name: 'Message', exact: true }).fill(during);
    await composerA.fill(inFlight);
    await composerA.press('Enter');
    said.push([a, inFlight]);
    await B.page.locator('#chat .status[data-state="reconnecting"]').waitFor({ timeout: 10000 });
    assert.ok(tKill, 'the primary was killed as A\'s message left');
    await B.page.getByRole('textbox', { name: 'Message', exact: true }).press('Enter');
    said.push([b, during]);
    const held = await gate.release();
    await A.page.unroute(isSocketIO, killOnSend);
    if (held > 5) console.log(`# report-nginx-conversations: B's reconnection waited ${held} ms for Enter`);
    for (const o of [A, B]) await o.page.locator('#chat .status[data-state="connected"]').waitFor({ timeout: 20000 });
    const tBack = Date.now();
    for (const [u, t] of said.slice(-2)) {
      for (const o of [A, B]) await h.shown(o.page, t, u).waitFor({ timeout: 20000 });
    }
    const tBoth = Date.now();
    await say(B, `B on the backup ${tag}`);
    await say(A, `A on the backup ${tag}`);
    console.log(`# report-nginx-conversations: kill -> both pages "Connected" in ${tBack - tKill} ms;`
      + ` the message in flight and the one typed while reconnecting on both pages in ${tBoth - tKill} ms`);
    // On the backup the rest works as before. The room list, read again
    // from the backup, does not count as unread what B read on screen
    // before the failover (A's reply in the direct room, which B left at
    // once); a new direct message shows as unread in A's list while A
    // stays in the room.
    assert.equal(await h.roomButton(B.page, '@' + a).getAttribute('aria-label'), '@' + a,
      'the direct message B saw before leaving that room is not unread');
    await button(B, '@' + a).click();
    await h.send(B.page, `still here ${tag}`);
    await button(A, `@${b}, 1 unread`).waitFor();
    await button(B, '#' + room).click();
    await selected(B, '#' + room).waitFor();
    await A.page.waitForTimeout(1500); // room for a late duplicate to show

    // ----- 9. nothing lost, nothing twice -----
    // Stored once each, in the order said, but for the two messages of the
    // failover, which both pages sent again on reconnecting, in either order.
    const rows = fo.psql(cluster.db, 'SELECT h.username, CASE WHEN h.deleted_at IS NULL THEN h.content ELSE \'Message deleted\' END'
      + ` FROM chat_history h JOIN chat_rooms r ON r.id = h.room_id WHERE r.name = '${room}' ORDER BY h.id`);
    assert.equal(rows.status, 0, rows.stderr);
    const stored = rows.stdout.trim().split('\n').map((l) => l.split('|'));
    const sorted = (list) => list.map((m) => m.join(': ')).sort();
    assert.deepEqual(sorted(stored), sorted(said), 'each room message stored once');
    assert.deepEqual(stored.slice(0, before.length), before, 'what was said before the kill, in order');
    assert.deepEqual(stored.slice(-2), said.slice(-2), 'what was said on the backup, last and in order');
    for (const o of [A, B]) {
      const name = who(o);
      assert.deepEqual(await h.shownMessages(o.page, ROOM_VIEW), stored, `${name} shows every room message once, in the stored order`);
      const ids = await o.page.$$eval(ROOM_VIEW, (els) => els.map((e) => Number(e.dataset.id)));
      assert.deepEqual(ids, ids.slice().sort((x, y) => x - y), `ordered by id on ${name}'s page`);
      assert.equal(await o.page.locator('#chat .msg.pending').count(), 0, `nothing pending on ${name}'s page`);
      assert.equal(await o.page.textContent('#room-error'), '', `no error under the room list on ${name}'s page`);
      assert.equal(await o.page.isVisible('#auth'), false, `${name} was never sent back to the card`);
      assert.equal(await o.page.textContent('#me-name'), name);
      assert.equal(o.sockets.some((s) => s.frames > 0), false, `${name} never had a WebSocket: long-polling throughout`);
    }
    await Promise.all([A.settled(), B.settled()]);
    const transport = (o) => `${o.requests.filter((r) => /\/socket\.io\/\?.*transport=polling/.test(r.url)).length}`
      + ` polling requests, ${o.sockets.length} WebSocket attempts (none carried a frame)`;
    console.log(`# report-nginx-conversations: ${said.length} room messages (${before.length} before the kill,`
      + ` ${said.length - before.length} after), each shown once on both pages and stored once;`
      + ` A: ${transport(A)}; B: ${transport(B)}`);
    assert.equal(fo.alive(cluster.procs.primary), false, 'the primary is dead');

    await h.styledShot(A.page, 'report-nginx-conversations');
  }, async (opened) => {
    for (const o of opened) console.log(`# page state: ${JSON.stringify(await pageState(o.page).catch((e) => String(e)))}`);
  });
});
