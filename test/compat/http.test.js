'use strict';
// The server serves the stock socket.io-client browser bundle at the URLs the
// Node.js socket.io server uses, so a page with
// <script src="/socket.io/socket.io.js"> works unchanged.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { targetURL, WAIT } = require('./lib/harness');

const npmDist = path.dirname(require.resolve('socket.io-client/dist/socket.io.js'));
const npmVersion = require('socket.io-client/package.json').version;

const get = (p, headers = {}) => fetch(targetURL() + p, { headers, signal: AbortSignal.timeout(WAIT) });

for (const name of ['socket.io.js', 'socket.io.min.js']) {
  test(`GET /socket.io/${name} serves the unmodified socket.io-client 4.8 bundle`, async (t) => {
    const res = await get(`/socket.io/${name}`, { 'accept-encoding': 'identity' });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^application\/javascript; charset=utf-8$/i);
    const body = Buffer.from(await res.arrayBuffer());
    assert.match(body.subarray(0, 40).toString(), /^\/\*!\n \* Socket\.IO v4\.8\.\d+\n/);
    const served = body.subarray(0, 40).toString().match(/v(4\.8\.\d+)/)[1];
    if (served === npmVersion) {
      assert.ok(body.equals(fs.readFileSync(path.join(npmDist, name))), `byte-identical to npm socket.io-client@${npmVersion} dist/${name}`);
    } else {
      t.diagnostic(`server bundles ${served}, npm here has ${npmVersion}: bytes not compared`);
    }
    const etag = res.headers.get('etag');
    assert.ok(etag, 'has an ETag');
    const again = await get(`/socket.io/${name}`, { 'if-none-match': etag, 'accept-encoding': 'identity' });
    assert.equal(again.status, 304);
    assert.equal((await again.arrayBuffer()).byteLength, 0);
  });
}

test('GET /socket.io/socket.io.js.map is served as well', async () => {
  const res = await get('/socket.io/socket.io.js.map');
  assert.equal(res.status, 200);
  const map = JSON.parse(await res.text());
  assert.equal(map.version, 3);
});

test('an unknown file under /socket.io/ is not served as the bundle', async () => {
  const res = await get('/socket.io/not-a-bundle.js');
  await res.arrayBuffer();
  assert.ok(res.status >= 400 && res.status < 500, `status ${res.status}`);
});

test('the served bundle, run as a classic script, connects and chats over WebSocket', async () => {
  const script = path.join(__dirname, 'lib', 'served-bundle-client.js');
  const out = await new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--experimental-websocket', '--no-warnings', script],
      { env: { ...process.env, TARGET_URL: targetURL() }, timeout: 15000 },
      (err, stdout, stderr) => resolve({ err, stdout, stderr }),
    );
  });
  let r;
  try {
    r = JSON.parse(out.stdout.trim().split('\n').pop());
  } catch {
    assert.fail(`no result: ${out.err} ${out.stdout} ${out.stderr}`);
  }
  assert.equal(r.ok, true, r.error);
  assert.equal(r.first, 'load all messages');
  assert.equal(r.reg.success, true);
  assert.equal(r.login.success, true);
  assert.deepEqual({ msg: r.message.msg, user: r.message.user }, { msg: `from the served bundle ${r.username}`, user: r.username });
});
