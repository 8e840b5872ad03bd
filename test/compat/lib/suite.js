'use strict';
// Every row of the wire contract (docs/protocol.md, the events tables),
// checked with the stock socket.io-client against TARGET_URL. defineSuite is
// called once per client/transport variant by the *.test.js files.

const { describe, it, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness');

const { connect, loggedIn, uniq, isMessage, assertHealthy } = h;

const TAKEN = 'Username already taken';
const INVALID = 'Invalid username or password';
const NOBODY = 'No user is currently logged in.';

const hasUser = (name) => (list) => Array.isArray(list) && list.includes(name);
const lacksUser = (name) => (list) => Array.isArray(list) && !list.includes(name);

function assertFailureAck(ack, what) {
  assert.ok(ack !== null && typeof ack === 'object', `${what}: ack is an object, got ${JSON.stringify(ack)}`);
  assert.equal(ack.success, false, `${what}: success:false, got ${JSON.stringify(ack).slice(0, 300)}`);
  assert.equal(typeof ack.message, 'string', `${what}: message is a string, got ${JSON.stringify(ack).slice(0, 300)}`);
  assert.ok(ack.message.length > 0, `${what}: message is not empty`);
}

function defineSuite(variant) {
  describe(`protocol over ${variant}`, () => {
    afterEach(() => h.closeAll());

    const v = h.VARIANTS[variant];
    const ends = v.upgradesTo || v.transports[0];
    it(`connects over ${v.transports.join(' then ')} with Engine.IO v${v.eio}`, async () => {
      const c = await connect(variant);
      await c.history();
      const engine = c.socket.io.engine;
      if (v.upgradesTo) {
        // The upgrade completes on its own, without the client sending
        // anything (the server nudges the pending poll).
        const until = Date.now() + h.WAIT;
        while (engine.transport.name !== ends && Date.now() < until) await h.sleep(20);
      } else {
        await h.sleep(200); // an upgrade, were one allowed, would have happened
      }
      assert.equal(engine.transport.name, ends);
      assert.equal(Number(engine.transport.query.EIO), v.eio);
    });

    describe('load all messages', () => {
      it('is the first event a new connection receives, an array of {msg,user}', async () => {
        const c = await connect(variant);
        const hist = await c.history();
        assert.equal(c.events[0].name, 'load all messages', `first event: ${c.summary()}`);
        assert.ok(Array.isArray(hist), 'payload is an array');
        for (const m of hist) assert.ok(isMessage(m), `history entry ${JSON.stringify(m)} is {msg,user}`);
        // Exactly once.
        await c.expectNone('load all messages');
      });

      it('holds the stored messages oldest first', async () => {
        const a = await loggedIn(variant, 'hista');
        const b = await loggedIn(variant, 'histb');
        const m1 = uniq('first');
        const m2 = uniq('second');
        const m3 = uniq('third');
        a.emit('send message', m1);
        await a.waitFor('new message', (m) => m && m.msg === m1);
        b.emit('send message', m2);
        await b.waitFor('new message', (m) => m && m.msg === m2);
        a.emit('send message', m3);
        await a.waitFor('new message', (m) => m && m.msg === m3);
        const late = await connect(variant, 'late');
        const hist = await late.history();
        assert.equal(late.events[0].name, 'load all messages');
        const idx = [m1, m2, m3].map((msg) => hist.findIndex((m) => m.msg === msg));
        assert.ok(idx.every((i) => i >= 0), `all three in history: ${idx}`);
        assert.ok(idx[0] < idx[1] && idx[1] < idx[2], `oldest first: indexes ${idx}`);
        assert.deepEqual(
          idx.map((i) => ({ msg: hist[i].msg, user: hist[i].user })),
          [
            { msg: m1, user: a.username },
            { msg: m2, user: b.username },
            { msg: m3, user: a.username },
          ],
        );
      });
    });

    describe('register', () => {
      it('succeeds, rejects the same name again, and does not log in', async () => {
        const c = await connect(variant);
        const username = uniq('reg');
        const ack = await c.register(username, 'secret-1');
        assert.equal(ack.success, true, JSON.stringify(ack));
        const again = await c.register(username, 'other-password');
        assert.equal(again.success, false);
        assert.equal(again.message, TAKEN);
        // From another socket too.
        const d = await connect(variant);
        const third = await d.register(username, 'secret-1');
        assert.equal(third.success, false);
        assert.equal(third.message, TAKEN);
        // Registering did not log the socket in: sending gets 'reload'.
        c.emit('send message', uniq('not-logged-in'));
        await c.waitFor('reload');
        // ...and nobody was added to the online list.
        await d.expectNone('get users', hasUser(username));
        // The first password still works, the second attempt's does not.
        assert.equal((await d.login(username, 'other-password')).success, false);
        assert.equal((await d.login(username, 'secret-1')).success, true);
      });
    });

    describe('login', () => {
      it('rejects a wrong password and an unknown user', async () => {
        const c = await connect(variant);
        const username = uniq('lg');
        assert.equal((await c.register(username, 'right')).success, true);
        assert.deepEqual(await c.login(username, 'wrong'), { success: false, message: INVALID });
        assert.deepEqual(await c.login(uniq('nobody'), 'right'), { success: false, message: INVALID });
        // Case matters: the stored name is the exact string.
        assert.equal((await c.login(username.toUpperCase(), 'right')).success, false);
        await c.expectNone('get users', hasUser(username));
        // Still not logged in.
        c.emit('send message', uniq('x'));
        await c.waitFor('reload');
      });

      it('succeeds, and every socket gets get users; the login socket before its ack', async () => {
        const anon = await connect(variant, 'anon');
        const other = await loggedIn(variant, 'other');
        const c = await connect(variant, 'me');
        const username = uniq('me');
        assert.equal((await c.register(username, 'pw')).success, true);
        const ack = await c.login(username, 'pw');
        assert.equal(ack.success, true, JSON.stringify(ack));
        const gu = c.events.findIndex((e) => e.name === 'get users' && hasUser(username)(e.args[0]));
        const ackAt = c.events.findIndex((e) => e.name === 'ack' && e.event === 'login' && e.args[0] && e.args[0].success);
        assert.ok(gu >= 0, `login socket got get users with ${username}: ${c.summary()}`);
        assert.ok(gu < ackAt, `get users (#${gu}) arrives before the login ack (#${ackAt}): ${c.summary()}`);
        const seen = await anon.waitFor('get users', hasUser(username));
        for (const n of seen.args[0]) assert.equal(typeof n, 'string');
        await other.waitFor('get users', (l) => hasUser(username)(l) && l.includes(other.username));
        // A logged-in socket can now send.
        const msg = uniq('hello');
        c.emit('send message', msg);
        const got = await anon.waitFor('new message', (m) => m && m.msg === msg);
        assert.deepEqual({ msg: got.args[0].msg, user: got.args[0].user }, { msg, user: username });
        await c.expectNone('reload');
      });
    });

    describe('send message', () => {
      it('from an anonymous socket: reload on that socket only, nothing broadcast or stored', async () => {
        const sender = await connect(variant, 'sender');
        const anon = await connect(variant, 'anon');
        const user = await loggedIn(variant, 'watcher');
        await sender.history();
        const msg = uniq('ghost');
        sender.emit('send message', msg);
        const r = await sender.waitFor('reload');
        assert.deepEqual(r.args, [], 'reload has no payload');
        await Promise.all([
          anon.expectNone('reload'),
          user.expectNone('reload'),
          anon.expectNone('new message'),
          user.expectNone('new message'),
          sender.expectNone('new message'),
        ]);
        const late = await connect(variant, 'late');
        const hist = await late.history();
        assert.equal(
          hist.findIndex((m) => m.msg === msg),
          -1,
          'the anonymous message is not in the history',
        );
        assert.ok(sender.connected, 'the anonymous sender stays connected');
      });

      it('from a logged-in socket: new message {msg,user} to every socket; later connections load it', async () => {
        const anon = await connect(variant, 'anon');
        const a = await loggedIn(variant, 'a');
        const b = await loggedIn(variant, 'b');
        const msg = `${uniq('hi')} ünïcødé ✓ "quotes" <b>tags</b>`;
        a.emit('send message', msg);
        for (const c of [a, b, anon]) {
          const ev = await c.waitFor('new message', (m) => m && m.msg === msg);
          assert.ok(isMessage(ev.args[0]), JSON.stringify(ev.args[0]));
          assert.equal(ev.args[0].msg, msg);
          assert.equal(ev.args[0].user, a.username);
        }
        // Exactly once each.
        await Promise.all([a, b, anon].map((c) => c.expectNone('new message', (m) => m && m.msg === msg)));
        await a.expectNone('reload');
        const late = await connect(variant, 'late');
        const hist = await late.history();
        const found = hist.filter((m) => m.msg === msg);
        assert.equal(found.length, 1, 'stored once');
        assert.equal(found[0].user, a.username);
      });
    });

    describe('logout', () => {
      it('with nobody logged in fails', async () => {
        const c = await connect(variant);
        assert.deepEqual(await c.emitAck('logout'), { success: false, message: NOBODY });
      });

      it('after login succeeds; others get get users without the user; sending then gets reload', async () => {
        const watcher = await connect(variant, 'watcher');
        const c = await loggedIn(variant, 'out');
        await watcher.waitFor('get users', hasUser(c.username));
        const ack = await c.emitAck('logout');
        assert.equal(ack.success, true, JSON.stringify(ack));
        await watcher.waitFor('get users', lacksUser(c.username));
        // Logged out twice: nobody logged in any more.
        assert.deepEqual(await c.emitAck('logout'), { success: false, message: NOBODY });
        c.emit('send message', uniq('after-logout'));
        await c.waitFor('reload');
        // Can log in again on the same socket.
        assert.equal((await c.login(c.username, c.password)).success, true);
        await watcher.waitFor('get users', hasUser(c.username));
      });

      it('disconnect of a logged-in socket removes the user', async () => {
        const watcher = await connect(variant, 'watcher');
        const c = await loggedIn(variant, 'gone');
        await watcher.waitFor('get users', hasUser(c.username));
        c.close();
        await watcher.waitFor('get users', lacksUser(c.username));
      });

      for (const firstLeaves of ['logout', 'disconnect']) {
        it(`a user logged in from two sockets stays listed until the last one leaves (first by ${firstLeaves})`, async () => {
          const watcher = await connect(variant, 'watcher');
          const s1 = await loggedIn(variant, 'twice');
          const s2 = await connect(variant, 'twice2');
          assert.equal((await s2.login(s1.username, s1.password)).success, true);
          await watcher.waitFor('get users', hasUser(s1.username));
          if (firstLeaves === 'logout') {
            assert.equal((await s1.emitAck('logout')).success, true);
          } else {
            s1.close();
            await h.sleep(300); // let the server see the disconnect
          }
          // Whether or not the server broadcasts here, the next list it sends
          // must still name the user: make it send one by logging in someone else.
          const probe = await loggedIn(variant, 'probe');
          const list = await watcher.waitFor('get users', hasUser(probe.username));
          assert.ok(
            list.args[0].includes(s1.username),
            `still listed after one of two sockets left: ${JSON.stringify(list.args[0])}`,
          );
          // s2 can still send as the user.
          const msg = uniq('still-here');
          s2.emit('send message', msg);
          const ev = await watcher.waitFor('new message', (m) => m && m.msg === msg);
          assert.equal(ev.args[0].user, s1.username);
          // The last socket leaves: the user is gone.
          s2.close();
          await watcher.waitFor('get users', (l) => lacksUser(s1.username)(l) && l.includes(probe.username));
        });
      }
    });

    describe('bad input', () => {
      // Payloads of the wrong shape for register and login. Each must get a
      // {success:false, message} ack, must not crash the server or drop the
      // socket, and must not create a user.
      const badCredentials = [
        ['a number', () => 42],
        ['null', () => null],
        ['a string', () => 'username'],
        ['an array', () => ['user', 'pw']],
        ['a nested object as username', () => ({ username: { $gt: '' }, password: 'pw' })],
        ['a nested object as password', (u) => ({ username: u, password: { a: 1 } })],
        ['numbers as fields', () => ({ username: 12345, password: 67890 })],
        ['a missing password', (u) => ({ username: u })],
        ['a missing username', () => ({ password: 'pw' })],
        ['an empty object', () => ({})],
        ['an empty username', () => ({ username: '', password: 'pw' })],
        ['a 100 KB username', () => ({ username: 'x'.repeat(100 * 1024), password: 'pw' })],
        ['a password longer than 72 bytes', (u) => ({ username: u, password: 'p'.repeat(73) })],
        ['a 72+ byte multibyte password', (u) => ({ username: u, password: 'é'.repeat(40) })],
      ];

      for (const event of ['register', 'login']) {
        for (const [what, make] of badCredentials) {
          it(`${event} with ${what} gets {success:false, message}`, async () => {
            const c = await connect(variant, 'bad');
            const username = uniq('bad');
            const ack = await c.emitAck(event, make(username));
            assertFailureAck(ack, `${event} with ${what}`);
            assert.ok(c.connected, 'socket stays connected');
            await c.expectNone('get users', hasUser(username), 50);
            // No user was created under that name: registering it properly works.
            assert.equal((await c.register(username, 'fine')).success, true, 'the name is still free');
            assert.equal((await c.login(username, 'fine')).success, true, 'and the socket still works');
            await assertHealthy(variant);
          });
        }
      }

      const noCallback = [
        ['register with no callback', (c, u) => c.emit('register', { username: u, password: 'pw' })],
        ['register with no arguments', (c) => c.emit('register')],
        ['login with no callback', (c, u) => c.emit('login', { username: u, password: 'pw' })],
        ['login with no arguments', (c) => c.emit('login')],
        ['logout with no callback', (c) => c.emit('logout')],
        ['logout with a non-function argument', (c) => c.emit('logout', { x: 1 })],
        ['send message with no arguments', (c) => c.emit('send message')],
        ['an unknown event', (c) => c.emit('no such event', { a: 1 }, [2, 3])],
      ];
      for (const [what, send] of noCallback) {
        it(`${what} does not hurt the server`, async () => {
          const c = await connect(variant, 'nocb');
          const username = uniq('nocb');
          send(c, username);
          await h.sleep(200);
          assert.ok(c.connected, 'socket stays connected');
          // The same socket still answers a normal request.
          assert.deepEqual(await c.emitAck('logout'), { success: false, message: NOBODY });
          await assertHealthy(variant);
        });
      }

      it('logout with a wrong-type argument before the callback still acks', async () => {
        const c = await connect(variant, 'lo');
        assertFailureAck(await c.emitAck('logout', 42), 'logout 42');
        assertFailureAck(await c.emitAck('logout', { username: 'x' }), 'logout {}');
        const u = await loggedIn(variant, 'lo2');
        const ack = await u.emitAck('logout', null);
        assert.equal(ack.success, true, JSON.stringify(ack));
        await assertHealthy(variant);
      });

      const badMessages = [
        ['an empty message', ''],
        ['a number', 42],
        ['null', null],
        ['an array', ['a', 'b']],
        ['an object', { msg: 'x' }],
      ];
      for (const [what, payload] of badMessages) {
        it(`send message with ${what} from a logged-in socket: {success:false, message}, nothing broadcast`, async () => {
          const watcher = await connect(variant, 'watcher');
          const c = await loggedIn(variant, 'badmsg');
          const ack = await c.emitAck('send message', payload);
          assertFailureAck(ack, `send message ${what}`);
          await Promise.all([
            watcher.expectNone('new message', (m) => m && m.user === c.username),
            c.expectNone('new message', (m) => m && m.user === c.username, 50),
          ]);
          assert.ok(c.connected, 'socket stays connected');
          // Still logged in, still able to chat.
          const msg = uniq('after-bad');
          c.emit('send message', msg);
          await watcher.waitFor('new message', (m) => m && m.msg === msg && m.user === c.username);
          await assertHealthy(variant);
        });
      }

      it('send message with wrong types and no callback does not broadcast garbage', async () => {
        const watcher = await connect(variant, 'watcher');
        const c = await loggedIn(variant, 'badmsg2');
        for (const [, payload] of badMessages) c.emit('send message', payload);
        await watcher.expectNone('new message', (m) => m && m.user === c.username);
        await assertHealthy(variant);
      });

      it('the history holds only {msg: string, user: string} entries', async () => {
        const c = await connect(variant);
        const hist = await c.history();
        const bad = hist.filter((m) => !isMessage(m));
        assert.deepEqual(bad, [], 'history holds only {msg,user} with strings');
      });
    });
  });
}

module.exports = { defineSuite };
