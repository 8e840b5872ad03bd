'use strict';
// Bursts of stock clients that start on long-polling and upgrade, as every
// page does, all at once. About one in a thousand such clients used to
// stall on the library the server once ran on: it closed the session during
// the upgrade (two sends racing for one poll), the client sat
// with its polling paused and its next event unsent until its ping timeout
// 8 s later. Every client here must finish its upgrade, or at least stay
// usable, and no acknowledgement may take longer than a second.
//
// The race needs the server to be sending to a socket while its upgrade is
// under way, so a few logged-in users chat throughout (SENDERS x 8 msg/s,
// within the per-user limit): every socket gets a broadcast every ~25 ms.
// UPGRADE_BURST_TOTAL (default 3000) and UPGRADE_BURST_SIZE (default 100)
// set the load. Bursts of 150 left the slowest acknowledgement at 665-841 ms
// in four CI runs, too close to the bound; at 100 the burst itself stays
// well inside it.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { io } = require('socket.io-client');
const { targetURL, withTimeout, loggedIn, closeAll } = require('./lib/harness');

const TOTAL = Number(process.env.UPGRADE_BURST_TOTAL || 3000);
const BURST = Number(process.env.UPGRADE_BURST_SIZE || 100);
const ASKS = 3; // events per client: right after connecting, then across the upgrade
const HELD_MS = 1000;
const SENDERS = 5;
const SENDER_RATE = 8; // messages per second each, under MESSAGE_RATE (10)

/** One client: connect, ask ASKS times, record how it went, close. */
function oneClient(stats) {
  return new Promise((resolve) => {
    const s = io(targetURL(), { forceNew: true, reconnection: false, timeout: 10000 });
    let settled = false;
    const end = (problem) => {
      if (settled) return;
      settled = true;
      if (problem) stats.problems.push(problem);
      s.close();
      resolve();
    };
    s.io.engine.on('upgrade', () => stats.upgraded++);
    s.io.engine.on('upgradeError', (e) => stats.problems.push(`upgrade error: ${e && e.message}`));
    s.on('connect_error', (e) => end(`connect error: ${e.message}`));
    s.on('disconnect', (reason) => end(`disconnected: ${reason}`));
    s.on('connect', async () => {
      for (let k = 0; k < ASKS && !settled; k++) {
        const t0 = Date.now();
        const ack = await new Promise((r) => {
          const tm = setTimeout(() => r(null), 9000);
          // logout from an anonymous socket: a cheap event with a fixed answer.
          s.emit('logout', (a) => { clearTimeout(tm); r(a); });
        });
        const took = Date.now() - t0;
        stats.maxAck = Math.max(stats.maxAck, took);
        if (!ack || ack.success !== false) {
          end(`no acknowledgement within 9 s (transport ${s.io.engine.transport.name}, upgrading ${s.io.engine.upgrading})`);
          return;
        }
        if (took > HELD_MS) stats.held.push({ took, ask: k, transport: s.io.engine.transport.name });
        await new Promise((r) => setTimeout(r, 150 + Math.random() * 300));
      }
      if (!settled) {
        if (s.io.engine.transport.name !== 'websocket') stats.onPolling++;
        end(null);
      }
    });
  });
}

test(`${TOTAL} polling-first clients in bursts of ${BURST}: every one upgrades or stays usable, no event held past ${HELD_MS} ms`, { timeout: 15 * 60 * 1000 }, async (t) => {
  const stats = { upgraded: 0, onPolling: 0, maxAck: 0, held: [], problems: [] };
  const senders = [];
  for (let i = 0; i < SENDERS; i++) senders.push(await loggedIn('v4-websocket', `chatter${i}`));
  let sent = 0;
  const chatter = setInterval(() => {
    for (const c of senders) c.socket.emit('send message', `burst chatter ${sent++}`);
  }, 1000 / SENDER_RATE);
  const started = Date.now();
  try {
    for (let b = 0; b < TOTAL; b += BURST) {
      const n = Math.min(BURST, TOTAL - b);
      await withTimeout(Promise.all(Array.from({ length: n }, () => oneClient(stats))), 60000, `burst ${b / BURST + 1}`);
    }
  } finally {
    clearInterval(chatter);
    closeAll();
  }
  t.diagnostic(`${TOTAL} clients in ${((Date.now() - started) / 1000).toFixed(1)} s: ${stats.upgraded} upgraded, ` +
    `${stats.onPolling} finished on polling, slowest acknowledgement ${stats.maxAck} ms, ` +
    `${stats.held.length} over ${HELD_MS} ms, ${stats.problems.length} problems; ${sent} messages broadcast meanwhile`);
  assert.deepEqual(stats.problems, [], 'every client connected, stayed connected and upgraded without error');
  assert.deepEqual(stats.held, [], `no acknowledgement took longer than ${HELD_MS} ms`);
  assert.equal(stats.upgraded + stats.onPolling, TOTAL);
});
