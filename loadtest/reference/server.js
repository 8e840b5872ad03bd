// The Node baseline: the seed report's chat server (sections 2.1-2.5, 3.3),
// rebuilt from its code fragments so that the Go server can be compared with
// it on the same machine, under the same load test, against the same kind of
// database. It is kept faithful on purpose, quirks included:
//
//   - the whole chat history and every user are read into memory at start,
//     asynchronously, while the server already listens (a client that connects
//     before the read has finished gets an empty history, and a message sent
//     in that window is dropped from memory when the read lands);
//   - the whole history goes to every new connection as `load all messages`;
//   - `register` checks the in-memory userStore before the (slow) bcrypt hash,
//     so two concurrent registrations of one name can both succeed and both be
//     inserted: user_table has no unique constraint;
//   - `send message` broadcasts before it stores, and a failed INSERT (like a
//     failed INSERT in `register`) is an unhandled rejection that ends the
//     process, as in the original;
//   - the online list is an array of names: a user logged in on two sockets is
//     listed twice, and a socket may log in again without logging out.
//
// The one change: a client that omits the acknowledgement callback. The
// original calls `callback(...)` unconditionally and so crashes the whole
// process with a TypeError; here that is logged and the acknowledgement is
// skipped (everything else the handler does still happens), so that load tests
// measure throughput rather than crashes. See ack() below.
//
// Config from the environment: PORT (default 3000), DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/chat), PUBLIC_DIR (default ../../public,
// the Go project's page, so that the same page runs against both servers).
'use strict';

const path = require('path');
const http = require('http');
const express = require('express');
const { Server } = require('socket.io');
const { Pool } = require('pg');
const bcrypt = require('bcrypt');

const PORT = Number(process.env.PORT || 3000);
const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/chat';
const PUBLIC_DIR = process.env.PUBLIC_DIR || path.join(__dirname, '..', '..', 'public');

const app = express();
const server = http.createServer(app);
const io = new Server(server);

// Connect to database (postgres): section 2.1.
const pool = new Pool({ connectionString: DATABASE_URL });

let users = [];       // names of logged-in sockets, one entry per login
let connections = []; // every connected socket
let chatStore = [];   // [{msg, user}], oldest first
let userStore = {};   // username -> {password: bcrypt hash}

// The seed shows no DDL; these are its two tables with the columns it uses.
// No constraints beyond the serial id: the original enforced uniqueness of
// usernames only in memory.
const schema = `
CREATE TABLE IF NOT EXISTS user_table (
    username TEXT,
    password TEXT
);
CREATE TABLE IF NOT EXISTS chat_history (
    id SERIAL,
    content TEXT,
    username TEXT
);`;

pool.query(schema, (error) => {
  if (error) {
    throw error;
  }

  // Read messages history from database: section 2.2.
  pool.query('SELECT * FROM chat_history ORDER BY id', (error, results) => {
    if (error) {
      throw error;
    }
    chatStore = results.rows.map(row => ({ msg: row.content, user: row.username }));
  });

  // Read user information from database: section 2.2.
  pool.query('SELECT * FROM user_table', (error, results) => {
    if (error) {
      throw error;
    }
    results.rows.forEach(row => {
      const username = row.username;
      const password = row.password;
      if (username && password) {
        userStore[username] = { password };
      }
    });
  });
});

server.listen(PORT, () => {
  console.log('Server running on port %d, public dir %s', PORT, PUBLIC_DIR);
});

app.use(express.static(PUBLIC_DIR));

// ack returns the client's acknowledgement callback, or, when the client sent
// none, a stand-in that logs and skips. This is the only departure from the
// original, where `callback(...)` on undefined threw and killed the process.
function ack(callback, event, socket) {
  if (typeof callback === 'function') {
    return callback;
  }
  return function () {
    console.log('No callback for %s from socket %s: acknowledgement skipped (the original server crashes here)', event, socket.id);
  };
}

function updateUsernames() {
  io.sockets.emit('get users', users);
}

io.sockets.on('connection', function (socket) {
  // Connect Socket: sections 2.4 and 3.3.
  connections.push(socket);
  console.log('Connected: %s sockets connected', connections.length);
  socket.emit('load all messages', chatStore);

  // Disconnect
  socket.on('disconnect', function (data) {
    if (socket.username) {
      users.splice(users.indexOf(socket.username), 1);
      updateUsernames();
    }
    connections.splice(connections.indexOf(socket), 1);
    console.log('Disconnected: %s sockets connected', connections.length);
  });

  // Register User: section 2.3.
  socket.on('register', function (data, callback) {
    callback = ack(callback, 'register', socket);
    if (userStore[data.username]) {
      callback({ success: false, message: 'Username already taken' });
    } else {
      bcrypt.hash(data.password, 10, async function (err, hash) {
        if (err) {
          callback({ success: false, message: 'Error registering user' });
        } else {
          userStore[data.username] = { password: hash };
          await pool.query('INSERT INTO user_table (username, password) VALUES ($1, $2)', [data.username, hash]);
          callback({ success: true });
        }
      });
    }
  });

  // Login User: section 2.3 (the fragment is split by a figure; the missing
  // lines are the obvious ones between the two halves).
  socket.on('login', function (data, callback) {
    callback = ack(callback, 'login', socket);
    if (!userStore[data.username]) {
      callback({ success: false, message: 'Invalid username or password' });
    } else {
      bcrypt.compare(data.password, userStore[data.username].password, function (err, res) {
        if (res) {
          socket.username = data.username;
          users.push(socket.username);
          updateUsernames();
          callback({ success: true });
        } else {
          callback({ success: false, message: 'Invalid username or password' });
        }
      });
    }
  });

  // Logout User: section 2.3. The callback is the only argument.
  socket.on('logout', function (callback) {
    callback = ack(callback, 'logout', socket);
    if (socket.username) {
      users.splice(users.indexOf(socket.username), 1);
      updateUsernames();
      socket.username = null;
      callback({ success: true });
    } else {
      callback({ success: false, message: 'No user is currently logged in.' });
    }
  });

  // Send Message: section 2.4. No acknowledgement.
  socket.on('send message', async function (data) {
    if (!socket.username) {
      socket.emit('reload');
    } else {
      var message = { msg: data, user: socket.username };
      chatStore.push(message);
      io.sockets.emit('new message', message);
      await pool.query('INSERT INTO chat_history(content,username) VALUES ($1, $2)', [data, socket.username]);
    }
  });
});
