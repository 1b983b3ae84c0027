// Settings, mute and block in the browser: mute a conversation (kept across a reload), block the
// other person from the conversation and see their send refused, unblock from Settings; list the
// sessions and log another one out; change the password (a wrong one is said, the right one logs
// the other sessions out); a friend request shows up live.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, newPerson, signUp, logIn, send, waitForText, uname, api, openDirect, openChat, PASSWORD,
} from './lib/harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launchBrowser(); });
after(async () => { await browser?.close(); await server?.close(); });

test('mute, block and unblock; sessions; password change; a live friend request', async () => {
  const A = await newPerson(browser, server);
  const B = await newPerson(browser, server);
  const a = uname('sally'), b = uname('tom');
  const sa = await signUp(A.page, a, 'Sally');
  const sb = await signUp(B.page, b, 'Tom');
  await openDirect(B.page, a);
  await send(B.page, 'hello sally');
  await waitForText(B.page, 'hello sally');
  await openChat(A.page, 'Tom');
  await waitForText(A.page, 'hello sally');

  // mute, kept across a reload (the server says so)
  const mute = A.page.locator('#mute');
  assert.equal(await mute.getAttribute('aria-pressed'), 'false');
  await mute.click();
  await A.page.locator('#mute[aria-pressed="true"]', { hasText: 'Unmute' }).waitFor();
  await A.page.reload();
  await openChat(A.page, 'Tom');
  await A.page.locator('#mute[aria-pressed="true"]').waitFor();
  const list = await api(server, 'GET', '/v1/channels', { token: sa.token });
  assert.equal(list.data.channels[0].muted, true);

  // block from the conversation: Tom's next send is refused, nothing reaches Sally
  await A.page.locator('#block', { hasText: 'Block' }).click();
  await A.page.locator('#block[aria-pressed="true"]', { hasText: 'Unblock' }).waitFor();
  const blocked = await api(server, 'POST', `/v1/users/${sa.user.id}/messages`, { token: sb.token, body: { text: 'still there?', cmid: 'w1' } });
  assert.equal(blocked.status, 403);
  // unblock from Settings
  await A.page.getByRole('button', { name: 'Settings' }).click();
  await A.page.locator('#blocked-list li', { hasText: 'Tom' }).waitFor();
  await A.page.getByRole('button', { name: 'Unblock Tom' }).click();
  await A.page.locator('#blocked-empty').waitFor({ state: 'visible' });
  assert.equal((await api(server, 'GET', '/v1/blocks', { token: sa.token })).data.blocked.length, 0);

  // sessions: a second one (another browser), logged out from here
  const A2 = await newPerson(browser, server);
  await logIn(A2.page, a);
  await A.page.locator('[data-close]').last().click();
  await A.page.getByRole('button', { name: 'Settings' }).click();
  await A.page.locator('#session-list li').nth(1).waitFor();
  assert.equal(await A.page.locator('#session-list li', { hasText: 'this one' }).count(), 1);
  await A.page.locator('#session-list li button', { hasText: 'Log out' }).first().click();
  await A.page.locator('#session-list li').nth(1).waitFor({ state: 'detached' });
  await A2.page.locator('#auth').waitFor({ state: 'visible', timeout: 15000 });   // that page is sent back to log in

  // password: a wrong current one is said; the right one changes it
  await A.page.getByLabel('Current password').fill('not my password');
  await A.page.getByLabel('New password').fill('a brand new one');
  await A.page.getByRole('button', { name: 'Change password' }).click();
  await A.page.locator('#pw-status', { hasText: 'not your current password' }).waitFor();
  await A.page.getByLabel('Current password').fill(PASSWORD);
  await A.page.getByLabel('New password').fill('a brand new one');
  await A.page.getByRole('button', { name: 'Change password' }).click();
  await A.page.locator('#pw-status', { hasText: 'Password changed' }).waitFor();
  assert.equal((await api(server, 'POST', '/v1/sessions', { body: { username: a, password: 'a brand new one' } })).status, 201);
  assert.equal((await api(server, 'POST', '/v1/sessions', { body: { username: a, password: PASSWORD } })).status, 401);
  await A.page.locator('[data-close]').last().click();

  // a friend request from Tom shows up on Sally's page without a reload
  await A.page.getByRole('tab', { name: /Friends/ }).click();
  assert.equal((await api(server, 'PUT', `/v1/friends/${sa.user.id}`, { token: sb.token })).status, 200);
  await A.page.getByRole('button', { name: `Accept ${b}` }).waitFor();

  for (const p of [A, A2, B]) await p.context.close();
});

test('a message that mentions me stands out, and its conversation shows "@" in the list', async () => {
  const A = await newPerson(browser, server);
  const B = await newPerson(browser, server);
  const a = uname('mia'), b = uname('ned');
  await signUp(A.page, a, 'Mia');
  const sb = await signUp(B.page, b, 'Ned');
  await openDirect(B.page, a);
  await send(B.page, 'first');
  await waitForText(B.page, 'first');
  // A is on the list: a mention arrives
  await A.page.locator('#chat-list .chat-item').first().waitFor();
  const r = await api(server, 'POST', `/v1/channels/${(await api(server, 'GET', '/v1/channels', { token: sb.token })).data.channels[0].channel.id}/messages`,
    { token: sb.token, body: { text: `@${a} look at this` } });
  assert.equal(r.status, 201);
  await A.page.locator('#chat-list .badge.mention').waitFor();
  await openChat(A.page, 'Ned');
  await A.page.locator('#msgs li.msg.mentioned', { hasText: 'look at this' }).waitFor();
  assert.equal(await A.page.locator('#msgs li.msg.mentioned').count(), 1);
  await A.page.reload();
  await A.page.locator('#chat-list .chat-item').first().waitFor();
  assert.equal(await A.page.locator('#chat-list .badge.mention').count(), 0, 'read: no badge after the reload');
  for (const p of [A, B]) await p.context.close();
});
