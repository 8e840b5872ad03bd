'use strict';
// The conversation events of docs/protocol.md (rooms, direct messages,
// room history, edits, typing, search, read markers) with the stock
// socket.io-client, over WebSocket and long-polling, 4.x and 2.x; and a
// client that knows only the seed's events sees none of it.

const { describe, it, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

const NO_ROOM = 'No such room, or you are not a member of it';

for (const variant of ['v4-websocket', 'v4-polling', 'v2-polling']) {
  describe(`conversations over ${variant}`, () => {
    afterEach(() => h.closeAll());

    it('rooms, direct messages, edits, typing, search and unread reach members only', async () => {
      const alice = await h.loggedIn(variant, 'alice');
      const bob = await h.loggedIn(variant, 'bob');
      const carol = await h.loggedIn(variant, 'carol');
      // A page written for the Node server: connected, logged in, and
      // listening to the seed's events only.
      const seed = await h.loggedIn(variant, 'seed');

      const created = await alice.emitAck('create room', { name: h.uniq('room') });
      assert.equal(created.success, true, JSON.stringify(created));
      const room = created.room.id;
      assert.equal((await bob.emitAck('join room', { room })).success, true);

      const sent = await alice.emitAck('send room message', { room, msg: 'hello room', id: h.uniq('k') });
      assert.equal(sent.success, true, JSON.stringify(sent));
      const got = await bob.waitFor('room message', (m) => m && m.id === sent.id);
      assert.equal(got.args[0].msg, 'hello room');
      assert.equal(got.args[0].room, room);
      assert.equal(got.args[0].user, alice.username);

      const refused = await carol.emitAck('room history', { room });
      assert.deepEqual(refused, { success: false, message: NO_ROOM });
      const hist = await bob.emitAck('room history', { room, limit: 10 });
      assert.deepEqual(hist.messages.map((m) => m.msg), ['hello room']);

      const dm = await alice.emitAck('send direct message', { to: carol.username, msg: 'just us' });
      assert.equal(dm.success, true, JSON.stringify(dm));
      await carol.waitFor('room message', (m) => m && m.room === dm.room && m.msg === 'just us');

      const edited = await alice.emitAck('edit message', { message: sent.id, msg: 'hello, room' });
      assert.equal(edited.success, true, JSON.stringify(edited));
      await bob.waitFor('message edited', (m) => m && m.id === sent.id && m.msg === 'hello, room');

      assert.equal((await alice.emitAck('typing', { room })).success, true);
      const typing = await bob.waitFor('typing', (t) => t && t.room === room);
      assert.equal(typing.args[0].user, alice.username);

      const word = h.uniq('needle');
      const inRoom = await alice.emitAck('send room message', { room, msg: `a ${word} here` });
      const found = await bob.emitAck('search', { q: word });
      assert.deepEqual(found.messages.map((m) => m.id), [inRoom.id]);
      assert.deepEqual((await carol.emitAck('search', { q: word })).messages, []);

      const unread = async (c) => (await c.emitAck('list rooms')).rooms.find((r) => r.id === room).unread;
      assert.equal(await unread(bob), 2);
      assert.equal((await bob.emitAck('mark read', { room, message: inRoom.id })).lastRead, inRoom.id);
      assert.equal(await unread(bob), 0);

      // Nothing of it reached the seed client or the outsider, and no
      // room's line came as `new message`.
      const fence = h.uniq('fence');
      alice.emit('send message', fence);
      await seed.waitFor('new message', (m) => m && m.msg === fence);
      await carol.waitFor('new message', (m) => m && m.msg === fence);
      for (const name of ['room message', 'message edited', 'typing']) {
        await seed.expectNone(name, () => true, 0);
      }
      await carol.expectNone('room message', (m) => m && m.room === room, 0);
      await carol.expectNone('typing', () => true, 0);
      await seed.expectNone('new message', (m) => m && /room|needle|just us/.test(m.msg), 0);
    });
  });
}
