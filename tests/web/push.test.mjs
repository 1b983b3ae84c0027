// Web Push opt-in in the browser: the "Notifications" switch asks for a push subscription from
// the service worker /sw.js (registered at every start, for the app shell offline: offline.test.mjs).
// Headless Chromium has no push service, so the subscription fails: the page must say so in words
// and the chat must keep working.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, newPerson, signUp, openDirect, send, waitForText, uname, api, PASSWORD,
} from './lib/harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launchBrowser(); });
after(async () => { await browser?.close(); await server?.close(); });

test('notifications: the switch subscribes through /sw.js; a failed subscribe is an error line, chat goes on', async () => {
  // the service worker is served as JavaScript, uncached
  const r = await fetch(`${server.url}/sw.js`);
  const body = await r.text();
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') || '', /javascript/);
  assert.match(body, /addEventListener\('push'/);

  const b = uname('pia');
  assert.equal((await api(server, 'POST', '/v1/users', { body: { username: b, password: PASSWORD } })).status, 201);
  const A = await newPerson(browser, server, { permissions: ['notifications'] });
  const { page } = A;
  await signUp(page, uname('noa'), 'Noa');
  // the worker is there from the start (the app shell), but nothing is subscribed before the switch
  await page.waitForFunction(() => navigator.serviceWorker.getRegistration('/').then((x) => !!x), null, { timeout: 10000 });
  assert.equal(await page.evaluate(async () => {
    const reg = await navigator.serviceWorker.getRegistration('/');
    return !!(await reg.pushManager.getSubscription());
  }), false);

  // labelled, enabled (this browser has service workers and PushManager), reachable with Tab
  const toggle = page.getByRole('switch', { name: 'Notifications' });
  await toggle.waitFor();
  assert.equal(await toggle.isEnabled(), true);
  assert.equal(await toggle.isChecked(), false);
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  let reached = false;
  for (let i = 0; i < 8 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement && document.activeElement.id === 'push-toggle');
  }
  assert.ok(reached, 'the Notifications switch is reachable with the Tab key');
  await page.keyboard.press('Space');

  // the worker is registered for the whole site...
  await page.waitForFunction(() => navigator.serviceWorker.getRegistration('/').then((x) => !!x && x.scope === `${location.origin}/`),
    null, { timeout: 10000 });
  // ...and with no push service the subscription fails: a sentence, the switch back off
  const err = page.locator('#push-error');
  await err.filter({ hasText: /push|notification/i }).waitFor({ timeout: 15000 });
  await page.waitForFunction(() => !document.getElementById('push-toggle').checked && !document.getElementById('push-toggle').hasAttribute('aria-busy'));
  assert.equal(await page.evaluate(() => Object.keys(localStorage).some((k) => k.startsWith('iyagi.push.'))), false);

  // the chat still works
  await openDirect(page, b);
  await send(page, 'still here after push failed');
  await waitForText(page, 'still here after push failed');
  await page.locator('#conn[data-state="online"]').waitFor();
  assert.deepEqual(page.errors, []);
  await A.context.close();
});
