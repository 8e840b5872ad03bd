'use strict';
// docs/protocol.md over the v2-websocket client/transport (see lib/harness.js VARIANTS).
require('./lib/suite').defineSuite('v2-websocket');
