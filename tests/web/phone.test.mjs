// The phone's size (390x844) and the keyboard: one pane at a time with a back button, nothing
// wider than the screen; signing up, starting a chat and sending with the keyboard alone.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, newPerson, signUp, openDirect, send, texts, waitForText, uname, api,
  noHorizontalOverflow, PHONE,
} from './lib/harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launchBrowser(); });
after(async () => { await browser?.close(); await server?.close(); });

test('phone viewport: list and conversation one at a time, back button, no horizontal scrolling', async () => {
  const P = await newPerson(browser, server, { viewport: PHONE, mobile: true });
  const D = await newPerson(browser, server);
  const p = uname('phil'), d = uname('desk');
  assert.ok(await noHorizontalOverflow(P.page), 'login form fits');
  await signUp(P.page, p, 'Phil');
  await signUp(D.page, d, 'Desk');
  const sidebar = P.page.locator('.sidebar');
  const chat = P.page.locator('#chat');
  assert.ok(await sidebar.isVisible());
  assert.ok(!(await chat.isVisible()), 'no conversation pane before one is open');

  await openDirect(P.page, d);
  assert.ok(!(await sidebar.isVisible()), 'the conversation takes the whole screen');
  const back = P.page.getByRole('button', { name: 'Back to conversations' });
  assert.ok(await back.isVisible());
  await send(P.page, 'sent from a phone, with a long unbroken word: ' + 'w'.repeat(500));
  await P.page.locator('#msgs li.msg[data-seq]').first().waitFor();
  await D.page.locator('#chat-list .chat-item', { hasText: 'Phil' }).click();
  await send(D.page, 'a reply to the phone');
  await waitForText(P.page, 'a reply to the phone');
  assert.ok(await noHorizontalOverflow(P.page), 'conversation fits');
  const composer = await P.page.locator('#composer').boundingBox();
  assert.ok(composer.y + composer.height <= PHONE.height + 1 && composer.width <= PHONE.width + 1, 'composer on screen');

  await back.click();
  assert.ok(await sidebar.isVisible());
  assert.ok(!(await chat.isVisible()));
  assert.ok(await noHorizontalOverflow(P.page), 'list fits');
  // the browser's back button works too
  await P.page.locator('#chat-list .chat-item', { hasText: 'Desk' }).click();
  await waitForText(P.page, 'a reply to the phone');
  await P.page.goBack();
  await sidebar.waitFor({ state: 'visible' });

  // dialogs fit
  await P.page.getByRole('button', { name: 'New group…' }).click();
  const dlg = await P.page.getByRole('dialog').boundingBox();
  assert.ok(dlg.x >= 0 && dlg.x + dlg.width <= PHONE.width, 'dialog inside the screen');
  await P.page.keyboard.press('Escape');
  assert.deepEqual([...P.page.errors, ...D.page.errors], []);
  await P.context.close();
  await D.context.close();
});

test('keyboard only: sign up, start a chat by username, send with Enter, new lines with Shift+Enter', async () => {
  const K = await newPerson(browser, server);
  const page = K.page;
  const k = uname('kay'), other = uname('lee');
  await api(server, 'POST', '/v1/users', { body: { username: other, password: 'password123', display_name: 'Lee' } });
  const kb = page.keyboard;
  // the username field has focus; Shift+Tab reaches the tabs, arrows switch them
  await page.locator('#auth-username:focus').waitFor();
  await kb.press('Shift+Tab');
  await kb.press('Shift+Tab');
  await kb.press('ArrowRight');
  await page.locator('#tab-signup[aria-selected="true"]').waitFor();
  await page.getByLabel('Username', { exact: true }).focus();
  await kb.type(k);
  await kb.press('Tab');
  await kb.type('Kay');
  await kb.press('Tab');
  await kb.type('correct horse 1');
  await kb.press('Enter');
  await page.locator('#conn[data-state="online"]').waitFor();
  // every control in the app has an accessible name
  const unnamed = await page.evaluate(() => [...document.querySelectorAll('button, input, textarea')]
    .filter((e) => e.offsetParent !== null || e.closest('dialog'))
    .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
    .map((e) => e.outerHTML));
  assert.deepEqual(unnamed, []);
  // to the "start a chat" field by Tab
  for (let i = 0; i < 10; i++) {
    if (await page.evaluate(() => document.activeElement.id === 'new-chat-user')) break;
    await kb.press('Tab');
  }
  assert.equal(await page.evaluate(() => document.activeElement.id), 'new-chat-user');
  await kb.type(other);
  await kb.press('Enter');
  await page.locator('#input:focus').waitFor();
  await kb.type('typed with the keyboard');
  await kb.press('Enter');
  await page.locator('#msgs li.msg[data-seq]', { hasText: 'typed with the keyboard' }).waitFor();
  // Shift+Enter is a new line
  await kb.type('line one');
  await kb.press('Shift+Enter');
  await kb.type('line two');
  await kb.press('Enter');
  await waitForText(page, 'line one\nline two');
  assert.deepEqual(await texts(page), ['typed with the keyboard', 'line one\nline two']);
  await K.context.close();
});

test('installable: the page links a manifest with PNG icons of 192 and 512 (any and maskable) that are what they say', async () => {
  const A = await newPerson(browser, server, { viewport: PHONE, mobile: true });
  const href = await A.page.locator('link[rel="manifest"]').getAttribute('href');
  const r = await fetch(new URL(href, server.url));
  assert.equal(r.status, 200);
  const m = await r.json();
  assert.equal(m.display, 'standalone');
  assert.ok(m.start_url && m.name && m.short_name && m.theme_color && m.background_color);
  for (const [size, purpose] of [[192, 'any'], [512, 'any'], [192, 'maskable'], [512, 'maskable']]) {
    const icon = m.icons.find((i) => i.type === 'image/png' && i.sizes === `${size}x${size}` && i.purpose === purpose);
    assert.ok(icon, `a ${size}px ${purpose} PNG icon: ${JSON.stringify(m.icons)}`);
    const res = await fetch(new URL(icon.src, server.url));
    assert.equal(res.headers.get('content-type'), 'image/png', icon.src);
    const png = Buffer.from(await res.arrayBuffer());
    assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG', `${icon.src} is a PNG`);
    assert.deepEqual([png.readUInt32BE(16), png.readUInt32BE(20)], [size, size], `${icon.src} is ${size}x${size}`);
  }
  assert.equal(await A.page.locator('link[rel="apple-touch-icon"]').getAttribute('href'), '/icon-192.png');
  await A.context.close();
});
