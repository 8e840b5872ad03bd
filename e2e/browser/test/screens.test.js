// screens.test.js: screenshots of every screen into out/, and a check that
// they are real renders: a page whose stylesheet failed is caught.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = { timeout: 45000 };
let browser;

before(async () => { browser = await h.launch(); });
after(async () => { if (browser) await browser.close(); });

function assertStyled(name, buffer) {
  const stats = h.imageStats(buffer);
  assert.ok(h.looksStyled(stats), name + ' looks blank or unstyled: ' + JSON.stringify(stats));
  return stats;
}

test('the sign-in screens render styled', T, async () => {
  const { context, page, problems } = await h.openPage(browser);
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
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
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
  const A = await h.openPage(browser);
  const B = await h.openPage(browser, { viewport: { width: 375, height: 740 }, colorScheme: 'dark', isMobile: true, hasTouch: true });
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
