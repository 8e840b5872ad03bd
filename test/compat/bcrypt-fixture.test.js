'use strict';
// fixtures/node-bcrypt.json holds hashes made by the npm bcrypt package (the
// one the Node.js server used), for the Go suite's "old users can log in"
// tests. Check here that each entry is what Node itself accepts.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const bcrypt = require('bcrypt');
const fixture = require('./fixtures/node-bcrypt.json');

test('fixture hashes verify with Node bcrypt, cost 10, both $2a$ and $2b$', () => {
  assert.ok(fixture.length >= 2);
  const prefixes = new Set();
  for (const e of fixture) {
    assert.match(e.hash, /^\$2[ab]\$10\$[./A-Za-z0-9]{53}$/, e.username);
    prefixes.add(e.hash.slice(0, 4));
    assert.equal(bcrypt.compareSync(e.password, e.hash), true, `${e.username}: right password`);
    assert.equal(bcrypt.compareSync(e.password + 'x', e.hash), Buffer.byteLength(e.password) >= 72, `${e.username}: a longer password matches only past 72 bytes`);
    assert.equal(bcrypt.compareSync('wrong', e.hash), false, `${e.username}: wrong password`);
  }
  assert.deepEqual([...prefixes].sort(), ['$2a$', '$2b$']);
});

test('make-node-hash.js prints a Node bcrypt hash of its argument', () => {
  const script = path.join(__dirname, 'make-node-hash.js');
  const out = execFileSync(process.execPath, [script, 'sesame'], { encoding: 'utf8', timeout: 5000 }).trim();
  assert.match(out, /^\$2b\$10\$/);
  assert.equal(bcrypt.compareSync('sesame', out), true);
  const a = execFileSync(process.execPath, [script, '--minor', 'a', 'sesame'], { encoding: 'utf8', timeout: 5000 }).trim();
  assert.match(a, /^\$2a\$10\$/);
  assert.equal(bcrypt.compareSync('sesame', a), true);
});
