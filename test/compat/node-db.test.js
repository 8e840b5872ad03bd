'use strict';
// "Same database": the server runs on a PostgreSQL database that the Node.js
// server had been using (made by lib/node-db.js; run.sh --pg sets
// COMPAT_DATABASE_URL). Old users log in with the passwords they registered
// with, the old history is shown, old rows stay as they were, and what the Go
// server writes is readable by the Node server (rows in the seed's columns,
// hashes that npm bcrypt verifies). Skipped when COMPAT_DATABASE_URL is unset.
const { describe, it, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const bcrypt = require('bcrypt');
const h = require('./lib/harness');
const { FRESH_USER, MESSAGES, fixture, withClient } = require('./lib/node-db');

const dbURL = process.env.COMPAT_DATABASE_URL;
const variant = 'v4-websocket';

describe('a database the Node.js server left behind', { skip: !dbURL && 'COMPAT_DATABASE_URL not set (run.sh --pg ADMIN_URL)' }, () => {
  afterEach(() => h.closeAll());
  const q = (sql, args) => withClient(dbURL, (c) => c.query(sql, args));

  it('the history shown on connection is chat_history in id order', async () => {
    const c = await h.connect(variant);
    const hist = await c.history();
    // The seed's events show the room "general" (id 1) only, without
    // deleted lines: other tests in this database also write rooms' lines
    // (conversations.test.js), which a seed client must never see.
    const { rows } = await q('SELECT content, username FROM chat_history WHERE room_id = 1 AND deleted_at IS NULL ORDER BY id');
    const want = rows.map((r) => ({ msg: r.content, user: r.username })).slice(-hist.length);
    assert.ok(hist.length > 0, 'history is not empty');
    assert.deepEqual(
      hist.map((m) => ({ msg: m.msg, user: m.user })),
      want,
      'load all messages = the newest rows of chat_history, oldest first',
    );
    if (rows.length <= hist.length) {
      assert.deepEqual(hist.slice(0, MESSAGES.length).map((m) => ({ msg: m.msg, user: m.user })), MESSAGES);
    }
  });

  for (const u of [...fixture, { ...FRESH_USER, note: 'hashed by npm bcrypt when the database was made' }]) {
    it(`${u.username} logs in with the password registered on Node (${u.note || (u.hash || '').slice(0, 4)})`, async () => {
      const watcher = await h.connect(variant, 'watcher');
      const c = await h.connect(variant, 'old');
      assert.deepEqual(await c.login(u.username, 'not the password'), { success: false, message: 'Invalid username or password' });
      const ack = await c.login(u.username, u.password);
      assert.equal(ack.success, true, JSON.stringify(ack));
      await watcher.waitFor('get users', (l) => Array.isArray(l) && l.includes(u.username));
      assert.deepEqual(await c.register(u.username, 'anything'), { success: false, message: 'Username already taken' });
    });
  }

  it('old rows are kept unchanged and new rows are readable with the seed\'s queries', async () => {
    const c = await h.loggedIn(variant, 'gowrite');
    const msg = h.uniq('written by go');
    c.emit('send message', msg);
    await c.waitFor('new message', (m) => m && m.msg === msg);
    // The seed's own reads: SELECT * ... ORDER BY id, and SELECT * FROM user_table.
    let rows = [];
    for (let i = 0; i < 25 && !rows.some((r) => r.content === msg); i++) {
      ({ rows } = await q('SELECT * FROM chat_history ORDER BY id'));
      if (!rows.some((r) => r.content === msg)) await h.sleep(200);
    }
    assert.deepEqual(rows.slice(0, MESSAGES.length).map((r) => ({ msg: r.content, user: r.username })), MESSAGES);
    assert.ok(rows.some((r) => r.content === msg && r.username === c.username), 'the new message is a chat_history row');
    const users = (await q('SELECT * FROM user_table')).rows;
    for (const u of fixture) {
      const row = users.find((r) => r.username === u.username);
      assert.equal(row && row.password, u.hash, `${u.username}'s hash is unchanged`);
    }
    const mine = users.find((r) => r.username === c.username);
    assert.ok(mine, 'the Go-registered user is a user_table row');
    assert.match(mine.password, /^\$2[ab]\$10\$/);
    assert.equal(bcrypt.compareSync(c.password, mine.password), true, 'npm bcrypt (the Node server) accepts the Go-made hash');
  });
});
