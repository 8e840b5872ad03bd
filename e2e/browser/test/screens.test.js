// screens.test.js: screenshots of every screen into out/, and a check that
// they are real renders: a page whose stylesheet failed is caught.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = { timeout: 45000 };
const pages = h.sharedBrowser();

function assertStyled(name, buffer) {
  const stats = h.imageStats(buffer);
  assert.ok(h.looksStyled(stats), name + ' looks blank or unstyled: ' + JSON.stringify(stats));
  return stats;
}

test('the sign-in screens render styled', T, async () => {
  const { context, page, problems } = await pages.open();
  try {
    const loginShot = await h.screenshot(page, 'login');
    assertStyled('login', loginShot.buffer);

    await h.showRegister(page);
    await page.locator('#auth-title').getByText('Create your account').waitFor();
    const regShot = await h.screenshot(page, 'register');
    assertStyled('register', regShot.buffer);

    // What an error looks like on the card.
    await h.showLogin(page);
    await h.fillCard(page, h.uniqueName('nobody'), 'wrong');
    await page.locator('#auth-error').getByText('Invalid username or password').waitFor();
    await h.screenshot(page, 'login-error');
    assert.deepEqual(problems, { dialogs: [], errors: [] });
  } finally {
    await context.close();
  }
});

test('the check catches a page whose stylesheet did not load', T, async () => {
  const context = await pages.browser.newContext({ viewport: { width: 1280, height: 800 } });
  try {
    const page = await context.newPage();
    await page.route('**/style.css', (route) => route.abort());
    await page.goto(h.BASE_URL + '/');
    await page.locator('#auth').waitFor();
    const stats = h.imageStats(await page.screenshot());
    assert.equal(h.looksStyled(stats), false, 'an unstyled page must fail the check: ' + JSON.stringify(stats));
  } finally {
    await context.close();
  }
});

test('the chat screen renders styled, wide, narrow and dark', T, async () => {
  const me = h.uniqueName('dana');
  const friend = h.uniqueName('eli');
  const A = await pages.open();
  const B = await pages.open({ viewport: { width: 375, height: 740 }, colorScheme: 'dark', isMobile: true, hasTouch: true });
  try {
    await h.register(A.page, me);
    await h.register(B.page, friend);
    await h.send(A.page, 'Morning! Is the deploy still on for today?');
    await h.message(B.page, 'Morning! Is the deploy still on for today?', me).waitFor();
    await h.send(B.page, 'Yes, after lunch. I will post in here when it starts.');
    await h.send(A.page, 'Great, thanks!');
    await h.message(A.page, 'Great, thanks!', me).waitFor();
    await h.message(B.page, 'Great, thanks!', me).waitFor();
    await h.onlineUser(A.page, friend).waitFor();

    const wide = await h.screenshot(A.page, 'chat');
    assertStyled('chat', wide.buffer);
    const phone = await h.screenshot(B.page, 'chat-phone-dark');
    assertStyled('chat-phone-dark', phone.buffer);

    // The narrow layout folds the online list behind a button.
    assert.equal(await B.page.isVisible('#sidebar'), false);
    await B.page.click('#users-toggle');
    await h.onlineUser(B.page, me).waitFor();
    await h.screenshot(B.page, 'chat-phone-users');
    const overflow = await B.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, 'no sideways scrolling at phone width');

    // A refused message in the composer area, at phone width.
    await B.page.click('#users-toggle');
    await B.page.$eval('#text', (t) => t.removeAttribute('maxlength'));
    await B.page.fill('#text', 'This one is far too long. '.repeat(80));
    await B.page.press('#text', 'Enter');
    await h.failed(B.page).waitFor();
    const failedShot = await h.screenshot(B.page, 'chat-phone-failed');
    assertStyled('chat-phone-failed', failedShot.buffer);
    const box = await h.failed(B.page).getByRole('button', { name: 'Discard' }).boundingBox();
    assert.ok(box && box.x + box.width <= 375, 'the Discard button is on screen: ' + JSON.stringify(box));
    assert.ok(await B.page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), 'no sideways scrolling');

    for (const o of [A, B]) assert.deepEqual(o.problems, { dialogs: [], errors: [] });
  } finally {
    await A.context.close();
    await B.context.close();
  }
});

test('at phone width the signed-in name stays on screen, next to the other controls', T, async () => {
  const long = 'someone-with-a-rather-long-name-' + h.uniqueName('');
  for (const [width, name, shot] of [[375, h.uniqueName('dana'), 'chat-phone-name'], [320, long, 'chat-phone-long-name']]) {
    const o = await pages.open({ viewport: { width, height: 640 }, isMobile: true, hasTouch: true });
    try {
      const { page } = o;
      await h.register(page, name);
      await page.locator('#chat .status[data-state="connected"]').waitFor();
      const me = page.locator('#me-name');
      assert.equal(await me.isVisible(), true, `the name is shown at ${width} px`);
      assert.equal(await me.textContent(), name);
      const boxes = {};
      for (const sel of ['#me-name', '#logout', '#users-toggle', '#chat .room']) {
        boxes[sel] = await page.locator(sel).boundingBox();
        assert.ok(boxes[sel] && boxes[sel].x >= 0 && boxes[sel].x + boxes[sel].width <= width,
          `${sel} is on screen at ${width} px: ` + JSON.stringify(boxes[sel]));
      }
      const overlap = (a, b) => a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
      const sels = Object.keys(boxes);
      for (let i = 0; i < sels.length; i++) {
        for (let j = i + 1; j < sels.length; j++) {
          assert.ok(!overlap(boxes[sels[i]], boxes[sels[j]]), `${sels[i]} and ${sels[j]} do not overlap at ${width} px`);
        }
      }
      assert.equal(await page.locator('#chat .room-name').evaluate((e) => e.scrollWidth <= e.clientWidth), true,
        `the room's name is not cut or spilling over at ${width} px`);
      assert.equal(await page.locator('#chat .status').evaluate((e) => e.scrollWidth <= e.clientWidth), true,
        `"Connected" is shown whole at ${width} px`);
      assert.ok(boxes['#me-name'].width >= 40, 'room for a few letters at least: ' + boxes['#me-name'].width);
      const cut = await me.evaluate((e) => e.scrollWidth > e.clientWidth);
      if (name === long) {
        assert.equal(cut, true, 'a long name is cut short…');
        assert.equal(await me.getAttribute('title'), name, '…and the whole of it is in the title');
      } else {
        assert.equal(cut, false, `a usual name is shown whole at ${width} px`);
      }
      // Screen readers still hear who this is.
      assert.match(await page.locator('#chat .me').ariaSnapshot(), new RegExp('Signed in as[\\s\\S]*' + name));
      assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), 'no sideways scrolling');
      const s = await h.screenshot(page, shot);
      assertStyled(shot, s.buffer);
      assert.deepEqual(o.problems, { dialogs: [], errors: [] });
    } finally {
      await o.context.close();
    }
  }
});
