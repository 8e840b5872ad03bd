// free-port.js: prints the first TCP port on 127.0.0.1 that nothing listens
// on, searching E2E_PORT_MIN..E2E_PORT_MAX (default 3100..3199). Also usable
// from the tests: require('./free-port').freePort().
'use strict';

const net = require('node:net');

function tryPort(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

async function freePort(skip = []) {
  const min = Number(process.env.E2E_PORT_MIN || 3100);
  const max = Number(process.env.E2E_PORT_MAX || 3199);
  // Start at a random offset so parallel runs rarely race for one port.
  const span = max - min + 1;
  const start = Math.floor(Math.random() * span);
  for (let i = 0; i < span; i++) {
    const port = min + ((start + i) % span);
    if (!skip.includes(port) && await tryPort(port)) return port;
  }
  throw new Error(`no free port in ${min}..${max}`);
}

module.exports = { freePort };

if (require.main === module) {
  freePort().then((p) => console.log(p), (e) => { console.error(e.message); process.exit(1); });
}
