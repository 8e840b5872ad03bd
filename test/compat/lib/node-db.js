'use strict';
// A PostgreSQL database in the state the Node.js chat server left it: the
// seed's two tables (as a hand-written schema of that era would make them:
// no unique constraint, VARCHAR columns), users whose password column holds
// hashes made by the npm bcrypt package, and history rows inserted with the
// seed's own INSERT statements.
//
//   node lib/node-db.js create ADMIN_URL DBNAME   # prints the new database's URL
//   node lib/node-db.js drop ADMIN_URL DBNAME
const { Client } = require('pg');
const bcrypt = require('bcrypt');
const fixture = require('../fixtures/node-bcrypt.json');

// A user whose hash is made now, by this machine's npm bcrypt, at cost 10.
const FRESH_USER = { username: 'node_fresh', password: 'hashed at seed time' };

// History as the Node server stored it, oldest first.
const MESSAGES = [
  { msg: 'hello from the Node.js era', user: 'node_alice' },
  { msg: 'xin chào 👋 — ünïcødé', user: 'node_chloé' },
  { msg: '<b>not html</b> & "quotes"', user: 'node_bob' },
  { msg: 'last Node message', user: 'node_alice' },
];

function dbURL(admin, name) {
  const u = new URL(admin);
  u.pathname = '/' + name;
  return u.toString();
}

async function withClient(url, fn) {
  const c = new Client({ connectionString: url, connectionTimeoutMillis: 5000, statement_timeout: 10000 });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function create(admin, name) {
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`bad database name ${name}`);
  await withClient(admin, (c) => c.query(`CREATE DATABASE ${name}`));
  const url = dbURL(admin, name);
  await withClient(url, async (c) => {
    await c.query('CREATE TABLE user_table (username VARCHAR(255), password VARCHAR(255))');
    await c.query('CREATE TABLE chat_history (id SERIAL PRIMARY KEY, content TEXT, username VARCHAR(255))');
    for (const u of fixture) {
      await c.query('INSERT INTO user_table (username, password) VALUES ($1, $2)', [u.username, u.hash]);
    }
    await c.query('INSERT INTO user_table (username, password) VALUES ($1, $2)', [
      FRESH_USER.username,
      bcrypt.hashSync(FRESH_USER.password, 10),
    ]);
    for (const m of MESSAGES) {
      await c.query('INSERT INTO chat_history(content,username) VALUES ($1, $2)', [m.msg, m.user]);
    }
  });
  return url;
}

async function drop(admin, name) {
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`bad database name ${name}`);
  await withClient(admin, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
}

module.exports = { FRESH_USER, MESSAGES, fixture, withClient };

if (require.main === module) {
  const [cmd, admin, name] = process.argv.slice(2);
  const run = cmd === 'create' ? create : cmd === 'drop' ? drop : null;
  if (!run || !admin || !name) {
    console.error('usage: node lib/node-db.js create|drop ADMIN_URL DBNAME');
    process.exit(2);
  }
  run(admin, name).then(
    (out) => {
      if (out) console.log(out);
    },
    (err) => {
      console.error(err.message);
      process.exit(1);
    },
  );
}
