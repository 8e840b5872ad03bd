// helpers.js: shared pieces of the browser tests: launching Debian's
// Chromium through playwright-core, driving the sign-in card, reading what
// the page shows, and measuring screenshots.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');
const { PNG } = require('pngjs');

const BASE_URL = process.env.BASE_URL || 'http://127.0.0.1:3101';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OUT_DIR = path.join(__dirname, '..', 'out');
const PASSWORD = 'correct horse 42';

// launch starts a headless Chromium; playwright gives it a fresh, temporary
// profile directory and removes it on close().
async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

// uniqueName returns a short username that no earlier run has used.
function uniqueName(prefix) {
  return prefix + crypto.randomBytes(4).toString('hex');
}

// openPage opens the chat page in a new browser context and records what a
// user should never see: dialogs, uncaught errors and refused resources.
async function openPage(browser, options = {}, url = BASE_URL + '/') {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  const problems = { dialogs: [], errors: [] };
  page.on('dialog', (d) => { problems.dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  page.on('pageerror', (e) => problems.errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') problems.errors.push(m.text()); });
  await page.goto(url);
  await page.locator('#auth').waitFor({ state: 'visible' });
  return { context, page, problems };
}

async function fillCard(page, username, password) {
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.press('#password', 'Enter');
}

async function showRegister(page) {
  if ((await page.getAttribute('#auth', 'data-mode')) !== 'register') await page.click('#auth-toggle');
}

async function showLogin(page) {
  if ((await page.getAttribute('#auth', 'data-mode')) !== 'login') await page.click('#auth-toggle');
}

// register creates an account through the card; the page logs in with it.
async function register(page, username, password = PASSWORD) {
  await showRegister(page);
  await fillCard(page, username, password);
  await page.locator('#chat').waitFor({ state: 'visible' });
}

async function login(page, username, password = PASSWORD) {
  await showLogin(page);
  await fillCard(page, username, password);
  await page.locator('#chat').waitFor({ state: 'visible' });
}

// send types a message in the composer and presses Enter.
async function send(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

// onlineUser finds a name in the online list.
function onlineUser(page, name) {
  return page.locator('#users .name').getByText(name, { exact: true });
}

// messageFrom finds the message with this exact text (and author, if given).
function message(page, text, author) {
  let loc = page.locator('#messages .msg').filter({ has: page.locator('.text').getByText(text, { exact: true }) });
  if (author) loc = loc.filter({ has: page.locator('.author').getByText(author, { exact: true }) });
  return loc;
}

// shownMessages lists [author, text] pairs as the page shows them, in order.
function shownMessages(page) {
  return page.$$eval('#messages .msg', (items) => items.map((li) =>
    [li.querySelector('.author').textContent, li.querySelector('.text').textContent]));
}

// imageStats decodes a PNG and reports how much it varies: the standard
// deviation of luminance and the share of pixels in the most common colour.
function imageStats(buffer) {
  const png = PNG.sync.read(buffer);
  const counts = new Map();
  let sum = 0, sumSq = 0;
  const n = png.width * png.height;
  for (let i = 0; i < png.data.length; i += 4) {
    const r = png.data[i], g = png.data[i + 1], b = png.data[i + 2];
    const y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    sum += y; sumSq += y * y;
    const key = (r << 16) | (g << 8) | b;
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  const mean = sum / n;
  return {
    width: png.width,
    height: png.height,
    stddev: Math.sqrt(Math.max(0, sumSq / n - mean * mean)),
    dominant: Math.max(...counts.values()) / n,
    colours: counts.size,
  };
}

// looksStyled is the bar a screenshot must pass to count as a real render:
// no single colour covers most of it, as the page's background does when the
// stylesheet is missing (over 95% there; under 70% on every styled screen).
function looksStyled(stats) {
  return stats.dominant < 0.85 && stats.stddev > 8;
}

async function screenshot(page, name) {
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const file = path.join(OUT_DIR, name + '.png');
  const buffer = await page.screenshot({ path: file });
  return { file, buffer };
}

module.exports = {
  BASE_URL, PASSWORD, launch, uniqueName, openPage, fillCard, showRegister, showLogin,
  register, login, send, onlineUser, message, shownMessages, imageStats, looksStyled, screenshot,
};
