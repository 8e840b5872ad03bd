#!/usr/bin/env node
'use strict';
// Prints a bcrypt hash made by the npm `bcrypt` package, exactly as the Node.js
// chat server made them: bcrypt.hashSync(password, 10) -> "$2b$10$...".
// The Go test suite runs this to get hashes that a Node server would have
// written to user_table, and checks that the Go server accepts them.
//
//   node make-node-hash.js PASSWORD                 # $2b$, cost 10
//   node make-node-hash.js --minor a PASSWORD       # $2a$ (older bcrypt/bcryptjs)
//   node make-node-hash.js --rounds 12 PASSWORD
//   echo -n PASSWORD | node make-node-hash.js -     # password from stdin (exact bytes)
//   node make-node-hash.js --fixture                # regenerate fixtures/node-bcrypt.json
const fs = require('node:fs');
const bcrypt = require('bcrypt');

function hash(password, rounds = 10, minor = 'b') {
  if (minor === 'b' && rounds === 10) return bcrypt.hashSync(password, 10);
  return bcrypt.hashSync(password, bcrypt.genSaltSync(rounds, minor));
}

// Entries of fixtures/node-bcrypt.json. A Node server accepted every one of
// these at registration and lets the user log in with exactly `password`.
const FIXTURE = [
  { username: 'node_alice', password: 'correct horse battery staple', minor: 'b' },
  { username: 'node_bob', password: 'p@ss w0rd!', minor: 'a' },
  { username: 'node_chloé', password: 'mật khẩu 🔑 ü', minor: 'b', note: 'non-ASCII username and password (UTF-8 bytes are hashed)' },
  { username: 'node_dan', password: 'x', minor: 'a', note: 'one-character password' },
  {
    username: 'node_erin',
    password: 'L'.repeat(72) + '-tail-ignored',
    minor: 'b',
    note: '85 bytes: Node bcrypt hashes only the first 72 bytes, so Node accepts this password and any other with the same first 72 bytes',
  },
];

function main(argv) {
  let rounds = 10;
  let minor = 'b';
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--rounds') rounds = Number(argv[++i]);
    else if (a === '--minor') minor = argv[++i];
    else if (a === '--fixture') {
      const out = FIXTURE.map(({ username, password, minor: m, note }) => {
        const e = { username, password, hash: hash(password, 10, m) };
        if (!bcrypt.compareSync(password, e.hash)) throw new Error(`self-check failed for ${username}`);
        if (note) e.note = note;
        return e;
      });
      process.stdout.write(JSON.stringify(out, null, 2) + '\n');
      return 0;
    } else rest.push(a);
  }
  if (rest.length !== 1 || !['a', 'b'].includes(minor) || !(rounds >= 4 && rounds <= 31)) {
    process.stderr.write('usage: node make-node-hash.js [--rounds N] [--minor a|b] PASSWORD|-\n       node make-node-hash.js --fixture\n');
    return 2;
  }
  const password = rest[0] === '-' ? fs.readFileSync(0, 'utf8') : rest[0];
  process.stdout.write(hash(password, rounds, minor) + '\n');
  return 0;
}

process.exitCode = main(process.argv.slice(2));
