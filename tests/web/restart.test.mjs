// Losing the connection and getting it back: the server restarts in the middle of a
// conversation; messages typed while it is down wait as "sending" and go out once it is back
// (same cmid: never twice); whatever was sent meanwhile by others is caught up; nothing is
// missing or shown twice.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, newPerson, signUp, openDirect, openChat, send, texts, waitForText, uname, api, sleep,
} from './lib/harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launchBrowser(); });
after(async () => { await browser?.close(); await server?.close(); });

test('a server restart in the middle of a conversation: nothing lost, nothing doubled', async () => {
  const A = await newPerson(browser, server);
  const B = await newPerson(browser, server);
  const a = uname('rina'), b = uname('sam');
  const sa = await signUp(A.page, a, 'Rina');
  await signUp(B.page, b, 'Sam');
  await openDirect(A.page, b);
  await send(A.page, 'before 1');
  await openChat(B.page, 'Rina');
  await waitForText(B.page, 'before 1');
  await send(B.page, 'before 2');
  await waitForText(A.page, 'before 2');

  // down: both pages notice, messages typed now wait as "sending"
  await server.stop();
  await A.page.locator('#conn[data-state="offline"]').waitFor();
  await B.page.locator('#conn[data-state="offline"]').waitFor();
  await send(A.page, 'while down 1');
  await send(A.page, 'while down 2');
  await send(B.page, 'while down 3');
  assert.equal(await A.page.locator('#msgs li[data-state="sending"]').count(), 2);
  assert.equal(await B.page.locator('#msgs li[data-state="sending"]').count(), 1);

  // back, on the same port with the same data; someone (Sam's other device, over HTTP) sends
  // before the pages are back, so they must catch it up
  await server.up();
  const lb = (await api(server, 'POST', '/v1/sessions', { body: { username: b, password: 'correct horse 1' } })).data;
  const r = await api(server, 'POST', `/v1/users/${sa.user.id}/messages`, {
    token: lb.token, body: { text: 'from another device', cmid: 'other-dev-1' } });
  assert.equal(r.status, 201);

  for (const p of [A.page, B.page]) {
    await p.locator('#conn[data-state="online"]').waitFor({ timeout: 20000 });
    for (const t of ['while down 1', 'while down 2', 'while down 3', 'from another device']) await waitForText(p, t, 15000);
    await p.locator('#msgs li[data-state="sending"]').first().waitFor({ state: 'detached', timeout: 15000 });
  }
  await send(A.page, 'after');
  await waitForText(B.page, 'after');
  await sleep(300);
  const ta = await texts(A.page);
  const tb = await texts(B.page);
  assert.deepEqual(ta, tb, 'both sides show the same messages in the same order');
  assert.equal(ta.length, 7, `seven messages, each once: ${JSON.stringify(ta)}`);
  assert.equal(new Set(ta).size, 7);
  assert.equal(ta[0], 'before 1');
  assert.equal(ta[1], 'before 2');
  assert.equal(ta[6], 'after');

  // the server agrees: seven stored messages, each cmid once
  const channel = await A.page.evaluate(() => location.hash.slice(4));
  const h = (await api(server, 'GET', `/v1/channels/${channel}/messages?after_seq=0&limit=200`, { token: lb.token })).data.messages;
  assert.deepEqual(h.map((m) => m.text), ta);

  // a reload shows the same
  await B.page.reload();
  await B.page.locator('#conn[data-state="online"]').waitFor();
  await waitForText(B.page, 'after');
  assert.deepEqual(await texts(B.page), ta);
  assert.deepEqual([...A.page.errors, ...B.page.errors], []);
  await A.context.close();
  await B.context.close();
});

test('a message typed while offline survives a reload and is sent once when back', async () => {
  const A = await newPerson(browser, server);
  const a = uname('tess'), b = uname('uma');
  await signUp(A.page, a);
  await api(server, 'POST', '/v1/users', { body: { username: b, password: 'password123' } });
  await openDirect(A.page, b);
  await send(A.page, 'first');
  await A.page.locator('#msgs li.msg[data-seq]').first().waitFor();
  await server.stop();
  await A.page.locator('#conn[data-state="offline"]').waitFor();
  await send(A.page, 'typed offline');
  await A.page.locator('#msgs li[data-state="sending"]').waitFor();
  await server.up();
  await A.page.reload();
  await A.page.locator('#conn[data-state="online"]').waitFor({ timeout: 20000 });
  await waitForText(A.page, 'typed offline');
  await A.page.locator('#msgs li[data-state="sending"]').first().waitFor({ state: 'detached' });
  assert.deepEqual(await texts(A.page), ['first', 'typed offline']);
  await A.context.close();
});
