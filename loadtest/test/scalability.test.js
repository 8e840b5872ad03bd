// The seed report's scalability test (section 3.2, "450 users log into the
// server at one time"), rewritten so that it waits for every acknowledgement.
//
// Each of 450 clients, user0 ... user449, opens its own socket.io connection
// and emits `register` {username, password: 'password'}; every acknowledgement
// must be {success: true}. The test is done when all 450 have arrived (the
// report called done() at the last index, which can finish before the others
// answer or report success while a later assertion fails).
//
// FRESH DATABASE REQUIRED: the usernames are fixed, so a second run against
// the same database gets 'Username already taken' and fails. Creating a fresh
// database for each run is the caller's job (run-mocha.sh does it for the Go
// server; see README.md for the Node reference server).
//
// Only the target comes from the environment: TARGET_URL, default
// http://localhost (nginx in front of the primary and backup, as in the
// report's section 3.1).
import { connect } from 'socket.io-client';
import { assert } from 'chai';

const url = process.env.TARGET_URL || 'http://localhost';

describe('Chat Scalability', function () {
  this.timeout(30000);

  let clients = [];

  after(function () {
    for (const client of clients) client.disconnect();
    clients = [];
  });

  it('should handle 450 users', function (done) {
    const users = Array.from({ length: 450 }, (_, i) => `user${i}`);
    clients = users.map(() => connect(url));

    let acked = 0;
    let finished = false;
    const finish = (err) => {
      if (finished) return;
      finished = true;
      done(err);
    };

    clients.forEach((client, index) => {
      client.emit('register', { username: users[index], password: 'password' }, (response) => {
        try {
          assert.isTrue(
            response && response.success,
            `Registration failed for user: ${users[index]}` +
              (response && response.message ? ` (${response.message})` : ''),
          );
        } catch (err) {
          finish(err);
          return;
        }
        acked++;
        if (acked === users.length) finish();
      });
    });
  });
});
