// app.js: behaviour of the chat page. It speaks the socket.io events of
// docs/protocol.md (register, login, logout, send message; load all messages,
// get users, new message, reload) and uses the Go server's extensions
// (README "Extensions") when they are there: the session token of the login
// ack, the `session` event, message ids, the `send message` ack with a client
// id, and `load older messages`; and the conversation events (rooms, direct
// messages, typing, edit and delete, search, mark read; see the section
// "conversations" below), shown once the server answers `list rooms`.
// Against the original Node server, which has none of them, it falls back to
// the seed's behaviour. User text is always inserted as text, never as HTML.
(function () {
  'use strict';

  var MAX_LEN = 2000;            // the server's limit for one message
  var COUNTER_FROM = 1800;       // show the character counter from here on
  var ACK_TIMEOUT_MS = 10000;    // give up waiting for an acknowledgement
  var OLDER_TIMEOUT_MS = 8000;   // give up waiting for a page of older messages
  var OLDER_LIMIT = 50;          // messages per page of older history
  var SESSION_WAIT_MS = 5000;    // a stored token with no `session` answer: not supported
  var NEAR_BOTTOM_PX = 48;       // "at the bottom" tolerance for auto-scroll
  var NEAR_TOP_PX = 40;          // "at the top": time to load older messages
  var SESSION_KEY = 'chat.session'; // {username, token}
  var OUTBOX_KEY = 'chat.outbox';   // {clientId: {cid, text, user, after, failed}}
  var NOT_LOGGED_IN = 'Not logged in';

  var $ = function (id) { return document.getElementById(id); };
  var ui = {
    auth: $('auth'), form: $('auth-form'), title: $('auth-title'), sub: $('auth-sub'),
    username: $('username'), password: $('password'), error: $('auth-error'),
    notice: $('auth-notice'), submit: $('auth-submit'), submitLabel: $('auth-submit-label'),
    switchText: $('auth-switch-text'), toggle: $('auth-toggle'),
    chat: $('chat'), me: $('me-name'), logout: $('logout'), usersToggle: $('users-toggle'),
    users: $('users'), messages: $('messages'), empty: $('empty'), jump: $('jump'),
    composer: $('composer'), text: $('text'), counter: $('counter'), send: $('send'),
    failed: $('failed'), hint: $('hint')
  };

  var state = {
    mode: 'login',     // which form the card shows: 'login' or 'register'
    me: null,          // our username while the chat is shown
    token: null,       // session token (Go server); null against the Node server
    authed: false,     // this connection is logged in (login ack or `session`)
    connected: false,
    conn: 0,           // counts connections; an outbox entry remembers where it was sent
    sessionTimer: null,
    list: [],          // shown messages [{m, li, local}], sorted by id when they have one
    byId: {},          // id -> item of `list`
    outbox: [],        // this user's unconfirmed messages, oldest first
    users: [],         // the last `get users` list
    lastName: '',      // prefilled on the card after a logout or sign-out
    // The list was at the bottom when last looked at (a scroll event, or our
    // own scroll to the bottom). Only resizes use it: by the time a resize is
    // heard of, the position has already moved. Everything that adds
    // messages asks atBottom() instead, at that moment (see atBottom).
    wasAtBottom: true,
    unread: 0,
    older: { loading: false, exhausted: false, unsupported: false, answered: false, timer: null, retryAt: 0 }
  };

  var GENERAL = 1; // the seed's one room
  var conv = {
    supported: false, // the server answered `list rooms`
    rooms: [],        // the last `list rooms` answer
    current: GENERAL, // the room shown: an id, or 'dm:<name>' for a direct room not yet made
    views: {},        // room key -> view of a room other than general
    typing: {},       // room -> {user: until (ms)}
    lastTyping: {},   // room -> when we last sent `typing`
    reads: {},        // room -> {timer, at} for `mark read`
    changes: 0,
    recount: null,    // a pending `list rooms` to correct the unread counts       // counts our own changes to the room list (see refreshRooms)
    scroll: {},       // room -> distance from the list's end when left (null: at the bottom)
    conn: 0           // the connection the views were loaded on
  };

  // ---------- local storage (may be unavailable: private modes, quotas) ----------

  function readJSON(key) {
    try { return JSON.parse(localStorage.getItem(key) || 'null'); } catch (e) { return null; }
  }
  function writeJSON(key, value) {
    try {
      if (value == null) localStorage.removeItem(key);
      else localStorage.setItem(key, JSON.stringify(value));
    } catch (e) { /* the page still works, only without persistence */ }
  }

  function storedSession() {
    var s = readJSON(SESSION_KEY);
    return s && typeof s.username === 'string' && typeof s.token === 'string' && s.token ? s : null;
  }

  // The outbox in storage is shared by every tab of this origin: read, change
  // one entry, write back, so that one tab never drops another's entries.
  function storeEntry(e) {
    var all = readJSON(OUTBOX_KEY) || {};
    all[e.cid] = { cid: e.cid, text: e.text, user: e.user, after: e.after, failed: e.failed || null, at: e.at };
    writeJSON(OUTBOX_KEY, all);
  }
  function unstoreEntry(cid) {
    var all = readJSON(OUTBOX_KEY) || {};
    if (!all[cid]) return;
    delete all[cid];
    writeJSON(OUTBOX_KEY, Object.keys(all).length ? all : null);
  }
  function storedEntries(user) {
    var all = readJSON(OUTBOX_KEY) || {};
    return Object.keys(all).map(function (k) { return all[k]; })
      .filter(function (e) { return e && e.user === user && typeof e.text === 'string' && e.cid; })
      .sort(function (a, b) { return (a.at || 0) - (b.at || 0); });
  }

  // clientId: crypto.randomUUID exists only in secure contexts (https,
  // localhost); a page served over plain http builds the same shape itself.
  function clientId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join('');
    return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
  }

  // The token is read at every (re)connection, so a login or logout in
  // between is what the next handshake carries. The Node server ignores it.
  var socket = io({ auth: function (cb) { cb(state.token ? { token: state.token } : {}); } });

  // ---------- acknowledgements ----------

  // ask emits an event and resolves with the server's acknowledgement, or with
  // a failure of our own when none comes in time.
  function ask(event, payload) {
    return new Promise(function (resolve) {
      var done = false;
      var timer = setTimeout(function () {
        finish({ success: false, message: 'The server did not answer. Please try again.' });
      }, ACK_TIMEOUT_MS);
      function finish(res) {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(res && typeof res === 'object' ? res : { success: false, message: 'Unexpected answer from the server.' });
      }
      if (payload === undefined) socket.emit(event, finish);
      else socket.emit(event, payload, finish);
    });
  }

  // ---------- sign-in card ----------

  function setMode(mode) {
    state.mode = mode;
    var reg = mode === 'register';
    ui.title.textContent = reg ? 'Create your account' : 'Welcome back';
    ui.sub.textContent = reg ? 'Pick a username and a password.' : 'Log in to join the conversation.';
    ui.submitLabel.textContent = reg ? 'Create account' : 'Log in';
    ui.switchText.textContent = reg ? 'Already have an account?' : 'New here?';
    ui.toggle.textContent = reg ? 'Log in' : 'Create an account';
    ui.password.autocomplete = reg ? 'new-password' : 'current-password';
    ui.auth.dataset.mode = mode;
    showError('');
    ui.username.focus();
  }

  function setBusy(busy) {
    ui.submit.disabled = busy;
    ui.submit.classList.toggle('busy', busy);
    ui.submit.setAttribute('aria-busy', String(busy));
  }

  function showError(msg) { ui.error.textContent = msg || ''; }
  function showNotice(msg) { ui.notice.textContent = msg || ''; }

  function onAuthSubmit(e) {
    e.preventDefault();
    if (ui.submit.disabled) return;
    // The password lives only in this call: it is dropped when login answers.
    var creds = { username: ui.username.value, password: ui.password.value };
    if (!creds.username.trim()) { showError('Please enter a username.'); ui.username.focus(); return; }
    if (!creds.password) { showError('Please enter a password.'); ui.password.focus(); return; }
    showError('');
    showNotice('');
    setBusy(true);
    // Registering does not log in (the seed's rule): log in right after.
    var first = state.mode === 'register' ? ask('register', creds) : Promise.resolve(null);
    first.then(function (res) {
      if (res && !res.success) return res;
      if (res) setMode('login'); // the account exists now: a retry should log in
      return ask('login', creds);
    }).then(function (res) {
      var name = creds.username;
      creds = null;
      setBusy(false);
      if (res.success) {
        ui.password.value = '';
        // The Go server answers with a session token; the Node server does not.
        state.token = typeof res.token === 'string' && res.token ? res.token : null;
        writeJSON(SESSION_KEY, state.token ? { username: name, token: state.token } : null);
        state.authed = true;
        enterChat(name);
      } else {
        showError(res.message || 'Something went wrong.');
        ui.password.select();
      }
    });
  }

  // ---------- screens ----------

  function enterChat(username) {
    var again = state.me === username;
    state.me = username;
    ui.me.textContent = username;
    ui.me.title = username; // the whole name where it is cut short (phones)
    ui.auth.hidden = true;
    ui.chat.hidden = false;
    showNotice('');
    if (!again) {
      rerenderMessages(); // "mine" depends on who we are
      loadOutbox();
      renderUsers(state.users);
      scrollToBottom();
      ui.text.focus();
    }
    flushOutbox();
    flushRoomSends();
    updateComposer();
    fillViewport();
    if (state.authed) refreshRooms();
  }

  function leaveChat(notice) {
    if (state.me) state.lastName = state.me;
    state.me = null;
    state.authed = false;
    clearOutboxView();
    resetConv();
    ui.chat.hidden = true;
    ui.auth.hidden = false;
    ui.chat.classList.remove('show-users');
    ui.usersToggle.setAttribute('aria-expanded', 'false');
    setMode('login');
    if (state.lastName) ui.username.value = state.lastName;
    showNotice(notice || '');
    (ui.username.value ? ui.password : ui.username).focus();
  }

  function forgetSession() {
    state.token = null;
    writeJSON(SESSION_KEY, null);
  }

  function onLogout() {
    ui.logout.disabled = true;
    var done = function () {
      ui.logout.disabled = false;
      // Logging out ends this user's presence in this browser: the stored
      // session and any unsent messages go, and the next person starts clean.
      forgetSession();
      storedEntries(state.me).forEach(function (e) { unstoreEntry(e.cid); });
      state.outbox.slice().forEach(function (e) { dropEntry(e); });
      ui.text.value = '';
      leaveChat('You have been logged out.');
      updateComposer();
    };
    // Offline there is nobody to tell; a queued logout would only confuse
    // the next connection.
    if (state.connected) ask('logout').then(done);
    else done();
  }

  // ---------- messages ----------

  function formatTime(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return null;
    var hm = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    var today = new Date().toDateString() === d.toDateString();
    return today ? hm : d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + hm;
  }

  // hue picks a stable avatar colour for a name.
  function hue(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) % 360;
    return h;
  }

  function node(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text != null) n.textContent = text;
    return n;
  }

  function messageNode(m, pending) {
    var user = String(m.user == null ? '' : m.user);
    var li = node('li', 'msg' + (user === state.me ? ' mine' : '') + (pending ? ' pending' : ''));
    if (m.id != null) li.dataset.id = String(m.id);
    var avatar = node('span', 'avatar', (user.trim()[0] || '?').toUpperCase());
    avatar.setAttribute('aria-hidden', 'true');
    avatar.style.setProperty('--hue', hue(user));
    var body = node('div', 'bubble');
    var meta = node('div', 'meta');
    meta.appendChild(node('span', 'author', user));
    if (pending) {
      var clock = node('span', 'clock');
      clock.title = 'Waiting to be sent';
      clock.appendChild(node('span', 'sr-only', 'not sent yet'));
      meta.appendChild(clock);
    } else {
      var when = m.time ? formatTime(m.time) : null;
      if (when) {
        var t = node('time', 'time', when);
        t.dateTime = m.time;
        t.title = new Date(m.time).toLocaleString();
        meta.appendChild(t);
      }
    }
    if (m.edited && !m.deleted) meta.appendChild(node('span', 'edited', '(edited)'));
    body.appendChild(meta);
    if (m.deleted) {
      li.classList.add('deleted');
      body.appendChild(node('div', 'text deleted-text', 'Message deleted'));
    } else {
      body.appendChild(node('div', 'text', String(m.msg == null ? '' : m.msg)));
    }
    li.appendChild(avatar);
    li.appendChild(body);
    if (!pending && !m.deleted && user === state.me && hasId(m) && conv.supported) {
      li.appendChild(messageTools(m));
      li.tabIndex = -1; // a tap on a touch screen focuses it, which shows the tools
    }
    return li;
  }

  // The list is: [history row] real messages by id … [pending messages].
  var historyRow = node('li', 'history-row');
  historyRow.hidden = true;
  ui.messages.appendChild(historyRow);

  function firstPendingNode() { return ui.messages.querySelector('.msg.pending'); }

  function maxId() {
    for (var i = state.list.length - 1; i >= 0; i--) if (state.list[i].m.id != null) return state.list[i].m.id;
    return 0;
  }
  function minId() { return state.list.length && state.list[0].m.id != null ? state.list[0].m.id : null; }

  function validMessage(m) { return m && typeof m === 'object'; }
  function hasId(m) { return typeof m.id === 'number' && isFinite(m.id); }

  // insertMessage puts a real message in its place by id (or at the end when
  // it has none, as from the Node server) unless that id is already shown;
  // returns the new item or null. `how`: 'local' for our own message shown
  // from its ack, 'history' for a message of a history page.
  function insertMessage(m, how) {
    var local = how === 'local';
    if (hasId(m)) {
      var old = state.byId[m.id];
      if (old) {
        // Our own message, shown from its ack: take the server's copy (time).
        if (old.local && !local) {
          var fresh = messageNode(m);
          old.li.replaceWith(fresh);
          old.li = fresh;
          old.m = m;
          old.local = false;
        }
        return null;
      }
    }
    // Without ids an old message of the history cannot be told from the
    // echo of a pending one: only `new message` settles those.
    if (!local && (hasId(m) || how !== 'history')) claimPending(m);
    var item = { m: m, li: messageNode(m), local: !!local };
    var at = state.list.length;
    if (hasId(m)) {
      // Most messages are the newest: search from the end.
      while (at > 0 && !(hasId(state.list[at - 1].m) && state.list[at - 1].m.id < m.id)) at--;
      if (at === 0 && state.list.length && !hasId(state.list[0].m)) at = state.list.length;
      state.byId[m.id] = item;
    }
    var next = at < state.list.length ? state.list[at].li : firstPendingNode();
    ui.messages.insertBefore(item.li, next);
    state.list.splice(at, 0, item);
    ui.empty.hidden = true;
    return item;
  }

  function clearMessages() {
    state.list.forEach(function (it) { it.li.remove(); });
    state.list = [];
    state.byId = {};
    state.older.exhausted = false;
    showHistoryRow(null);
  }

  function rerenderMessages() {
    state.list.forEach(function (it) {
      var fresh = messageNode(it.m);
      it.li.replaceWith(fresh);
      it.li = fresh;
    });
    ui.empty.hidden = state.list.length > 0 || state.outbox.length > 0;
  }

  function onLoadAll(list) {
    list = Array.isArray(list) ? list.filter(validMessage) : [];
    var withIds = list.length > 0 && list.every(hasId);
    var hadMax = maxId();
    var hadAny = state.list.length > 0;
    var follow = atBottom(); // measured before anything is added
    // An empty history (a fresh backup, or the Node server still reading its
    // table) takes nothing away from the screen.
    if (list.length && (!withIds || state.list.some(function (it) { return !hasId(it.m); }))) {
      // Without ids (the Node server) the history replaces what is shown.
      clearMessages();
      hadMax = 0;
      hadAny = false;
    }
    var added = 0;
    list.forEach(function (m) { if (insertMessage(m, 'history')) added++; });
    ui.empty.hidden = state.list.length > 0 || state.outbox.length > 0;
    if (!state.list.length) {
      // Nothing before now: this is the beginning of the room. loadOlder has
      // no oldest message to ask before, so it would never say so itself.
      state.older.exhausted = true;
      showHistoryRow('start');
    } else if (!hadAny && state.older.exhausted) {
      // The room was empty when last heard of and has messages now, maybe
      // more than one history's worth: older ones may be on the server again.
      state.older.exhausted = false;
      showHistoryRow(null);
    }
    // Missed more than one history's worth while away: fetch the gap.
    if (withIds && hadAny && hadMax && list[0].id > hadMax) fillGap(list[0].id, hadMax, 0);
    if (!hadAny || follow) scrollToBottom();
    else if (added) ui.jump.hidden = false;
    if (state.me && state.token && !state.authed) waitForSession();
    fillViewport();
  }

  function onNewMessage(m) {
    if (!validMessage(m)) return;
    // Where the list is now, not what the last scroll event said: a message
    // can arrive after the user scrolled but before that event fires.
    var follow = m.user === state.me || atBottom();
    if (!insertMessage(m)) return;
    if (follow) scrollToBottom();
    else ui.jump.hidden = false;
    if (document.hidden && m.user !== state.me) setUnread(state.unread + 1);
    roomActivity(GENERAL, m);
  }

  function setUnread(n) {
    state.unread = n;
    document.title = n ? '(' + n + ') Chat' : 'Chat';
  }

  // ---------- older history ----------

  function showHistoryRow(kind) {
    historyRow.hidden = !kind;
    historyRow.dataset.kind = kind || '';
    historyRow.textContent = kind === 'loading' ? 'Loading older messages…' : kind === 'start' ? 'Beginning of history' : '';
  }

  // loadOlder asks for the page before the oldest message shown, if the
  // server has the extension; one request at a time.
  function loadOlder() {
    var o = state.older;
    var before = minId();
    if (o.loading || o.exhausted || o.unsupported || before == null || !state.connected || !state.me) return;
    if (Date.now() < o.retryAt) return;
    o.loading = true;
    showHistoryRow('loading');
    var conn = state.conn;
    var finish = function (res) {
      if (res && !o.answered) { o.answered = true; o.unsupported = false; } // late, but it answers
      if (!o.loading || conn !== state.conn) return;
      clearTimeout(o.timer);
      o.loading = false;
      if (!res) {
        // No answer: a server without `load older messages` (the Node one)
        // never answers. Give up for good unless this server answered before.
        if (!o.answered && state.connected && conn === state.conn) o.unsupported = true;
        o.retryAt = Date.now() + 5000;
        showHistoryRow(null);
        return;
      }
      o.answered = true;
      if (!res.success || !Array.isArray(res.messages)) {
        o.retryAt = Date.now() + 3000;
        showHistoryRow(null);
        return;
      }
      var msgs = res.messages.filter(function (m) { return validMessage(m) && hasId(m); });
      if (!msgs.length) {
        o.exhausted = true;
        showHistoryRow('start');
        return;
      }
      showHistoryRow(null);
      prependKeepingView(msgs);
      fillViewport();
    };
    o.timer = setTimeout(function () { finish(null); }, OLDER_TIMEOUT_MS);
    socket.emit('load older messages', { before: before, limit: OLDER_LIMIT }, finish);
  }

  // prependKeepingView adds older messages above what the user is reading
  // without moving it on screen.
  function prependKeepingView(msgs) {
    var box = ui.messages;
    var fromBottom = box.scrollHeight - box.scrollTop;
    msgs.forEach(function (m) { insertMessage(m, 'history'); });
    box.scrollTop = box.scrollHeight - fromBottom;
  }

  // fillGap pages back from `before` until it meets `known` (the newest id
  // shown before the reconnection), at most 20 pages.
  function fillGap(before, known, depth) {
    if (depth >= 20 || state.older.unsupported) return;
    socket.emit('load older messages', { before: before, limit: 100 }, function (res) {
      if (res && res.success === false) {
        // Refused (the server's page rate limit, or a store outage): try
        // again in a moment; each try counts towards the 20.
        setTimeout(function () { fillGap(before, known, depth + 1); }, 1500);
        return;
      }
      if (!res || !res.success || !Array.isArray(res.messages) || !res.messages.length) return;
      var msgs = res.messages.filter(function (m) { return validMessage(m) && hasId(m); });
      var follow = atBottom();
      msgs.forEach(function (m) { insertMessage(m, 'history'); });
      if (follow) scrollToBottom();
      if (msgs.length && msgs[0].id > known) fillGap(msgs[0].id, known, depth + 1);
    });
  }

  // fillViewport loads older messages while the list is too short to scroll
  // (scroll events never come then).
  function fillViewport() {
    if (ui.chat.hidden || conv.current !== GENERAL) return; // a hidden list has no height
    var box = ui.messages;
    if (box.scrollHeight <= box.clientHeight + NEAR_TOP_PX) loadOlder();
  }

  // ---------- scrolling ----------

  // atBottom reads the list's scroll position as it is right now. New
  // messages are placed by it, measured just before they are added, and not
  // by a flag kept by the scroll handler: scroll events fire at the next
  // frame, so a message arriving in between would see the old flag and yank
  // a user who had just scrolled up back down to the bottom.
  function atBottom() {
    var box = ui.messages;
    return box.scrollHeight - box.scrollTop - box.clientHeight <= NEAR_BOTTOM_PX;
  }

  function scrollToBottom() {
    ui.messages.scrollTop = ui.messages.scrollHeight;
    state.wasAtBottom = true;
    ui.jump.hidden = true;
  }

  function onScroll() {
    state.wasAtBottom = atBottom();
    if (state.wasAtBottom) ui.jump.hidden = true;
    if (ui.messages.scrollTop <= NEAR_TOP_PX) loadOlder();
  }

  // When the list gets shorter (a phone keyboard opens, the window shrinks),
  // keep the newest message in view if the user was reading it.
  function onResize() { if (state.wasAtBottom) scrollToBottom(); }

  // ---------- outbox ----------
  // Every message is first an outbox entry {cid, text, user, after, failed}:
  // shown at once as pending, kept in localStorage, sent whenever this
  // connection is logged in, and again after every reconnection with the
  // same client id (the server stores it once). It leaves the outbox when
  // the server acknowledges it, or, against the Node server (no ack), when
  // its `new message` comes back.

  function canFlush() {
    // Without a token (Node server) a new connection is logged out; sending
    // anyway gets `reload`, the seed's way back to the sign-in card.
    return state.connected && !!state.me && (state.authed || !state.token);
  }

  function loadOutbox() {
    clearOutboxView();
    state.outbox = storedEntries(state.me).map(function (e) {
      return { cid: e.cid, text: e.text, user: e.user, after: e.after || 0, failed: e.failed || null, at: e.at || 0, sentOn: 0, li: null, claimed: null };
    });
    state.outbox.forEach(function (e) {
      // Already in the history (an earlier ack got lost)? Then it is shown.
      for (var i = state.list.length - 1; i >= 0 && !e.claimed && !e.failed; i--) {
        var m = state.list[i].m;
        if (!hasId(m) || m.id <= e.after) break; // without ids no way to tell
        if (m.user === e.user && m.msg === e.text && !isClaimed(m.id)) e.claimed = m.id;
      }
      if (!e.claimed && !e.failed) showPending(e);
    });
    renderFailed();
  }

  function clearOutboxView() {
    state.outbox.forEach(function (e) { if (e.li) { e.li.remove(); e.li = null; } });
    state.outbox = [];
    renderFailed();
  }

  function isClaimed(id) {
    return state.outbox.some(function (e) { return e.claimed === id; });
  }

  function showPending(e) {
    if (e.li) e.li.remove();
    e.li = messageNode({ msg: e.text, user: e.user }, true);
    e.li.dataset.cid = e.cid;
    ui.messages.appendChild(e.li);
    ui.empty.hidden = true;
  }

  function hidePending(e) {
    if (e.li) { e.li.remove(); e.li = null; }
  }

  function dropEntry(e) {
    hidePending(e);
    var i = state.outbox.indexOf(e);
    if (i >= 0) state.outbox.splice(i, 1);
    unstoreEntry(e.cid);
  }

  function sendMessage() {
    var text = ui.text.value;
    if (!text.trim() || !state.me) return;
    var e = { cid: clientId(), text: text, user: state.me, after: maxId(), failed: null, at: Date.now(), sentOn: 0, li: null, claimed: null };
    state.outbox.push(e);
    storeEntry(e);
    showPending(e);
    ui.text.value = '';
    updateComposer();
    scrollToBottom();
    ui.text.focus();
    if (canFlush()) sendEntry(e);
  }

  function sendEntry(e) {
    e.sentOn = state.conn;
    var conn = state.conn;
    socket.emit('send message', e.text, { id: e.cid }, function (res) { onSendAck(e, res, conn); });
  }

  function flushOutbox() {
    if (!canFlush()) return;
    state.outbox.forEach(function (e) {
      if (!e.failed && e.sentOn !== state.conn) sendEntry(e);
    });
  }

  function onSendAck(e, res, conn) {
    if (state.outbox.indexOf(e) < 0 || !res || typeof res !== 'object') return;
    if (res.success) {
      var id = res.id;
      var follow = atBottom();
      dropEntry(e);
      if (hasId({ id: id }) && !state.byId[id]) {
        // Shown now from the ack; the broadcast, when it comes, adds the time.
        insertMessage({ msg: e.text, user: e.user, id: id, time: new Date().toISOString() }, 'local');
        if (follow) scrollToBottom();
      }
      return;
    }
    // Refused because this connection is not logged in: `reload` came
    // first and the entry waits for the next login.
    if (res.message === NOT_LOGGED_IN || !state.me || conn !== state.conn || !state.authed) {
      e.sentOn = 0;
      return;
    }
    e.failed = String(res.message || 'The message could not be sent.');
    storeEntry(e);
    hidePending(e);
    renderFailed();
  }

  // claimPending is called for each real message before it is shown: our
  // own pending copy of it disappears, so it is never shown twice. Matched
  // on text and author among messages newer than the entry's creation; the
  // ack, when it comes, settles it by id.
  function claimPending(m) {
    if (!state.me || m.user !== state.me) return;
    if (hasId(m) && isClaimed(m.id)) return;
    for (var i = 0; i < state.outbox.length; i++) {
      var e = state.outbox[i];
      if (e.failed || e.claimed || e.text !== m.msg) continue;
      if (hasId(m) && m.id <= e.after) continue;
      if (!hasId(m)) { dropEntry(e); return; } // Node server: the echo is all we get
      e.claimed = m.id;
      hidePending(e);
      return;
    }
  }

  function renderFailed() {
    var frag = document.createDocumentFragment();
    state.outbox.forEach(function (e) {
      if (!e.failed) return;
      var li = node('li', 'failed-item');
      li.dataset.cid = e.cid;
      var body = node('div', 'failed-body');
      body.appendChild(node('span', 'failed-reason', 'Not sent: ' + e.failed));
      body.appendChild(node('span', 'failed-text', e.text));
      li.appendChild(body);
      [['Retry', retryEntry], ['Edit', editEntry], ['Discard', dropFailed]].forEach(function (b) {
        var btn = node('button', 'link', b[0]);
        btn.type = 'button';
        btn.dataset.action = b[0].toLowerCase();
        btn.addEventListener('click', function () { b[1](e); });
        li.appendChild(btn);
      });
      frag.appendChild(li);
    });
    ui.failed.replaceChildren(frag);
    ui.failed.hidden = !ui.failed.children.length;
  }

  function retryEntry(e) {
    e.failed = null;
    e.sentOn = 0;
    storeEntry(e);
    showPending(e);
    renderFailed();
    scrollToBottom();
    if (canFlush()) sendEntry(e);
  }

  function editEntry(e) {
    ui.text.value = ui.text.value ? ui.text.value + '\n' + e.text : e.text;
    dropFailed(e);
    updateComposer();
    ui.text.focus();
  }

  function dropFailed(e) {
    dropEntry(e);
    renderFailed();
    ui.text.focus();
  }

  // ---------- online users ----------

  function renderUsers(list) {
    state.users = Array.isArray(list) ? list : [];
    // The seed server lists a name once per logged-in socket: show it once.
    var seen = {};
    var names = state.users.map(String).filter(function (n) {
      if (seen[n]) return false;
      seen[n] = true;
      return true;
    }).sort(function (a, b) { return a.localeCompare(b); });
    var frag = document.createDocumentFragment();
    names.forEach(function (name) {
      var li = node('li', name === state.me ? 'self' : '');
      // With conversations, another user's name opens the direct room.
      var box = li;
      if (conv.supported && state.me && name !== state.me) {
        box = node('button', 'user-btn');
        box.type = 'button';
        box.setAttribute('aria-label', 'Message ' + name);
        box.addEventListener('click', function () { openDirect(name); });
        li.appendChild(box);
      }
      var dot = node('span', 'dot');
      dot.setAttribute('aria-hidden', 'true');
      box.appendChild(dot);
      box.appendChild(node('span', 'name', name));
      if (name === state.me) li.appendChild(node('span', 'you muted', '(you)'));
      frag.appendChild(li);
    });
    ui.users.replaceChildren(frag);
    document.querySelectorAll('.user-count').forEach(function (c) { c.textContent = String(names.length); });
  }

  function toggleUsers() {
    var open = ui.chat.classList.toggle('show-users');
    ui.usersToggle.setAttribute('aria-expanded', String(open));
  }

  // ---------- composer ----------

  function updateComposer() {
    var len = ui.text.value.length;
    ui.counter.hidden = len < COUNTER_FROM;
    ui.counter.textContent = len + ' / ' + MAX_LEN;
    ui.counter.classList.toggle('over', len >= MAX_LEN);
    // Usable while disconnected: what is sent waits in the outbox.
    ui.send.disabled = !state.me || !ui.text.value.trim();
    var live = canFlush();
    ui.hint.textContent = live ? 'Enter to send · Shift+Enter for a new line'
      : 'Not connected: messages wait here and go out when the connection is back';
    ui.hint.classList.toggle('waiting', !live);
    autosize();
  }

  function autosize() {
    ui.text.style.height = 'auto';
    ui.text.style.height = Math.min(ui.text.scrollHeight, 180) + 'px';
  }

  function onComposerKey(e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      sendCurrent();
    }
  }

  // ---------- conversations (rooms, direct messages, typing, edits, search) ----------
  // All of it appears once the server answers `list rooms` (the Go server's
  // conversation events, docs/protocol.md); against a server that does not
  // (the Node one) the page stays as it was. General (room 1) keeps the
  // seed's machinery above: `load all messages`, `new message`, the outbox.
  // Every other room is a view of its own: a list element filled from
  // `room history` and `room message`, shown while the room is selected.

  var cui = {
    conv: $('conv'), rooms: $('rooms'), create: $('room-create'), createName: $('room-new'),
    roomError: $('room-error'), title: $('room-title'), hash: document.querySelector('.room-name .hash'),
    typing: $('typing'), toggleUnread: $('toggle-unread'), toggleLabel: $('toggle-label'), roomEmpty: $('room-empty'), pane: document.querySelector('.pane'),
    searchForm: $('search-form'), search: $('search'), searchBox: $('search-box'),
    searchStatus: $('search-status'), searchResults: $('search-results'), searchClose: $('search-close')
  };

  function resetConv() {
    Object.keys(conv.views).forEach(function (k) { conv.views[k].ol.remove(); });
    conv.views = {};
    conv.rooms = [];
    conv.typing = {};
    conv.lastTyping = {};
    conv.reads = {};
    conv.scroll = {};
    clearTimeout(conv.recount);
    conv.recount = null;
    conv.supported = false;
    conv.conn = 0;
    cui.conv.hidden = true;
    ui.chat.classList.remove('conv-on');
    cui.toggleLabel.textContent = 'Online';
    cui.searchBox.hidden = true;
    cui.searchResults.replaceChildren();
    cui.search.value = '';
    cui.roomError.textContent = '';
    showRoom(GENERAL);
  }

  function roomById(id) {
    for (var i = 0; i < conv.rooms.length; i++) if (conv.rooms[i].id === id) return conv.rooms[i];
    return null;
  }

  function roomLabel(r) {
    if (!r) return '';
    return r.kind === 'direct' ? '@' + r.peer : '#' + r.name;
  }

  // refreshRooms asks for the room list again (after a login, `rooms
  // changed`, a reconnection); answers that cross are harmless.
  function refreshRooms() {
    if (!state.connected || !state.me) return;
    var me = state.me;
    var seq = conv.changes;
    ask('list rooms').then(function (res) {
      // An answer read before our own latest change (a room created,
      // joined, left) would undo it on screen; the list asked after that
      // change is on its way.
      if (state.me !== me || seq !== conv.changes) return;
      // Refused by the page budget (many changes at once): ask again shortly.
      if (!res.success && conv.supported && /too fast/i.test(res.message || '')) { setTimeout(refreshRooms, 1000); return; }
      if (!res.success || !Array.isArray(res.rooms)) return;
      var first = !conv.supported;
      conv.supported = true;
      if (conv.conn !== state.conn) reloadViews();
      conv.conn = state.conn;
      conv.rooms = res.rooms.filter(function (r) { return r && typeof r.id === 'number'; });
      cui.conv.hidden = false;
      ui.chat.classList.add('conv-on');
      cui.toggleLabel.textContent = 'Rooms'; // phones: the folded list holds the rooms now
      if (first) {
        rerenderMessages(); // own messages get their edit and delete buttons
        renderUsers(state.users);
      }
      // A room we were shown and are no longer in (left on another device).
      var cur = conv.current;
      if (typeof cur === 'number' && cur !== GENERAL) {
        var r = roomById(cur);
        if (!r || !r.member) showRoom(GENERAL);
      }
      // A direct room being drafted that now exists.
      if (typeof cur === 'string') {
        var d = directWith(cur.slice(3));
        if (d) showRoom(d.id);
      }
      renderRooms();
      renderTitle();
      markReadSoon(conv.current);
    });
  }

  // reloadViews reads the rooms on view again after a reconnection: their
  // messages sent meanwhile never came.
  function reloadViews() {
    Object.keys(conv.views).forEach(function (k) {
      var v = conv.views[k];
      if (typeof v.key !== 'number') return;
      v.gen++; // a page still asked for on the old connection is ignored
      v.loading = false;
      v.loaded = false;
      v.exhausted = false;
      v.list.forEach(function (it) { it.li.remove(); });
      v.list = [];
      v.byId = {};
      if (conv.current === v.key) loadRoomPage(v);
    });
  }

  function directWith(peer) {
    for (var i = 0; i < conv.rooms.length; i++) {
      var r = conv.rooms[i];
      if (r.kind === 'direct' && r.peer === peer) return r;
    }
    return null;
  }

  function renderRooms() {
    var frag = document.createDocumentFragment();
    conv.rooms.forEach(function (r) {
      var li = node('li', 'room-item' + (r.member ? '' : ' not-member'));
      li.dataset.room = String(r.id);
      var open = node('button', 'room-btn');
      open.type = 'button';
      var label = roomLabel(r);
      var n = r.member ? r.unread || 0 : 0;
      if (!r.member) {
        open.setAttribute('aria-label', 'Join ' + label);
        open.addEventListener('click', function () { joinRoom(r); });
      } else {
        open.setAttribute('aria-label', label + (n ? ', ' + (n > 999 ? '999+' : n) + ' unread' : ''));
        if (conv.current === r.id) open.setAttribute('aria-current', 'true');
        open.addEventListener('click', function () { showRoom(r.id); closeSidebarOnPhone(); });
      }
      open.appendChild(node('span', 'room-label', label));
      if (n) {
        var badge = node('span', 'badge unread', n > 999 ? '999+' : String(n));
        badge.setAttribute('aria-hidden', 'true');
        open.appendChild(badge);
      }
      if (!r.member) open.appendChild(node('span', 'join-hint', 'Join'));
      li.appendChild(open);
      if (r.member && r.kind === 'public' && r.id !== GENERAL) {
        var leave = node('button', 'leave-btn', '×');
        leave.type = 'button';
        leave.setAttribute('aria-label', 'Leave ' + label);
        leave.title = 'Leave ' + label;
        leave.addEventListener('click', function () { leaveRoom(r); });
        li.appendChild(leave);
      }
      frag.appendChild(li);
    });
    cui.rooms.replaceChildren(frag);
    // Folded away (phones): the toggle says how many unread wait elsewhere.
    var elsewhere = conv.rooms.reduce(function (n, r) { return n + (r.member && r.id !== conv.current ? r.unread || 0 : 0); }, 0);
    cui.toggleUnread.hidden = !elsewhere;
    cui.toggleUnread.textContent = elsewhere > 999 ? '999+' : String(elsewhere);
    cui.toggleUnread.title = elsewhere + ' unread in other rooms';
  }

  function renderTitle() {
    var cur = conv.current;
    var r = typeof cur === 'number' ? roomById(cur) : null;
    var direct = typeof cur === 'string' || (r && r.kind === 'direct');
    var name = typeof cur === 'string' ? cur.slice(3) : cur === GENERAL ? (r && r.name) || 'general' : r ? (direct ? r.peer : r.name) : '';
    cui.hash.textContent = direct ? '@' : '#';
    cui.title.textContent = name;
    ui.text.placeholder = 'Message ' + (direct ? '@' : '#') + name;
  }

  function closeSidebarOnPhone() {
    if (ui.chat.classList.contains('show-users')) {
      ui.chat.classList.remove('show-users');
      ui.usersToggle.setAttribute('aria-expanded', 'false');
    }
  }

  function roomError(msg) { cui.roomError.textContent = msg || ''; }

  function onCreateRoom(e) {
    e.preventDefault();
    var name = cui.createName.value;
    if (!name.trim()) { roomError('Please enter a room name.'); cui.createName.focus(); return; }
    roomError('');
    ask('create room', { name: name }).then(function (res) {
      if (!res.success || !res.room) { roomError(res.message || 'The room could not be created.'); cui.createName.focus(); return; }
      cui.createName.value = '';
      addRoom(res.room);
      showRoom(res.room.id);
      refreshRooms();
    });
  }

  function addRoom(room) {
    conv.changes++;
    var r = roomById(room.id);
    if (r) { Object.keys(room).forEach(function (k) { r[k] = room[k]; }); return; }
    conv.rooms.push(room);
    conv.rooms.sort(function (a, b) { return a.id - b.id; });
    renderRooms();
  }

  function joinRoom(r) {
    roomError('');
    ask('join room', { room: r.id }).then(function (res) {
      if (!res.success) { roomError(res.message || 'Could not join the room.'); return; }
      conv.changes++;
      r.member = true;
      r.unread = 0;
      renderRooms();
      showRoom(r.id);
      closeSidebarOnPhone();
      refreshRooms();
    });
  }

  function leaveRoom(r) {
    roomError('');
    ask('leave room', { room: r.id }).then(function (res) {
      if (!res.success) { roomError(res.message || 'Could not leave the room.'); return; }
      conv.changes++;
      r.member = false;
      r.unread = 0;
      var v = conv.views[r.id];
      if (v) { v.ol.remove(); delete conv.views[r.id]; }
      if (conv.current === r.id) showRoom(GENERAL);
      renderRooms();
      refreshRooms();
    });
  }

  // ----- room views -----

  function viewFor(key) {
    var v = conv.views[key];
    if (v) return v;
    var ol = node('ol', 'messages room-log');
    ol.id = 'messages-' + String(key).replace(/[^a-zA-Z0-9_-]/g, '_');
    ol.setAttribute('role', 'log');
    ol.setAttribute('aria-live', 'polite');
    ol.hidden = true;
    v = { key: key, ol: ol, list: [], byId: {}, pending: [], loaded: typeof key === 'string', loading: false, exhausted: typeof key === 'string', gen: 0 };
    var row = node('li', 'history-row');
    row.hidden = true;
    ol.appendChild(row);
    v.row = row;
    ol.addEventListener('scroll', function () {
      if (ol.scrollTop <= NEAR_TOP_PX) loadRoomPage(v);
    });
    cui.pane.insertBefore(ol, ui.empty);
    conv.views[key] = v;
    return v;
  }

  function showRoom(key) {
    // Where the user was in the list left, to come back to it: a hidden
    // list forgets its scroll position. null: at the bottom.
    if (conv.current !== key && !ui.chat.hidden) {
      var was = conv.current === GENERAL ? ui.messages : conv.views[conv.current] && conv.views[conv.current].ol;
      if (was) conv.scroll[conv.current] = was.scrollHeight - was.scrollTop - was.clientHeight <= NEAR_BOTTOM_PX ? null : was.scrollHeight - was.scrollTop;
      markRead(conv.current); // a mark read still due for the room left
    }
    conv.current = key;
    var general = key === GENERAL;
    ui.chat.classList.toggle('other-room', !general);
    ui.messages.hidden = !general;
    var v = general ? null : viewFor(key);
    Object.keys(conv.views).forEach(function (k) { var w = conv.views[k]; w.ol.hidden = w !== v; });
    renderTitle();
    renderRooms();
    renderTyping();
    var back = conv.scroll[key];
    delete conv.scroll[key];
    if (general) {
      cui.roomEmpty.hidden = true;
      if (back == null) scrollToBottom();
      else { ui.messages.scrollTop = ui.messages.scrollHeight - back; state.wasAtBottom = false; }
      fillViewport();
    } else {
      updateRoomEmpty(v);
      v.ol.scrollTop = back == null ? v.ol.scrollHeight : v.ol.scrollHeight - back;
      if (!v.loaded) loadRoomPage(v);
    }
    markReadSoon(key);
  }

  function updateRoomEmpty(v) {
    if (conv.current !== v.key) return;
    cui.roomEmpty.hidden = !v.loaded || v.list.length > 0 || v.pending.length > 0;
  }

  function roomAtBottom(v) { return v.ol.scrollHeight - v.ol.scrollTop - v.ol.clientHeight <= NEAR_BOTTOM_PX; }

  function viewMin(v) { return v.list.length ? v.list[0].m.id : null; }
  function viewMax(v) { return v.list.length ? v.list[v.list.length - 1].m.id : 0; }

  // roomInsert puts m in view v in id order, unless it is there already.
  function roomInsert(v, m) {
    if (!hasId(m) || v.byId[m.id]) return null;
    var item = { m: m, li: messageNode(m) };
    var at = v.list.length;
    while (at > 0 && v.list[at - 1].m.id > m.id) at--;
    var next = at < v.list.length ? v.list[at].li : (v.pending.length ? v.pending[0].li : null);
    v.ol.insertBefore(item.li, next);
    v.list.splice(at, 0, item);
    v.byId[m.id] = item;
    return item;
  }

  // loadRoomPage loads the newest page of a room the first time, and the
  // page before its oldest message later; resolves when done.
  function loadRoomPage(v, limit) {
    if (v.loading || v.exhausted || typeof v.key !== 'number' || !state.connected) return Promise.resolve(false);
    v.loading = true;
    var gen = v.gen;
    var before = viewMin(v);
    var payload = { room: v.key, limit: limit || OLDER_LIMIT };
    if (before != null) payload.before = before;
    v.row.hidden = false;
    v.row.dataset.kind = 'loading';
    v.row.textContent = 'Loading older messages…';
    return ask('room history', payload).then(function (res) {
      if (gen !== v.gen) return false;
      v.loading = false;
      v.row.hidden = true;
      if (!res.success || !Array.isArray(res.messages)) {
        if (/too fast/i.test(res.message || '')) return new Promise(function (r) { setTimeout(r, 700); }).then(function () { return loadRoomPage(v, limit); });
        return false;
      }
      var first = !v.loaded;
      v.loaded = true;
      var box = v.ol;
      var fromBottom = box.scrollHeight - box.scrollTop;
      res.messages.forEach(function (m) { roomInsert(v, m); });
      if (first) box.scrollTop = box.scrollHeight;
      else box.scrollTop = box.scrollHeight - fromBottom;
      if (res.messages.length < payload.limit) {
        v.exhausted = true;
        v.row.hidden = false;
        v.row.dataset.kind = 'start';
        v.row.textContent = 'Beginning of history';
      }
      updateRoomEmpty(v);
      if (first) markReadSoon(v.key);
      // Too short to scroll: no scroll event would ask for more.
      if (!v.exhausted && conv.current === v.key && box.scrollHeight <= box.clientHeight + NEAR_TOP_PX) loadRoomPage(v);
      return true;
    });
  }

  function onRoomMessage(m) {
    if (!validMessage(m) || !hasId(m) || typeof m.room !== 'number') return;
    if (m.room === GENERAL) return; // general travels as `new message`
    var v = conv.views[m.room];
    if (!roomById(m.room)) refreshRooms(); // a new direct room, for instance
    // Also while its page loads: that page may have been read before this
    // message was stored (ids keep the order, and nothing shows twice).
    if (v && (v.loaded || v.loading)) {
      var follow = m.user === state.me || roomAtBottom(v);
      if (m.user === state.me) claimRoomPending(v, m);
      if (roomInsert(v, m) && follow) v.ol.scrollTop = v.ol.scrollHeight;
      updateRoomEmpty(v);
    }
    roomActivity(m.room, m);
  }

  // roomActivity counts a message of another user in a room not on screen
  // as unread, and marks the shown room read.
  function roomActivity(room, m) {
    if (!conv.supported) return;
    var r = roomById(room);
    if (!r) return;
    var seen = conv.current === room && !document.hidden;
    if (seen) { markReadSoon(room); return; }
    if (m.user !== state.me && m.id > (r.lastRead || 0)) {
      r.unread = (r.unread || 0) + 1;
      renderRooms();
      // The count shown may already hold this message (a list read just
      // after it was stored): the server's count settles it shortly.
      if (!conv.recount) conv.recount = setTimeout(function () { conv.recount = null; refreshRooms(); }, 1500);
    }
  }

  // markReadSoon tells the server that the shown room is read up to its
  // newest message: at most once a second per room (the server's room
  // change budget), and never backwards. Leaving the room sends what is
  // due at once (see showRoom): what was on screen was read.
  function markReadSoon(key) {
    if (typeof key !== 'number' || !conv.supported || !state.authed || document.hidden) return;
    var r = roomById(key);
    if (!r || !r.member) return;
    var read = conv.reads[key] || (conv.reads[key] = { timer: null, at: 0 });
    if (read.timer) return;
    var wait = Math.max(0, read.at + 1000 - Date.now());
    read.timer = setTimeout(function () {
      if (conv.current === key) markRead(key);
      else read.timer = null;
    }, wait);
  }

  function markRead(key) {
    var read = conv.reads[key];
    if (!read || !read.timer) return;
    clearTimeout(read.timer);
    read.timer = null;
    // The room as listed now: the list may have been read again meanwhile.
    var r = roomById(key);
    if (!r || !r.member || document.hidden || !conv.supported) return;
    var top = key === GENERAL ? maxId() : conv.views[key] ? viewMax(conv.views[key]) : 0;
    if (r.unread) { r.unread = 0; renderRooms(); }
    if (!top || top <= (r.lastRead || 0)) return;
    read.at = Date.now();
    r.lastRead = top;
    ask('mark read', { room: key, message: top }).then(function (res) {
      if (res.success && typeof res.lastRead === 'number') r.lastRead = Math.max(r.lastRead, res.lastRead);
    });
  }

  // ----- sending -----
  // A message to a room or a person is pending (shown greyed) until the
  // server answers. It goes out when this connection is logged in, and
  // again with the same client id (the server stores it once) after a
  // reconnection that left it unanswered: one that left the page just as
  // the server died is lost on the way, as with general's outbox. Unlike
  // the outbox it is not kept across a reload.

  function sendCurrent() {
    if (conv.current === GENERAL) { sendMessage(); return; }
    var text = ui.text.value;
    if (!text.trim() || !state.me) return;
    var v = viewFor(conv.current);
    var p = { cid: clientId(), text: text, sentOn: 0, li: messageNode({ msg: text, user: state.me }, true) };
    p.li.dataset.cid = p.cid;
    v.pending.push(p);
    v.ol.appendChild(p.li);
    v.ol.scrollTop = v.ol.scrollHeight;
    updateRoomEmpty(v);
    ui.text.value = '';
    updateComposer();
    ui.text.focus();
    if (canFlush()) sendRoomEntry(v, p);
  }

  // flushRoomSends sends what waits in the room views: after a login or a
  // resumed session on a new connection.
  function flushRoomSends() {
    if (!canFlush()) return;
    Object.keys(conv.views).forEach(function (k) {
      var v = conv.views[k];
      v.pending.slice().forEach(function (p) { if (p.sentOn !== state.conn) sendRoomEntry(v, p); });
    });
  }

  function sendRoomEntry(v, p) {
    var key = v.key, text = p.text, conn = state.conn;
    p.sentOn = conn;
    var req = typeof key === 'string'
      ? ask('send direct message', { to: key.slice(3), msg: text, id: p.cid })
      : ask('send room message', { room: key, msg: text, id: p.cid });
    req.then(function (res) {
      if (v.pending.indexOf(p) < 0 || p.sentOn !== conn) return; // answered, or sent again since
      // No answer on a connection that is gone, or not logged in yet: it
      // goes again on the next logged-in connection (now if that is this one).
      if (!res.success && (conn !== state.conn || !state.authed || res.message === NOT_LOGGED_IN)) {
        p.sentOn = 0;
        if (canFlush() && conn !== state.conn) sendRoomEntry(v, p);
        return;
      }
      v.pending.splice(v.pending.indexOf(p), 1);
      p.li.remove();
      if (!res.success) {
        roomError('Not sent: ' + (res.message || 'the message could not be sent.'));
        if (!ui.text.value) { ui.text.value = text; updateComposer(); }
        updateRoomEmpty(v);
        return;
      }
      roomError('');
      if (typeof key === 'string') {
        // The direct room exists now: show it in place of the draft.
        v.ol.remove();
        delete conv.views[key];
        addRoom({ id: res.room, name: '', kind: 'direct', peer: res.peer || key.slice(3), member: true, lastRead: 0, unread: 0 });
        if (conv.current === key) showRoom(res.room);
        refreshRooms();
        return;
      }
      if (hasId({ id: res.id }) && !v.byId[res.id]) {
        roomInsert(v, { msg: text, user: state.me, id: res.id, room: key, time: new Date().toISOString() });
        v.ol.scrollTop = v.ol.scrollHeight;
      }
      updateRoomEmpty(v);
    });
  }

  function claimRoomPending(v, m) {
    for (var i = 0; i < v.pending.length; i++) {
      if (v.pending[i].text === m.msg) { v.pending[i].li.remove(); v.pending.splice(i, 1); return; }
    }
  }

  // openDirect shows the direct room with peer, or a draft of it that the
  // first message creates.
  function openDirect(peer) {
    closeSidebarOnPhone();
    var r = directWith(peer);
    showRoom(r ? r.id : 'dm:' + peer);
    ui.text.focus();
  }

  // ----- typing -----

  // typingSoon tells the room that we are typing: at most one notice every
  // 2.5 s per room (the server allows one every 2 s).
  function typingSoon() {
    var key = conv.current;
    if (!conv.supported || typeof key !== 'number' || !canFlush() || !ui.text.value.trim()) return;
    var now = Date.now();
    if (now - (conv.lastTyping[key] || 0) < 2500) return;
    conv.lastTyping[key] = now;
    socket.emit('typing', { room: key }, function (res) {
      // Refused as too soon (another tab of ours, a reload): the next
      // keystroke a second from now tries again.
      if (res && res.success === false && conv.lastTyping[key] === now) conv.lastTyping[key] = now - 1500;
    });
  }

  function onTyping(t) {
    if (!t || typeof t !== 'object' || typeof t.room !== 'number' || typeof t.user !== 'string') return;
    if (t.user === state.me) return;
    var ttl = typeof t.ttl === 'number' && t.ttl > 0 ? Math.min(t.ttl, 30000) : 5000;
    var room = conv.typing[t.room] || (conv.typing[t.room] = {});
    room[t.user] = Date.now() + ttl;
    renderTyping();
    setTimeout(renderTyping, ttl + 50);
  }

  // A message from someone ends their typing notice.
  function stopTyping(room, user) {
    if (conv.typing[room] && conv.typing[room][user]) { delete conv.typing[room][user]; renderTyping(); }
  }

  function renderTyping() {
    var room = conv.typing[conv.current] || {};
    var now = Date.now();
    var names = Object.keys(room).filter(function (u) { return room[u] > now; }).sort();
    Object.keys(room).forEach(function (u) { if (room[u] <= now) delete room[u]; });
    var text = !names.length ? ''
      : names.length === 1 ? names[0] + ' is typing…'
      : names.length === 2 ? names[0] + ' and ' + names[1] + ' are typing…'
      : names.length + ' people are typing…';
    if (cui.typing.textContent !== text) cui.typing.textContent = text;
  }

  // ----- edit and delete -----

  function messageTools(m) {
    var tools = node('div', 'tools');
    var edit = node('button', 'tool', 'Edit');
    edit.type = 'button';
    edit.setAttribute('aria-label', 'Edit message');
    edit.addEventListener('click', function () { startEdit(tools.parentNode, m); });
    var del = node('button', 'tool', 'Delete');
    del.type = 'button';
    del.setAttribute('aria-label', 'Delete message');
    del.addEventListener('click', function () { deleteMessage(m, del); });
    tools.appendChild(edit);
    tools.appendChild(del);
    return tools;
  }

  function startEdit(li, m) {
    if (!li || li.querySelector('.edit-form')) return;
    var text = li.querySelector('.text');
    var form = node('form', 'edit-form');
    var area = node('textarea', 'edit-text');
    area.value = m.msg;
    area.rows = 2;
    area.maxLength = MAX_LEN;
    area.setAttribute('aria-label', 'Edit message');
    var err = node('p', 'error small');
    err.setAttribute('role', 'alert');
    var save = node('button', 'primary small', 'Save');
    save.type = 'submit';
    save.setAttribute('aria-label', 'Save edit');
    var cancel = node('button', 'ghost small', 'Cancel');
    cancel.type = 'button';
    cancel.setAttribute('aria-label', 'Cancel edit');
    var row = node('div', 'edit-actions');
    row.appendChild(save);
    row.appendChild(cancel);
    form.appendChild(area);
    form.appendChild(row);
    form.appendChild(err);
    text.hidden = true;
    text.after(form);
    li.classList.add('editing');
    var done = function () { form.remove(); text.hidden = false; li.classList.remove('editing'); };
    cancel.addEventListener('click', function () { done(); ui.text.focus(); });
    area.addEventListener('keydown', function (e) {
      if (e.key === 'Escape') { e.preventDefault(); done(); ui.text.focus(); }
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      if (!area.value.trim()) { err.textContent = 'Message must not be empty'; return; }
      if (area.value === m.msg) { done(); return; }
      save.disabled = true;
      ask('edit message', { message: m.id, msg: area.value, id: clientId() }).then(function (res) {
        save.disabled = false;
        if (!res.success || !res.message) { err.textContent = res.message || 'The message could not be changed.'; return; }
        updateMessage(res.message);
      });
    });
    area.focus();
    form.scrollIntoView({ block: 'nearest' }); // the last message's form opens below the fold
  }

  function deleteMessage(m, btn) {
    btn.disabled = true;
    ask('delete message', { message: m.id, id: clientId() }).then(function (res) {
      btn.disabled = false;
      if (!res.success || !res.message) { roomError(res.message || 'The message could not be deleted.'); return; }
      updateMessage(res.message);
    });
  }

  // updateMessage shows an edited or deleted message as it is now.
  function updateMessage(m) {
    if (!validMessage(m) || !hasId(m)) return;
    var room = typeof m.room === 'number' ? m.room : GENERAL;
    var item = room === GENERAL ? state.byId[m.id] : conv.views[room] && conv.views[room].byId[m.id];
    if (!item) return;
    var merged = {};
    Object.keys(item.m).forEach(function (k) { merged[k] = item.m[k]; });
    Object.keys(m).forEach(function (k) { merged[k] = m[k]; });
    item.m = merged;
    var fresh = messageNode(merged);
    item.li.replaceWith(fresh);
    item.li = fresh;
  }

  // ----- search -----

  function onSearch(e) {
    e.preventDefault();
    var q = cui.search.value.trim();
    if (!q) { closeSearch(); return; }
    cui.searchBox.hidden = false;
    cui.searchStatus.textContent = 'Searching…';
    cui.searchResults.replaceChildren();
    ask('search', { q: q, limit: 30 }).then(function (res) {
      if (cui.search.value.trim() !== q) return;
      if (!res.success || !Array.isArray(res.messages)) { cui.searchStatus.textContent = res.message || 'Search failed.'; return; }
      cui.searchStatus.textContent = res.messages.length ? res.messages.length + (res.messages.length === 30 ? '+' : '') + ' found' : 'Nothing found';
      var frag = document.createDocumentFragment();
      res.messages.forEach(function (m) {
        if (!validMessage(m) || !hasId(m)) return;
        var li = node('li');
        var b = node('button', 'result');
        b.type = 'button';
        b.dataset.id = String(m.id);
        var r = roomById(typeof m.room === 'number' ? m.room : GENERAL);
        var head = node('span', 'result-meta');
        head.appendChild(node('span', 'result-room', r ? roomLabel(r) : '#general'));
        head.appendChild(node('span', 'result-user', String(m.user)));
        var when = m.time ? formatTime(m.time) : null;
        if (when) head.appendChild(node('span', 'result-time', when));
        b.appendChild(head);
        b.appendChild(node('span', 'result-text', String(m.msg)));
        b.addEventListener('click', function () { jumpTo(m); });
        li.appendChild(b);
        frag.appendChild(li);
      });
      cui.searchResults.replaceChildren(frag);
    });
  }

  function closeSearch() {
    cui.searchBox.hidden = true;
    cui.searchResults.replaceChildren();
    cui.searchStatus.textContent = '';
  }

  // jumpTo selects the message's room, pages its history back until the
  // message is there, and scrolls to it, highlighted.
  function jumpTo(m) {
    var room = typeof m.room === 'number' ? m.room : GENERAL;
    closeSidebarOnPhone();
    showRoom(room);
    var tries = 0;
    var step = function () {
      var item = room === GENERAL ? state.byId[m.id] : conv.views[room] && conv.views[room].byId[m.id];
      if (item) { highlight(item.li); return; }
      if (tries++ > 40 || conv.current !== room) return;
      var more = room === GENERAL ? olderGeneral() : loadRoomPage(viewFor(room), 100);
      more.then(function (got) { if (got) step(); else if (room !== GENERAL) setTimeout(step, 300); });
    };
    step();
  }

  // olderGeneral loads one page of general before its oldest message.
  function olderGeneral() {
    var before = minId();
    if (before == null) return Promise.resolve(false);
    return ask('load older messages', { before: before, limit: 100 }).then(function (res) {
      if (!res.success) {
        return new Promise(function (r) { setTimeout(r, 700); }).then(function () { return true; });
      }
      var msgs = (res.messages || []).filter(function (x) { return validMessage(x) && hasId(x); });
      if (!msgs.length) { state.older.exhausted = true; showHistoryRow('start'); return false; }
      prependKeepingView(msgs);
      return true;
    });
  }

  function highlight(li) {
    li.scrollIntoView({ block: 'center' });
    li.classList.remove('highlight');
    void li.offsetWidth; // restart the animation
    li.classList.add('highlight');
    li.setAttribute('tabindex', '-1');
    li.focus({ preventScroll: true });
    setTimeout(function () { li.classList.remove('highlight'); }, 4000);
  }

  function wireConversations() {
    socket.on('room message', function (m) {
      if (m && typeof m.user === 'string') stopTyping(m.room, m.user);
      onRoomMessage(m);
    });
    socket.on('new message', function (m) { if (m && typeof m.user === 'string') stopTyping(GENERAL, m.user); });
    socket.on('message edited', updateMessage);
    socket.on('message deleted', updateMessage);
    socket.on('typing', onTyping);
    socket.on('rooms changed', refreshRooms);
    cui.create.addEventListener('submit', onCreateRoom);
    cui.searchForm.addEventListener('submit', onSearch);
    cui.searchClose.addEventListener('click', function () { closeSearch(); cui.search.focus(); });
    cui.search.addEventListener('keydown', function (e) { if (e.key === 'Escape' && cui.search.value) { cui.search.value = ''; closeSearch(); } });
  }

  // ---------- connection ----------

  function setStatus(s, attempt) {
    var text = s === 'connected' ? 'Connected'
      : s === 'reconnecting' ? (attempt ? 'Reconnecting (attempt ' + attempt + ')…' : 'Reconnecting…')
      : s === 'offline' ? 'Offline' : 'Connecting…';
    document.querySelectorAll('.status').forEach(function (n) {
      n.dataset.state = s;
      n.textContent = text;
    });
  }

  function onConnect() {
    state.connected = true;
    state.conn++;
    // A new connection starts logged out; with a token the server logs it
    // in and says so with `session` (see onSession).
    state.authed = false;
    clearTimeout(state.sessionTimer);
    clearTimeout(state.older.timer);
    state.older.loading = false;
    state.older.retryAt = 0;
    setStatus('connected');
    if (state.me && !state.token) flushOutbox(); // Node server: `reload` follows
    updateComposer();
  }

  // waitForSession: the token went with the handshake; a server that does
  // not know tokens (the Node one) never answers with `session`.
  function waitForSession() {
    clearTimeout(state.sessionTimer);
    var conn = state.conn;
    state.sessionTimer = setTimeout(function () {
      if (conn !== state.conn || state.authed || !state.me || !state.connected) return;
      forgetSession();
      leaveChat('Please log in again.');
      updateComposer();
    }, SESSION_WAIT_MS);
  }

  function onSession(s) {
    if (!s || typeof s !== 'object') return;
    clearTimeout(state.sessionTimer);
    if (typeof s.username === 'string' && s.username) {
      state.authed = true;
      if (!state.token) { var st = storedSession(); state.token = st && st.token; }
      enterChat(s.username);
      return;
    }
    var st2 = storedSession();
    if (st2 && !state.me) state.lastName = st2.username;
    forgetSession();
    leaveChat(s.message || 'Session expired, please log in again');
    updateComposer();
  }

  function onDisconnect(reason) {
    state.connected = false;
    state.authed = false;
    clearTimeout(state.sessionTimer);
    setStatus(navigator.onLine === false ? 'offline' : 'reconnecting');
    // The client does not retry on its own after a server-side disconnect
    // (a restart or hand-over): retry after a short, spread-out pause.
    if (reason === 'io server disconnect') setTimeout(function () { socket.connect(); }, 500 + Math.random() * 1500);
    updateComposer();
  }

  function onReload() {
    if (!state.me) return;
    // The server does not count this connection as logged in.
    if (state.token) forgetSession();
    leaveChat('You were signed out. Please log in again.');
    updateComposer();
  }

  // ---------- wiring ----------

  socket.on('connect', onConnect);
  socket.on('disconnect', onDisconnect);
  socket.on('connect_error', function () {
    if (navigator.onLine === false || !socket.active) setStatus('offline');
  });
  socket.io.on('reconnect_attempt', function (n) {
    setStatus(navigator.onLine === false ? 'offline' : 'reconnecting', n);
  });
  socket.io.on('reconnect_failed', function () { setStatus('offline'); });
  socket.on('load all messages', onLoadAll);
  socket.on('get users', renderUsers);
  socket.on('new message', onNewMessage);
  socket.on('session', onSession);
  socket.on('reload', onReload);

  window.addEventListener('offline', function () { if (!state.connected) setStatus('offline'); });
  window.addEventListener('online', function () {
    if (state.connected) return;
    setStatus('reconnecting');
    if (!socket.active) socket.connect();
  });
  document.addEventListener('visibilitychange', function () {
    if (document.hidden) return;
    setUnread(0);
    markReadSoon(conv.current);
  });

  ui.form.addEventListener('submit', onAuthSubmit);
  ui.toggle.addEventListener('click', function () { setMode(state.mode === 'login' ? 'register' : 'login'); });
  ui.logout.addEventListener('click', onLogout);
  ui.usersToggle.addEventListener('click', toggleUsers);
  document.addEventListener('keydown', function (e) {
    if (e.key === 'Escape' && ui.chat.classList.contains('show-users')) { toggleUsers(); ui.usersToggle.focus(); }
  });
  ui.composer.addEventListener('submit', function (e) { e.preventDefault(); sendCurrent(); });
  ui.text.addEventListener('keydown', onComposerKey);
  ui.text.addEventListener('input', updateComposer);
  ui.text.addEventListener('input', typingSoon);
  ui.messages.addEventListener('scroll', onScroll);
  if (window.ResizeObserver) new ResizeObserver(onResize).observe(ui.messages);
  ui.jump.addEventListener('click', function () { scrollToBottom(); ui.text.focus(); });
  wireConversations();

  setMode('login');
  // A stored session goes straight to the chat; the server confirms it with
  // `session` (or sends us back here). Offline, the chat and its outbox work.
  var saved = storedSession();
  if (saved) {
    state.token = saved.token;
    enterChat(saved.username);
  }
  updateComposer();
})();
