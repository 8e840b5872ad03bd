// report-nginx.test.js: the page behind the nginx block users already have,
// the seed report's section 3.1 (test/report-nginx.conf): no Host (the
// server sees "backend"), no Upgrade (every page stays on long-polling), no
// X-Forwarded-For (every client comes from nginx's address). Primary and
// backup on one PostgreSQL, as failover.test.js runs them (see
// failover-helpers.js), with only the ports of that file rewritten. In real
// Chromium: register, log in, chat, read the history, reload without logging
// in again; then SIGKILL the primary and keep chatting on the backup (the
// outbox resends, nothing is lost), start the primary again and keep
// chatting while nginx moves the pages back to it. Every message sent must
// show exactly once on both pages and be stored once. Saves
// out/report-nginx.png. Skips without nginx or PostgreSQL, except under
// CI=true, where it fails.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const h = require('./helpers');
const fo = require('./failover-helpers');

after(fo.closeAll);

// nginx's default fail_timeout: for this long after the primary failed,
// nginx sends everything to the backup even when the primary is back.
const NGINX_FAIL_TIMEOUT_MS = 10000;

test('behind the report\'s own nginx block: chat, history, reload, kill -9 the primary, chat on the backup, primary back; every message once', { ...fo.T, timeout: 180000 }, async () => {
  fo.mustRun();
  const tag = crypto.randomBytes(3).toString('hex');
  const sent = []; // [author, text], in the order they were sent
  await fo.withCluster('test/report-nginx.conf', async (cluster, open, opened) => {
    const a = h.uniqueName('rna');
    const b = h.uniqueName('rnb');
    const A = await open();
    await h.register(A.page, a);
    const B = await open();
    await h.register(B.page, b);
    const who = (o) => (o === A ? a : b);
    const other = (o) => (o === A ? B : A);
    const say = async (o, text) => {
      await h.send(o.page, text);
      sent.push([who(o), text]);
    };

    // ----- 1. chat, live both ways -----
    await h.onlineUser(A.page, b).waitFor();
    await h.onlineUser(B.page, a).waitFor();
    await say(A, `hello through the report's nginx ${tag}`);
    await h.confirmed(B.page, sent[0][1], a).waitFor();
    await say(B, `hello back ${tag}`);
    await h.confirmed(A.page, sent[1][1], b).waitFor();

    // ----- 2. the history, for someone who logs in later -----
    const C = await open();
    await h.login(C.page, a); // a second tab of A's user: login, not register
    for (const [u, t] of sent) await h.confirmed(C.page, t, u).waitFor();
    await C.context.close();
    opened.pop();

    // ----- 3. a reload goes straight back to the chat, no password -----
    const tReload = Date.now();
    await A.page.reload();
    await A.page.locator('#chat').waitFor({ state: 'visible' });
    await A.page.locator('#chat .status[data-state="connected"]').waitFor();
    assert.equal(await A.page.isVisible('#auth'), false, 'no sign-in card after a reload');
    assert.equal(await A.page.textContent('#me-name'), a, 'still signed in as before');
    for (const [u, t] of sent) await h.confirmed(A.page, t, u).waitFor();
    await h.onlineUser(B.page, a).waitFor();
    assert.deepEqual(A.sent.filter((e) => e.t >= tReload && /^(login|register)$/.test(e.event)), [],
      'no login or register sent by the reload');

    // ----- 4. kill -9 the primary and keep chatting: the outbox resends -----
    cluster.kill('primary');
    const tKill = Date.now();
    for (let i = 1; i <= 3; i++) {
      await say(A, `A on the backup ${i} ${tag}`);
      await say(B, `B on the backup ${i} ${tag}`);
    }
    for (const o of [A, B]) {
      await o.page.locator('#chat .status[data-state="connected"]').waitFor({ timeout: 20000 });
      for (const [u, t] of sent) await h.confirmed(o.page, t, u).waitFor({ timeout: 20000 });
      await h.pending(o.page).first().waitFor({ state: 'detached', timeout: 10000 });
    }
    console.log(`# report-nginx: kill -> the six messages of the failover confirmed on both pages in ${Date.now() - tKill} ms`);

    // ----- 5. the primary comes back; messages keep flowing while nginx -----
    // sends the pages back to it (after its fail_timeout): until both
    // pages have resumed their sessions on the primary, and two rounds more.
    const primaryLog = cluster.logFile('primary');
    const logFrom = fs.statSync(primaryLog).size;
    await cluster.startChat('primary');
    const tBack = Date.now();
    const resumedOnPrimary = (user) => fs.readFileSync(primaryLog, 'utf8').slice(logFrom)
      .split('\n').some((l) => l.includes('resumed session') && l.includes(user));
    let turn = A, movedAt = 0, tMoved = 0;
    for (let i = 1; i <= 40; i++) {
      const text = `${who(turn) === a ? 'A' : 'B'} with the primary back ${i} ${tag}`;
      await say(turn, text);
      await h.confirmed(other(turn).page, text, who(turn)).waitFor({ timeout: 20000 });
      turn = other(turn);
      if (!movedAt && resumedOnPrimary(a) && resumedOnPrimary(b)) { movedAt = i; tMoved = Date.now(); }
      if (movedAt && i >= movedAt + 4) break;
      await A.page.waitForTimeout(1000); // pace: a conversation, spread over nginx's fail_timeout
    }
    assert.ok(movedAt, `both pages resumed their sessions on the restarted primary (nginx's fail_timeout is ${NGINX_FAIL_TIMEOUT_MS / 1000} s)`);
    console.log(`# report-nginx: primary back -> both pages on it again within ${tMoved - tBack} ms;`
      + ` ${sent.length} messages so far`);
    for (const o of [A, B]) {
      await o.page.locator('#chat .status[data-state="connected"]').waitFor({ timeout: 20000 });
      for (const [u, t] of sent) await h.confirmed(o.page, t, u).waitFor({ timeout: 20000 });
    }
    // Room for a late duplicate (a resent outbox entry, a second broadcast)
    // to show before counting; absence cannot be waited for.
    await A.page.waitForTimeout(1500);

    // ----- 6. every message exactly once, on both pages and in the database -----
    for (const o of [A, B]) {
      const name = who(o);
      const shown = await h.shownMessages(o.page);
      assert.deepEqual(shown.map(([u, t]) => u + ': ' + t).sort(), sent.map(([u, t]) => u + ': ' + t).sort(),
        `${name} shows every message sent, once, and nothing else`);
      assert.equal(await h.pending(o.page).count(), 0, `no pending marker on ${name}'s page`);
      assert.equal(await o.page.evaluate(() => localStorage.getItem('chat.outbox')), null, `${name}'s outbox is empty`);
      const ids = await o.page.$$eval('#messages .msg', (els) => els.map((e) => Number(e.dataset.id)));
      assert.deepEqual(ids, ids.slice().sort((x, y) => x - y), `ordered by id on ${name}'s page`);
      assert.equal(await o.page.isVisible('#auth'), false, `${name} was never sent back to the card`);
    }
    const rows = fo.psql(cluster.db, `SELECT content FROM chat_history WHERE content LIKE '%${tag}'`);
    assert.equal(rows.status, 0, rows.stderr);
    assert.deepEqual(rows.stdout.trim().split('\n').sort(), sent.map(([, t]) => t).sort(), 'each stored once');
    console.log(`# report-nginx: ${sent.length} messages, each shown once on both pages and stored once`);

    await h.styledShot(A.page, 'report-nginx');
  });
});
