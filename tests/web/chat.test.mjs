// 1:1 chat in the browser: two people (two browser contexts) sign up and talk; the session
// survives a reload; markup in messages and names stays text; long messages; history paging;
// two tabs of one account in sync; typing and read receipts where the server has them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, newPerson, signUp, logIn, openDirect, openChat, send, texts, waitForText,
  uname, api, wsFeature, noHorizontalOverflow, watch, sleep,
} from './lib/harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launchBrowser(); });
after(async () => { await browser?.close(); await server?.close(); });

test('two people sign up and chat 1:1; sending becomes sent; the list shows the last message and unread count', async () => {
  const A = await newPerson(browser, server);
  const B = await newPerson(browser, server);
  const a = uname('alice'), b = uname('bob');
  await signUp(A.page, a, 'Alice');
  await signUp(B.page, b, 'Bob');

  await openDirect(A.page, b);
  await assert.doesNotReject(A.page.locator('#chat-title', { hasText: 'Bob' }).waitFor());
  await send(A.page, 'hello bob 👋');
  // at once as "sending" or already "sent", then "sent" once acknowledged
  await A.page.locator('#msgs li.msg.mine', { hasText: 'hello bob' }).first().waitFor();
  await A.page.locator('#msgs li.msg.mine[data-seq]:not([data-state="sending"])', { hasText: 'hello bob' }).waitFor();
  assert.equal(await A.page.locator('#msgs li[data-state="sending"]').count(), 0);

  // Bob sees the new conversation with an unread badge, newest first, then opens it
  const item = B.page.locator('#chat-list .chat-item', { hasText: 'Alice' });
  await item.waitFor();
  await B.page.locator('#chat-list .chat-item .badge.unread', { hasText: '1' }).waitFor();
  assert.match(await item.locator('.ci-last').textContent(), /hello bob/);
  await openChat(B.page, 'Alice');
  await waitForText(B.page, 'hello bob 👋');
  assert.equal(await B.page.locator('#chat-list .badge.unread').count(), 0, 'opening clears the unread badge');

  await send(B.page, '안녕하세요, Alice');
  await waitForText(A.page, '안녕하세요, Alice');
  for (let i = 0; i < 5; i++) await send(A.page, `burst ${i}`);
  await waitForText(B.page, 'burst 4');
  assert.deepEqual(await texts(B.page), ['hello bob 👋', '안녕하세요, Alice', 'burst 0', 'burst 1', 'burst 2', 'burst 3', 'burst 4']);
  await A.page.locator('#msgs li[data-state="sending"]').first().waitFor({ state: 'detached' }).catch(() => {});
  assert.deepEqual(await texts(A.page), await texts(B.page), 'both see the same conversation in the same order');

  // the session survives a reload, and the open conversation with it
  await B.page.reload();
  await B.page.locator('#conn[data-state="online"]').waitFor();
  await waitForText(B.page, 'burst 4');
  assert.equal((await texts(B.page)).length, 7);

  // log out: back to the form; the token no longer works
  const token = await B.page.evaluate(() => JSON.parse(localStorage.getItem('iyagi.session')).token);
  await B.page.getByRole('button', { name: 'Log out' }).click();
  await B.page.locator('#auth').waitFor({ state: 'visible' });
  await B.page.reload();
  await B.page.locator('#auth').waitFor({ state: 'visible' });
  let st = 0;
  for (let i = 0; i < 20 && st !== 401; i++) { st = (await api(server, 'GET', '/v1/me', { token })).status; if (st !== 401) await sleep(100); }
  assert.equal(st, 401, 'logged-out token is dead');
  await logIn(B.page, b);
  await openChat(B.page, 'Alice');
  await waitForText(B.page, 'burst 4');

  assert.deepEqual([...A.page.errors, ...B.page.errors], []);
  await A.context.close();
  await B.context.close();
});

test('markup in messages and names is shown as text, never run', async () => {
  const A = await newPerson(browser, server);
  const B = await newPerson(browser, server);
  const a = uname('mallory'), b = uname('victim');
  const evil = '<img src=x onerror="window.__pwned=1;document.title=\'pwned\'">';
  await signUp(A.page, a, `<b onmouseover=alert(1)>Mal</b>`);
  await signUp(B.page, b);
  await openDirect(A.page, b);
  await send(A.page, evil);
  await send(A.page, '<script>window.__pwned=2</script>');
  await openChat(B.page, '<b onmouseover');
  await waitForText(B.page, evil);
  await waitForText(B.page, '<script>window.__pwned=2</script>');
  for (const p of [A.page, B.page]) {
    assert.equal(await p.evaluate(() => window.__pwned), undefined);
    assert.equal(await p.locator('#msgs img, #chat-list img, #msgs script, #msgs b, #chat-list b').count(), 0, 'no element made from data');
    assert.notEqual(await p.title(), 'pwned');
  }
  assert.equal(await B.page.locator('#msgs li.msg .text').first().textContent(), evil);
  assert.equal(await B.page.locator('#chat-title').textContent(), '<b onmouseover=alert(1)>Mal</b>');
  assert.deepEqual([...A.page.errors, ...B.page.errors], []);
  await A.context.close();
  await B.context.close();
});

test('a 100,000-character message neither freezes the page nor breaks the layout', async () => {
  const A = await newPerson(browser, server);
  const B = await newPerson(browser, server);
  const a = uname('long'), b = uname('reader');
  await signUp(A.page, a);
  await signUp(B.page, b);
  await openDirect(A.page, b);
  const long = 'x'.repeat(60000) + ' ' + '가'.repeat(39999);   // 100,000 code points, one "word" of 60,000
  const t0 = Date.now();
  await send(A.page, long);
  await A.page.locator('#msgs li.msg.mine[data-seq]').first().waitFor();
  await openChat(B.page, a);
  await B.page.locator('#msgs li.msg[data-seq] .bubble').first().waitFor();
  assert.ok(Date.now() - t0 < 10000, 'sent and shown within 10 s');
  for (const p of [A.page, B.page]) {
    // the page still answers at once, and nothing is wider than the window
    const t1 = Date.now();
    await p.evaluate(() => 1);
    assert.ok(Date.now() - t1 < 1000, 'page responsive');
    assert.ok(await noHorizontalOverflow(p), 'no horizontal scrolling');
    const box = await p.locator('#msgs li.msg .bubble').first().boundingBox();
    const log = await p.locator('#log').boundingBox();
    assert.ok(box.x >= log.x - 1 && box.x + box.width <= log.x + log.width + 1, 'bubble inside the conversation');
  }
  // folded, and "Show all" brings the whole text
  await B.page.getByRole('button', { name: /Show all \(100,000 characters\)/ }).click();
  assert.equal((await B.page.locator('#msgs li.msg .text').first().textContent()).length, long.length);
  assert.ok(await noHorizontalOverflow(B.page));
  // one code point too many is refused before it is sent
  await A.page.getByLabel('Message', { exact: true }).fill('y'.repeat(100001));
  await A.page.getByLabel('Message', { exact: true }).press('Enter');
  await A.page.locator('#chat-error', { hasText: 'limit' }).waitFor();
  assert.equal(await A.page.locator('#msgs li.msg').count(), 1);
  await A.context.close();
  await B.context.close();
});

test('scrolling back loads the whole history', async () => {
  const A = await newPerson(browser, server);
  const a = uname('hist'), b = uname('histb');
  const sa = await signUp(A.page, a);
  await api(server, 'POST', '/v1/users', { body: { username: b, password: 'password123' } });
  const lb = (await api(server, 'POST', '/v1/sessions', { body: { username: b, password: 'password123' } })).data;
  const N = 130;
  for (let i = 1; i <= N; i++) {
    const r = await api(server, 'POST', `/v1/users/${sa.user.id}/messages`, { token: lb.token, body: { text: `old message ${i}`, cmid: `h${i}` } });
    assert.equal(r.status, 201);
  }
  await A.page.reload();
  await openChat(A.page, b);
  await waitForText(A.page, `old message ${N}`);
  assert.ok((await texts(A.page)).length < N, 'only the newest page at first');
  for (let i = 0; i < 20; i++) {
    if (await A.page.locator('#log-top', { hasText: 'beginning' }).count()) break;
    await A.page.locator('#log').evaluate((n) => { n.scrollTop = 0; n.dispatchEvent(new Event('scroll')); });
    await sleep(150);
  }
  await waitForText(A.page, 'old message 1');
  const all = await texts(A.page);
  assert.deepEqual(all, Array.from({ length: N }, (_, i) => `old message ${i + 1}`));
  await A.context.close();
});

test('two tabs of the same account stay in sync', async () => {
  const A = await newPerson(browser, server);
  const B = await newPerson(browser, server);
  const a = uname('twotab'), b = uname('peer');
  await signUp(A.page, a);
  await signUp(B.page, b);
  const tab2 = await A.context.newPage();
  watch(tab2);
  await tab2.goto(server.url + '/');
  await tab2.locator('#conn[data-state="online"]').waitFor();
  await openDirect(A.page, b);
  await send(A.page, 'from tab one');
  await openChat(tab2, b);
  await waitForText(tab2, 'from tab one');
  await send(tab2, 'from tab two');
  await waitForText(A.page, 'from tab two');
  await openChat(B.page, a);
  await send(B.page, 'to both tabs');
  await waitForText(A.page, 'to both tabs');
  await waitForText(tab2, 'to both tabs');
  const expect = ['from tab one', 'from tab two', 'to both tabs'];
  assert.deepEqual(await texts(A.page), expect);
  assert.deepEqual(await texts(tab2), expect);
  assert.deepEqual(await texts(B.page), expect);
  assert.equal(await A.page.locator('#msgs li.msg.mine').count(), 2, 'the other tab\'s message is shown as mine, once');
  // logging out in one tab logs out the other
  await tab2.getByRole('button', { name: 'Log out' }).click();
  await A.page.locator('#auth').waitFor({ state: 'visible' });
  await A.context.close();
  await B.context.close();
});

test('typing indicator and read receipts (when the server has them)', async (t) => {
  const A = await newPerson(browser, server);
  const B = await newPerson(browser, server);
  const a = uname('typer'), b = uname('watcher');
  const sa = await signUp(A.page, a);
  await signUp(B.page, b);
  await openDirect(A.page, b);
  await send(A.page, 'are you there?');
  await A.page.locator('#msgs li.msg.mine[data-seq]').first().waitFor();
  const channel = await A.page.evaluate(() => location.hash.slice(4));
  const typing = await wsFeature(A.page, sa.token, { op: 'typing', channel });
  const read = await wsFeature(A.page, sa.token, { op: 'read', channel, seq: 1 });
  if (!typing && !read) { t.skip('server answers typing and read with "unavailable" (not landed yet)'); await A.context.close(); await B.context.close(); return; }
  await openChat(B.page, a);
  await waitForText(B.page, 'are you there?');
  if (read) {
    await A.page.locator('#msgs li.msg.mine[data-state="read"]', { hasText: 'are you there?' }).waitFor();
    assert.equal(await A.page.locator('#msgs li.msg.mine .state').first().textContent(), 'Read');
  }
  if (typing) {
    await B.page.getByLabel('Message', { exact: true }).pressSequentially('yes I am', { delay: 30 });
    await A.page.locator('#typing', { hasText: 'is typing' }).waitFor();
    await B.page.getByLabel('Message', { exact: true }).press('Enter');
    await waitForText(A.page, 'yes I am');
    assert.equal(await A.page.locator('#typing').textContent(), '', 'indicator cleared by the message');
  }
  if (read) {
    // "Read" comes back after a reload: the server keeps every member's read seq
    await A.page.reload();
    await openChat(A.page, b);
    await A.page.locator('#msgs li.msg.mine[data-state="read"]', { hasText: 'are you there?' }).waitFor();
  }
  await A.context.close();
  await B.context.close();
});

test('links open apart with no referrer (http and https only); a day separator heads the log; the tab title counts unread messages', async () => {
  const A = await newPerson(browser, server);
  const B = await newPerson(browser, server);
  const a = uname('linker'), b = uname('reader');
  await signUp(A.page, a);
  await signUp(B.page, b);
  await openDirect(A.page, b);
  await send(A.page, 'see https://example.com/a?b=1. and javascript:alert(1) or ftp://x.org/f, then (http://127.0.0.1:9/p)');
  await waitForText(A.page, 'see https://example.com');
  const links = A.page.locator('#msgs li.msg .text a');
  assert.equal(await links.count(), 2);
  assert.equal(await links.nth(0).getAttribute('href'), 'https://example.com/a?b=1');
  assert.equal(await links.nth(0).textContent(), 'https://example.com/a?b=1', 'the full stop stays out of the link');
  assert.equal(await links.nth(1).getAttribute('href'), 'http://127.0.0.1:9/p');
  for (let i = 0; i < 2; i++) {
    assert.equal(await links.nth(i).getAttribute('rel'), 'noopener noreferrer');
    assert.equal(await links.nth(i).getAttribute('target'), '_blank');
  }
  assert.equal(await A.page.locator('#msgs .text', { hasText: 'javascript:alert(1)' }).count(), 1, 'kept as text');
  await A.page.locator('#msgs li.day', { hasText: 'Today' }).waitFor();
  assert.equal(await A.page.locator('#msgs li.day').count(), 1, 'one day, one separator');

  // B is on the list, not in the conversation: the title counts what is unread
  await B.page.locator('#chat-list .chat-item').first().waitFor();
  await B.page.waitForFunction(() => document.title.startsWith('(1)'));
  await send(A.page, 'and another');
  await B.page.waitForFunction(() => document.title.startsWith('(2)'));
  await openChat(B.page, a);
  await waitForText(B.page, 'and another');
  await B.page.waitForFunction(() => document.title === 'iyagi');
  await A.context.close();
  await B.context.close();
});
