// failover-websocket.test.js: the failover of failover.test.js with both
// pages on a WebSocket when the primary dies, as they are behind nginx on
// port 80 (the report's deployment). Here nginx listens on a port in
// 3100..3199, the page's Origin carries that port and nginx's Host does not,
// and the server then refuses the WebSocket upgrade (see the NOTE that
// failover.test.js prints); ALLOWED_ORIGINS naming nginx's origin restores
// the port-80 behaviour. Also asserts that both pages are on a WebSocket
// again afterwards, on the backup.
'use strict';

const { test, after } = require('node:test');
const fo = require('./failover-helpers');

after(fo.closeAll);

test('failover behind nginx over WebSocket: kill -9 the primary with both pages upgraded; back on the backup, logged in, the message once', fo.T, async () => {
  fo.mustRun();
  const cluster = new fo.Cluster((ports) => ({ ALLOWED_ORIGINS: `http://127.0.0.1:${ports.nginx}` }));
  await cluster.start();
  await fo.failover(cluster, 'failover over WebSocket', { webSocket: true });
  await cluster.stop();
});
