'use strict';
// Run as: node --experimental-websocket lib/served-bundle-client.js
// Loads /socket.io/socket.io.js FROM THE SERVER the way a <script> tag does
// (evaluated as a classic script, defining the global `io`), then uses that
// global over WebSocket to register, log in and chat. Prints one JSON line.
const vm = require('node:vm');

const url = process.env.TARGET_URL.replace(/\/+$/, '');
const fail = (msg) => {
  process.stdout.write(JSON.stringify({ ok: false, error: String(msg) }) + '\n');
  process.exit(1);
};
setTimeout(() => fail('timed out after 10 s'), 10000).unref();

(async () => {
  if (typeof WebSocket !== 'function') fail('no global WebSocket (run with --experimental-websocket)');
  const res = await fetch(`${url}/socket.io/socket.io.js`);
  if (res.status !== 200) fail(`GET /socket.io/socket.io.js: ${res.status}`);
  const code = await res.text();
  vm.runInThisContext(code, { filename: 'socket.io.js' });
  if (typeof globalThis.io !== 'function') fail('the served script did not define a global io()');
  const socket = globalThis.io(url, { transports: ['websocket'], reconnection: false, timeout: 5000 });
  const first = [];
  socket.onAny((name) => first.push(name));
  // Every wait is bounded by 5 s.
  const bounded = (p, what) =>
    Promise.race([p, new Promise((_, reject) => setTimeout(() => reject(new Error(`no ${what} within 5 s`)), 5000).unref())]);
  const once = (ev) => bounded(new Promise((resolve) => socket.once(ev, resolve)), `'${ev}'`);
  const ack = (ev, data) => bounded(new Promise((resolve) => socket.emit(ev, data, resolve)), `ack of '${ev}'`);
  socket.on('connect_error', (e) => fail(`connect_error: ${e.message}`));
  await once('connect');
  const hist = await (first.includes('load all messages') ? [] : once('load all messages'));
  const username = `bundle_${Math.random().toString(36).slice(2, 10)}`;
  const reg = await ack('register', { username, password: 'pw-bundle' });
  const login = await ack('login', { username, password: 'pw-bundle' });
  const msg = `from the served bundle ${username}`;
  const got = new Promise((resolve) => socket.on('new message', (m) => m && m.msg === msg && resolve(m)));
  socket.emit('send message', msg);
  const m = await bounded(got, "'new message'");
  socket.close();
  process.stdout.write(
    JSON.stringify({ ok: true, version: io.protocol, first: first[0], historyIsArray: Array.isArray(hist), reg, login, message: m, username }) + '\n',
  );
  process.exit(0);
})().catch(fail);
