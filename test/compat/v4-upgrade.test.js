'use strict';
// docs/protocol.md over the v4-upgrade client/transport (see lib/harness.js VARIANTS):
// long-polling first, then WebSocket, as the stock io() does.
require('./lib/suite').defineSuite('v4-upgrade');
