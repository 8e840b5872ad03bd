// rooms-screens.test.js: screenshots of the conversation features (room
// list with unread counts, a direct room, the typing line, an edit in
// progress, a deleted message, search results), wide and light, wide and
// dark, and at phone width in both schemes; each must be a real render and
// the phone width must not scroll sideways. Files go to out/ (and to
// PAGE_SHOTS too when it is set).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./helpers');

const T = { timeout: 120000 };
const pages = h.sharedBrowser();
const { roomButton } = h;

async function shot(page, name) {
  const s = await h.screenshot(page, name);
  const stats = h.imageStats(s.buffer);
  assert.ok(h.looksStyled(stats), name + ' looks blank or unstyled: ' + JSON.stringify(stats));
  if (process.env.PAGE_SHOTS) {
    fs.mkdirSync(process.env.PAGE_SHOTS, { recursive: true });
    fs.copyFileSync(s.file, path.join(process.env.PAGE_SHOTS, name + '.png'));
  }
}

test('the conversation screens render styled: light, dark, phone', T, async () => {
  const me = h.uniqueName('dana');
  const friend = h.uniqueName('eli');
  const A = await pages.open();
  const D = await pages.open({ colorScheme: 'dark' });
  try {
    await h.register(A.page, me);
    await h.register(D.page, friend);
    const room = h.uniqueName('deploys-');
    await A.page.fill('#room-new', room);
    await A.page.press('#room-new', 'Enter');
    await roomButton(A.page, '#' + room).waitFor();
    await roomButton(A.page, '#general').click();
    await h.send(A.page, 'Morning! Is the deploy still on for today?');
    await h.send(D.page, 'Yes, after lunch. I will post in here when it starts.');
    await h.send(A.page, 'Great, thanks! Typo incoming: teh end');
    await h.confirmed(A.page, 'Great, thanks! Typo incoming: teh end', me).waitFor();
    const fix = h.confirmed(A.page, 'Great, thanks! Typo incoming: teh end', me);
    await fix.getByRole('button', { name: 'Edit message' }).click();
    await A.page.getByRole('textbox', { name: 'Edit message' }).fill('Great, thanks! Typo incoming: the end');
    await A.page.getByRole('textbox', { name: 'Edit message' }).press('Enter');
    await h.confirmed(A.page, 'Great, thanks! Typo incoming: the end', me).locator('.edited').waitFor();
    await h.send(A.page, 'oops, wrong window');
    await h.confirmed(A.page, 'oops, wrong window', me).getByRole('button', { name: 'Delete message' }).click();
    await A.page.locator('#messages .deleted-text').first().waitFor();
    // Eli joins the room after a reload and gets a direct message.
    await D.page.reload();
    await D.page.getByRole('button', { name: 'Join #' + room }).click();
    await roomButton(D.page, '#' + room).and(D.page.locator('[aria-current="true"]')).waitFor();
    await roomButton(D.page, '#general').click();
    await A.page.getByRole('button', { name: 'Message ' + friend }).click();
    await h.send(A.page, 'Can you check the staging logs when you have a minute?');
    await roomButton(A.page, '#' + room).click();
    await h.send(A.page, 'Deploy starts at 14:00.');
    await roomButton(D.page, '#' + room).locator('.unread').waitFor();
    await roomButton(D.page, '@' + me).locator('.unread').waitFor();
    await roomButton(A.page, '#general').click();
    await D.page.locator('#text').pressSequentially('Sounds', { delay: 30 });
    await D.page.waitForTimeout(1200);
    await D.page.locator('#text').pressSequentially(' good', { delay: 60 });
    await A.page.locator('#typing').getByText(friend + ' is typing…').waitFor();
    await A.page.getByRole('button', { name: 'Message ' + friend }).hover();
    await shot(A.page, 'rooms-light');
    await shot(D.page, 'rooms-dark');

    // Edit form and search results, dark.
    await D.page.fill('#text', '');
    await D.page.fill('#search', 'deploy');
    await D.page.press('#search', 'Enter');
    await D.page.locator('#search-results .result').first().waitFor();
    await h.send(D.page, 'Draft that I will edit');
    await h.confirmed(D.page, 'Draft that I will edit', friend).getByRole('button', { name: 'Edit message' }).click();
    await shot(D.page, 'rooms-dark-search-edit');
    await D.page.getByRole('button', { name: 'Cancel edit' }).click();
    await A.page.fill('#search', 'deploy');
    await A.page.press('#search', 'Enter');
    await A.page.locator('#search-results .result').first().waitFor();
    await shot(A.page, 'rooms-light-search');

    // Something unread for Dana's phone.
    await roomButton(D.page, '#' + room).click();
    await h.send(D.page, 'Deploy done, all green.');
    await roomButton(A.page, '#' + room).locator('.unread').waitFor();

    // Phone width, light and dark: the folded sidebar and a room.
    for (const scheme of ['light', 'dark']) {
      const P = await pages.open({ viewport: { width: 390, height: 844 }, colorScheme: scheme, isMobile: true, hasTouch: true });
      try {
        await h.login(P.page, me);
        await roomButton(P.page, '#general').waitFor({ state: 'attached' });
        await h.confirmed(P.page, 'Great, thanks! Typo incoming: the end', me).waitFor();
        await P.page.locator('#toggle-unread').getByText('1').waitFor();
        assert.equal(await P.page.textContent('#toggle-label'), 'Rooms');
        await shot(P.page, `rooms-phone-${scheme}`);
        // A tap on one's own message shows its tools (no hover on phones).
        const mine = h.confirmed(P.page, 'Great, thanks! Typo incoming: the end', me);
        assert.equal(await mine.getByRole('button', { name: 'Edit message' }).isVisible(), false);
        await mine.locator('.bubble').tap();
        await mine.getByRole('button', { name: 'Edit message' }).waitFor();
        await shot(P.page, `rooms-phone-${scheme}-tools`);
        await P.page.click('#users-toggle');
        await roomButton(P.page, '#' + room).waitFor();
        await shot(P.page, `rooms-phone-${scheme}-sidebar`);
        await roomButton(P.page, '@' + friend).click();
        assert.equal(await P.page.isVisible('#sidebar'), false, 'choosing a room folds the list away');
        await h.message(P.page, 'Can you check the staging logs when you have a minute?', me, '#chat .messages:not([hidden]) .msg').waitFor();
        await shot(P.page, `rooms-phone-${scheme}-direct`);
        assert.ok(await P.page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), 'no sideways scrolling');
        assert.deepEqual(P.problems, { dialogs: [], errors: [] });
      } finally {
        await P.context.close();
      }
    }
    for (const o of [A, D]) assert.deepEqual(o.problems, { dialogs: [], errors: [] });
  } finally {
    await A.context.close();
    await D.context.close();
  }
});
