'use strict';
// Test harness: the stock socket.io-client from npm (4.8.x, and 2.x for the
// old EIO=3 protocol) wrapped so that a test can read every event a socket
// received, in arrival order, and wait for one with a bounded timeout.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { io: io4 } = require('socket.io-client');
const io2 = require('sio2');

/** Every wait in the suite is bounded by this (ms). */
const WAIT = 5000;
/** How long "nothing arrives" is watched for (ms). */
const QUIET = 600;

function targetURL() {
  const u = process.env.TARGET_URL;
  if (!u) {
    throw new Error('TARGET_URL is required (e.g. TARGET_URL=http://127.0.0.1:3000); test/compat/run.sh sets it');
  }
  return u.replace(/\/+$/, '');
}

/**
 * The client/transport combinations every protocol test runs under.
 * 4.x: the socket.io-client a page written for the Node server uses.
 * 2.x: socket.io-client 2.5 speaks Engine.IO v3 (EIO=3), as old pages do.
 */
const VARIANTS = {
  'v4-websocket': { major: 4, eio: 4, transports: ['websocket'] },
  'v4-polling': { major: 4, eio: 4, transports: ['polling'], upgrade: false },
  // The stock io() default, and so the path every page takes: start on
  // long-polling, then upgrade to WebSocket.
  'v4-upgrade': { major: 4, eio: 4, transports: ['polling', 'websocket'], upgradesTo: 'websocket' },
  'v2-websocket': { major: 2, eio: 3, transports: ['websocket'] },
  'v2-polling': { major: 2, eio: 3, transports: ['polling'], upgrade: false },
  'v2-upgrade': { major: 2, eio: 3, transports: ['polling', 'websocket'], upgradesTo: 'websocket' },
};

function uniq(prefix = 'u') {
  return `${prefix}_${crypto.randomBytes(6).toString('hex')}`;
}

function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

const open = new Set();

class Client {
  /**
   * @param {string} variantName key of VARIANTS
   * @param {string} [label] for messages
   */
  constructor(variantName, label = '') {
    const v = VARIANTS[variantName];
    if (!v) throw new Error(`unknown variant ${variantName}`);
    this.variant = variantName;
    this.label = label || uniq('c');
    /** @type {{name: string, args: any[], event?: string}[]} every event and ack, in arrival order */
    this.events = [];
    this.consumed = new Set();
    this.waiters = [];
    this.disconnects = [];
    const opts = {
      forceNew: true,
      reconnection: false,
      autoConnect: false,
      timeout: WAIT,
      transports: v.transports,
    };
    if (v.upgrade === false) opts.upgrade = false;
    if (v.major === 4) {
      this.socket = io4(targetURL(), opts);
      // Registered before connecting, so the very first event is seen.
      this.socket.onAny((name, ...args) => this._record({ name, args }));
    } else {
      this.socket = io2(targetURL(), opts);
      // socket.io-client 2.x has no onAny: wrap the method every incoming
      // event goes through (installed before open(), so nothing is missed).
      const onevent = this.socket.onevent;
      const self = this;
      this.socket.onevent = function (packet) {
        const [name, ...args] = packet.data || [];
        self._record({ name, args });
        return onevent.call(this, packet);
      };
    }
    this.socket.on('disconnect', (reason) => this.disconnects.push(reason));
    open.add(this);
  }

  _record(ev) {
    this.events.push(ev);
    for (const w of [...this.waiters]) w();
  }

  /** Connects and resolves once the socket is connected. */
  async connect() {
    const s = this.socket;
    const p = new Promise((resolve, reject) => {
      s.once('connect', resolve);
      s.once('connect_error', (err) => reject(new Error(`${this.variant} connect_error: ${err && err.message}`)));
      s.once('connect_timeout', () => reject(new Error(`${this.variant} connect_timeout`)));
      s.once('error', (err) => reject(new Error(`${this.variant} error: ${err && (err.message || err)}`)));
    });
    if (typeof s.connect === 'function' && VARIANTS[this.variant].major === 4) s.connect();
    else s.open();
    await withTimeout(p, WAIT, `${this.label} to connect (${this.variant})`);
    return this;
  }

  get connected() {
    return this.socket.connected;
  }

  /** emit without an acknowledgement callback */
  emit(event, ...args) {
    this.socket.emit(event, ...args);
  }

  /**
   * emit with an acknowledgement callback as the last argument; resolves with
   * the callback's first argument. The ack is also recorded in events as
   * {name: 'ack', event, args}, so its order relative to events can be checked.
   */
  emitAck(event, ...args) {
    const p = new Promise((resolve) => {
      this.socket.emit(event, ...args, (...ackArgs) => {
        this._record({ name: 'ack', event, args: ackArgs });
        resolve(ackArgs[0]);
      });
    });
    return withTimeout(p, WAIT, `${this.label}: acknowledgement of '${event}'`);
  }

  /**
   * Resolves with the first not yet consumed event named `name` whose payload
   * satisfies `pred(...args)`, waiting at most `ms`; marks it consumed.
   */
  waitFor(name, pred = () => true, ms = WAIT) {
    const find = () => {
      for (let i = 0; i < this.events.length; i++) {
        const ev = this.events[i];
        if (!this.consumed.has(i) && ev.name === name && pred(...ev.args)) {
          this.consumed.add(i);
          return { ...ev, index: i };
        }
      }
      return null;
    };
    const hit = find();
    if (hit) return Promise.resolve(hit);
    let waiter;
    const p = new Promise((resolve) => {
      waiter = () => {
        const h = find();
        if (h) resolve(h);
      };
      this.waiters.push(waiter);
    });
    return withTimeout(p, ms, `${this.label}: event '${name}' (${this.variant}); got so far: ${this.summary()}`).finally(
      () => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
      },
    );
  }

  /** Asserts that no unconsumed `name` event satisfying pred arrives within ms. */
  async expectNone(name, pred = () => true, ms = QUIET) {
    await new Promise((r) => setTimeout(r, ms));
    const bad = this.events.filter((ev, i) => !this.consumed.has(i) && ev.name === name && pred(...ev.args));
    assert.equal(bad.length, 0, `${this.label} got unexpected '${name}': ${JSON.stringify(bad).slice(0, 500)}`);
  }

  /** The history this socket received on connection. */
  async history() {
    const ev = await this.waitFor('load all messages');
    return ev.args[0];
  }

  summary() {
    return JSON.stringify(this.events.map((e) => (e.name === 'ack' ? `ack:${e.event}` : e.name))).slice(0, 400);
  }

  async register(username, password) {
    return this.emitAck('register', { username, password });
  }

  async login(username, password) {
    return this.emitAck('login', { username, password });
  }

  close() {
    open.delete(this);
    try {
      this.socket.close();
    } catch {
      /* already closed */
    }
  }
}

/** Connected client of the given variant. */
async function connect(variant, label) {
  return new Client(variant, label).connect();
}

/** Registers and logs in a fresh unique user on a new client. */
async function loggedIn(variant, label) {
  const c = await connect(variant, label);
  const username = uniq(label || 'u');
  const password = `pw-${uniq('p')}`;
  assert.equal((await c.register(username, password)).success, true, `register ${username}`);
  const ack = await c.login(username, password);
  assert.equal(ack.success, true, `login ${username}: ${JSON.stringify(ack)}`);
  c.username = username;
  c.password = password;
  return c;
}

/** Closes every client still open (call from afterEach). */
function closeAll() {
  for (const c of [...open]) c.close();
}

/**
 * Waits until `c` observes the server forgetting a disconnected socket, or
 * at most ms; used where a test disconnects and the next step depends on it.
 */
function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Proves the server is still up and serving the whole flow: a fresh client
 * registers, logs in, sends a message and receives it back.
 */
async function assertHealthy(variant) {
  const c = await connect(variant, 'health');
  try {
    assert.ok(Array.isArray(await c.history()), 'load all messages is an array');
    const username = uniq('health');
    const reg = await c.register(username, 'health-pw');
    assert.equal(reg.success, true, `health register: ${JSON.stringify(reg)}`);
    const login = await c.login(username, 'health-pw');
    assert.equal(login.success, true, `health login: ${JSON.stringify(login)}`);
    const msg = uniq('health-msg');
    c.emit('send message', msg);
    const ev = await c.waitFor('new message', (m) => m && m.msg === msg);
    assert.equal(ev.args[0].user, username);
  } finally {
    c.close();
  }
}

function isMessage(m) {
  return m !== null && typeof m === 'object' && typeof m.msg === 'string' && typeof m.user === 'string';
}

module.exports = {
  WAIT,
  QUIET,
  VARIANTS,
  Client,
  connect,
  loggedIn,
  closeAll,
  assertHealthy,
  isMessage,
  uniq,
  sleep,
  targetURL,
  withTimeout,
};
