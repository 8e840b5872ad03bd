// failover.test.js: the report's deployment (section 3.1) in a browser, as
// the repository configures it: primary + backup on one PostgreSQL behind
// nginx with nginx.conf (see failover-helpers.js). Two people chat through
// nginx; A has a message in the composer when the primary is killed
// (SIGKILL). The page must say "Reconnecting…", keep the message as pending
// when Enter is pressed, be "Connected" again within 10 s (target 2 s) on the
// backup, still logged in through its session token (no card, no password),
// and both pages must show the message exactly once and each other online.
// Prints the measured times, what a first load through nginx weighs and how
// long it takes, and saves out/failover-reconnecting.png and
// out/failover-recovered.png. Skips without nginx or PostgreSQL, except
// under CI=true, where it fails.
'use strict';

const { test, after } = require('node:test');
const fo = require('./failover-helpers');

after(fo.closeAll);

test('failover behind nginx (nginx.conf as deployed): kill -9 the primary, the page reconnects to the backup logged in, the pending message goes out once', fo.T, async () => {
  fo.mustRun();
  const cluster = new fo.Cluster();
  await cluster.start();
  await fo.failover(cluster, 'failover', { measure: true, shots: true });
  const refused = cluster.access()['GET websocket 400'];
  if (refused) {
    console.log(`# NOTE: nginx answered ${refused} WebSocket upgrades with 400, so these pages stayed on`
      + ' long-polling: nginx passes Host without its port ($host) and the server\'s WebSocket upgrader'
      + ' (gorilla\'s default CheckOrigin) compares that with the page\'s Origin host:port. On port 80 the'
      + ' two agree; failover-websocket.test.js covers that path.');
  }
  await cluster.stop();
});
