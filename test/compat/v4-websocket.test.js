'use strict';
// docs/protocol.md over the v4-websocket client/transport (see lib/harness.js VARIANTS).
require('./lib/suite').defineSuite('v4-websocket');
