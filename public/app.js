// app.js: behaviour of the chat page. It speaks only the socket.io events of
// PROTOCOL.md (register, login, logout, send message; load all messages,
// get users, new message, reload), so it runs unchanged against the original
// Node server too. User text is always inserted as text, never as HTML.
(function () {
  'use strict';

  var MAX_LEN = 2000;          // the server's limit for one message
  var COUNTER_FROM = 1800;     // show the character counter from here on
  var ACK_TIMEOUT_MS = 10000;  // give up waiting for an acknowledgement
  var NEAR_BOTTOM_PX = 48;     // "at the bottom" tolerance for auto-scroll

  var $ = function (id) { return document.getElementById(id); };
  var ui = {
    auth: $('auth'), form: $('auth-form'), title: $('auth-title'), sub: $('auth-sub'),
    username: $('username'), password: $('password'), error: $('auth-error'),
    notice: $('auth-notice'), submit: $('auth-submit'), submitLabel: $('auth-submit-label'),
    switchText: $('auth-switch-text'), toggle: $('auth-toggle'),
    chat: $('chat'), me: $('me-name'), logout: $('logout'), usersToggle: $('users-toggle'),
    users: $('users'), messages: $('messages'), empty: $('empty'), jump: $('jump'),
    composer: $('composer'), text: $('text'), counter: $('counter'), send: $('send'),
    sendError: $('send-error')
  };

  var state = {
    mode: 'login',     // which form the card shows: 'login' or 'register'
    me: null,          // our username while logged in
    creds: null,       // kept in memory only, to log back in after a reconnect
    connected: false,
    relogging: false,  // a silent re-login after a reconnect is in flight
    draft: '',         // last text sent; restored if the server refused it
    messages: [],
    users: [],         // the last `get users` list
    lastName: '',      // prefilled on the card after a logout or sign-out
    seenIds: {},       // message ids already shown (extension field `id`)
    stuck: true,       // the message list follows new messages
    unread: 0
  };

  var socket = io();

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
      setBusy(false);
      if (res.success) enterChat(creds);
      else { showError(res.message || 'Something went wrong.'); ui.password.select(); }
    });
  }

  // ---------- screens ----------

  function enterChat(creds) {
    state.me = creds.username;
    state.creds = creds;
    ui.me.textContent = creds.username;
    ui.password.value = '';
    ui.auth.hidden = true;
    ui.chat.hidden = false;
    renderMessages();
    renderUsers(state.users);
    if (state.draft && !ui.text.value) ui.text.value = state.draft;
    updateComposer();
    scrollToBottom();
    ui.text.focus();
  }

  function leaveChat(notice) {
    state.me = null;
    state.creds = null;
    state.relogging = false;
    ui.chat.hidden = true;
    ui.auth.hidden = false;
    ui.chat.classList.remove('show-users');
    ui.usersToggle.setAttribute('aria-expanded', 'false');
    ui.sendError.textContent = '';
    setMode('login');
    if (state.lastName) ui.username.value = state.lastName;
    showNotice(notice || '');
    (ui.username.value ? ui.password : ui.username).focus();
  }

  function onLogout() {
    ui.logout.disabled = true;
    state.lastName = state.me || '';
    ask('logout').then(function () {
      // Whatever the answer, the socket is no longer ours to speak for.
      ui.logout.disabled = false;
      state.draft = '';
      ui.text.value = ''; // the next person on this page starts clean
      leaveChat('You have been logged out.');
    });
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

  function messageNode(m) {
    var user = String(m.user == null ? '' : m.user);
    var li = node('li', 'msg' + (user === state.me ? ' mine' : ''));
    var avatar = node('span', 'avatar', (user.trim()[0] || '?').toUpperCase());
    avatar.setAttribute('aria-hidden', 'true');
    avatar.style.setProperty('--hue', hue(user));
    var body = node('div', 'bubble');
    var meta = node('div', 'meta');
    meta.appendChild(node('span', 'author', user));
    var when = m.time ? formatTime(m.time) : null;
    if (when) {
      var t = node('time', 'time', when);
      t.dateTime = m.time;
      t.title = new Date(m.time).toLocaleString();
      meta.appendChild(t);
    }
    body.appendChild(meta);
    body.appendChild(node('div', 'text', String(m.msg == null ? '' : m.msg)));
    li.appendChild(avatar);
    li.appendChild(body);
    return li;
  }

  function renderMessages() {
    var frag = document.createDocumentFragment();
    state.messages.forEach(function (m) { frag.appendChild(messageNode(m)); });
    ui.messages.replaceChildren(frag);
    ui.empty.hidden = state.messages.length > 0;
  }

  function onLoadAll(list) {
    state.messages = Array.isArray(list) ? list.slice() : [];
    state.seenIds = {};
    state.messages.forEach(function (m) { if (m && m.id != null) state.seenIds[m.id] = true; });
    renderMessages();
    scrollToBottom();
  }

  function onNewMessage(m) {
    if (!m || typeof m !== 'object') return;
    if (m.id != null) {
      if (state.seenIds[m.id]) return;
      state.seenIds[m.id] = true;
    }
    var follow = state.stuck || m.user === state.me;
    state.messages.push(m);
    ui.messages.appendChild(messageNode(m));
    ui.empty.hidden = true;
    if (m.user === state.me) state.draft = '';
    if (follow) scrollToBottom();
    else ui.jump.hidden = false;
    if (document.hidden && m.user !== state.me) setUnread(state.unread + 1);
  }

  function setUnread(n) {
    state.unread = n;
    document.title = n ? '(' + n + ') Chat' : 'Chat';
  }

  // ---------- scrolling ----------

  function atBottom() {
    var box = ui.messages;
    return box.scrollHeight - box.scrollTop - box.clientHeight <= NEAR_BOTTOM_PX;
  }

  function scrollToBottom() {
    ui.messages.scrollTop = ui.messages.scrollHeight;
    state.stuck = true;
    ui.jump.hidden = true;
  }

  function onScroll() {
    state.stuck = atBottom();
    if (state.stuck) ui.jump.hidden = true;
  }

  // When the list gets shorter (a phone keyboard opens, the window shrinks),
  // keep the newest message in view if the user was reading it.
  function onResize() { if (state.stuck) scrollToBottom(); }

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
      var dot = node('span', 'dot');
      dot.setAttribute('aria-hidden', 'true');
      li.appendChild(dot);
      li.appendChild(node('span', 'name', name));
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

  function canSend() { return state.connected && !!state.me && !state.relogging; }

  function updateComposer() {
    var len = ui.text.value.length;
    ui.counter.hidden = len < COUNTER_FROM;
    ui.counter.textContent = len + ' / ' + MAX_LEN;
    ui.counter.classList.toggle('over', len >= MAX_LEN);
    ui.send.disabled = !canSend() || !ui.text.value.trim();
    ui.text.placeholder = canSend() ? 'Message #general' : 'Waiting for the connection…';
    autosize();
  }

  function autosize() {
    ui.text.style.height = 'auto';
    ui.text.style.height = Math.min(ui.text.scrollHeight, 180) + 'px';
  }

  function sendMessage() {
    var text = ui.text.value;
    if (!text.trim() || !canSend()) return;
    // The acknowledgement is an extension of the Go server; the Node server
    // never calls it, which is harmless.
    socket.emit('send message', text, function (res) {
      if (res && res.success === false) onSendRefused(res.message, text);
    });
    state.draft = text;
    ui.sendError.textContent = '';
    ui.text.value = '';
    updateComposer();
    ui.text.focus();
  }

  // onSendRefused shows why the server did not take a message and puts the
  // text back so that nothing typed is lost.
  function onSendRefused(message, text) {
    if (!state.me) return;
    ui.sendError.textContent = message || 'The message could not be sent.';
    if (!ui.text.value) { ui.text.value = text; updateComposer(); }
  }

  function onComposerKey(e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      sendMessage();
    }
  }

  // ---------- connection ----------

  var STATUS_TEXT = { connecting: 'Connecting…', connected: 'Connected', reconnecting: 'Reconnecting…', offline: 'Offline' };

  function setStatus(s) {
    document.querySelectorAll('.status').forEach(function (n) {
      n.dataset.state = s;
      n.textContent = STATUS_TEXT[s];
    });
  }

  function onConnect() {
    state.connected = true;
    setStatus('connected');
    // A new connection is a new, logged-out socket: log back in silently.
    if (state.me && state.creds) relogin();
    updateComposer();
  }

  function relogin() {
    state.relogging = true;
    ask('login', state.creds).then(function (res) {
      state.relogging = false;
      if (!state.me) return;
      if (res.success) updateComposer();
      else { state.lastName = state.me; leaveChat('You were signed out. Please log in again.'); }
    });
  }

  function onDisconnect(reason) {
    state.connected = false;
    setStatus(navigator.onLine === false ? 'offline' : 'reconnecting');
    // The client does not retry on its own after a server-side disconnect
    // (a restart or hand-over): retry after a short, spread-out pause.
    if (reason === 'io server disconnect') setTimeout(function () { socket.connect(); }, 500 + Math.random() * 1500);
    updateComposer();
  }

  function onReload() {
    if (!state.me) return;
    state.lastName = state.me;
    leaveChat('You were signed out. Please log in again.');
  }

  // ---------- wiring ----------

  socket.on('connect', onConnect);
  socket.on('disconnect', onDisconnect);
  socket.on('connect_error', function () { setStatus(socket.active ? 'reconnecting' : 'offline'); });
  socket.io.on('reconnect_attempt', function () { setStatus('reconnecting'); });
  socket.io.on('reconnect_failed', function () { setStatus('offline'); });
  socket.on('load all messages', onLoadAll);
  socket.on('get users', renderUsers);
  socket.on('new message', onNewMessage);
  socket.on('reload', onReload);

  window.addEventListener('offline', function () { setStatus('offline'); });
  window.addEventListener('online', function () { setStatus(state.connected ? 'connected' : 'reconnecting'); });
  document.addEventListener('visibilitychange', function () { if (!document.hidden) setUnread(0); });

  ui.form.addEventListener('submit', onAuthSubmit);
  ui.toggle.addEventListener('click', function () { setMode(state.mode === 'login' ? 'register' : 'login'); });
  ui.logout.addEventListener('click', onLogout);
  ui.usersToggle.addEventListener('click', toggleUsers);
  document.addEventListener('keydown', function (e) {
    if (e.key === 'Escape' && ui.chat.classList.contains('show-users')) { toggleUsers(); ui.usersToggle.focus(); }
  });
  ui.composer.addEventListener('submit', function (e) { e.preventDefault(); sendMessage(); });
  ui.text.addEventListener('keydown', onComposerKey);
  ui.text.addEventListener('input', updateComposer);
  ui.messages.addEventListener('scroll', onScroll);
  if (window.ResizeObserver) new ResizeObserver(onResize).observe(ui.messages);
  ui.jump.addEventListener('click', function () { scrollToBottom(); ui.text.focus(); });

  setMode('login');
  updateComposer();
})();
