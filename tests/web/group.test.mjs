// Groups in the browser: three people in a group chat; adding, removing and leaving, shown as
// system lines; the UI degrades to an error line where the server lacks membership changes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, newPerson, signUp, openChat, send, texts, waitForText, uname, httpFeature, api,
} from './lib/harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launchBrowser(); });
after(async () => { await browser?.close(); await server?.close(); });

test('a group of three: create it, everyone talks, everyone sees the same conversation', async (t) => {
  const P = [];
  const names = [uname('ann'), uname('ben'), uname('cat'), uname('dan')];
  const display = ['Ann', 'Ben', 'Cat', 'Dan'];
  for (let i = 0; i < 4; i++) {
    const p = await newPerson(browser, server);
    p.session = await signUp(p.page, names[i], display[i]);
    P.push(p);
  }
  const [A, B, C, D] = P;

  // Ann creates the group through the dialog
  await A.page.getByRole('button', { name: 'New group…' }).click();
  await A.page.getByLabel('Group name').fill('Trio <i>talk</i>');
  await A.page.getByRole('dialog').getByLabel(/^Members/).fill(`${names[1]}, ${names[2]}`);
  await A.page.getByRole('button', { name: 'Create' }).click();
  await A.page.locator('#chat-title', { hasText: 'Trio <i>talk</i>' }).waitFor();
  await A.page.locator('#chat-sub', { hasText: '3 members' }).waitFor();
  await send(A.page, 'welcome, both of you');

  for (const p of [B, C]) {
    await openChat(p.page, 'Trio <i>talk</i>');
    await waitForText(p.page, 'welcome, both of you');
  }
  await send(B.page, 'thanks Ann');
  await waitForText(C.page, 'thanks Ann');
  await send(C.page, 'hi all 🎉');
  for (const p of [A, B, C]) await waitForText(p.page, 'hi all 🎉');
  const want = ['welcome, both of you', 'thanks Ann', 'hi all 🎉'];
  for (const p of [A, B, C]) assert.deepEqual(await texts(p.page), want);
  // in a group, others' messages carry the sender's name
  assert.equal(await C.page.locator('#msgs li.msg', { hasText: 'thanks Ann' }).locator('.who').textContent(), 'Ben');

  // membership changes
  const channel = await A.page.evaluate(() => location.hash.slice(4));
  if (!(await httpFeature(server, A.session.token, 'POST', `/v1/channels/${channel}/members`, { user_id: '1' }))) {
    // not landed: the dialog shows an error line and nothing breaks
    await A.page.getByRole('button', { name: 'Members' }).click();
    await A.page.getByLabel('Add a member (username)').fill(names[3]);
    await A.page.getByRole('button', { name: 'Add', exact: true }).click();
    await A.page.locator('#members-error', { hasText: 'not available' }).waitFor();
    t.skip('server answers membership changes with "unavailable" (not landed yet)');
    for (const p of P) await p.context.close();
    return;
  }
  await A.page.getByRole('button', { name: 'Members' }).click();
  const dlg = A.page.getByRole('dialog');
  await dlg.getByLabel('Add a member (username)').fill(names[3]);
  await dlg.getByRole('button', { name: 'Add', exact: true }).click();
  await dlg.locator('#member-list li', { hasText: 'Dan' }).waitFor();
  await dlg.getByRole('button', { name: 'Remove Cat' }).click();
  await dlg.locator('#member-list li', { hasText: 'Cat' }).waitFor({ state: 'detached' });
  await dlg.getByRole('button', { name: 'Close' }).click();
  await A.page.locator('#msgs li.sys', { hasText: 'Ann added Dan' }).waitFor();
  await A.page.locator('#msgs li.sys', { hasText: 'Ann removed Cat' }).waitFor();
  await B.page.locator('#msgs li.sys', { hasText: 'Ann removed Cat' }).waitFor();

  // Cat is out: the group leaves her list
  await C.page.locator('#chat-list .chat-item', { hasText: 'Trio' }).waitFor({ state: 'detached' });
  // Dan is in and can talk
  await openChat(D.page, 'Trio <i>talk</i>');
  await send(D.page, 'hello from Dan');
  await waitForText(A.page, 'hello from Dan');
  await waitForText(B.page, 'hello from Dan');

  // Ben leaves by himself
  await B.page.getByRole('button', { name: 'Members' }).click();
  await B.page.getByRole('button', { name: 'Leave group' }).click();
  await B.page.locator('#chat-list .chat-item', { hasText: 'Trio' }).waitFor({ state: 'detached' });
  await A.page.locator('#msgs li.sys', { hasText: 'Ben left' }).waitFor();
  await A.page.locator('#chat-sub', { hasText: '2 members' }).waitFor();

  for (const p of P) assert.deepEqual(p.page.errors, []);
  for (const p of P) await p.context.close();
});

test('@ completion offers the conversation\'s members; Enter takes one (and does not send); the message mentions them', async () => {
  const A = await newPerson(browser, server);
  const a = uname('cora'), b = uname('dan'), c = uname('dana');
  const sa = await signUp(A.page, a, 'Cora');
  const ids = {};
  for (const [u, d] of [[b, 'Dan'], [c, 'Dana']]) {
    ids[u] = (await api(server, 'POST', '/v1/users', { body: { username: u, password: 'correct horse 1', display_name: d } })).data.user.id;
  }
  const g = await api(server, 'POST', '/v1/groups', { token: sa.token, body: { name: 'completers', members: [ids[b], ids[c]] } });
  assert.equal(g.status, 201);
  await A.page.reload();
  await openChat(A.page, 'completers');
  const box = A.page.getByLabel('Message', { exact: true });
  await box.pressSequentially('hi @da', { delay: 20 });
  const list = A.page.getByRole('listbox', { name: 'Mention someone' });
  await list.waitFor();
  assert.equal(await list.getByRole('option').count(), 2, 'both dan and dana start with "da"');
  await box.pressSequentially('n', { delay: 20 });   // "@dan": still both
  await box.press('ArrowDown');
  await box.press('Enter');                          // takes the second, does not send
  assert.equal(await box.inputValue(), `hi @${[b, c].sort()[1]} `);
  assert.equal(await list.isHidden(), true);
  await box.press('Enter');                          // now it sends
  await A.page.locator('#msgs li.msg[data-seq] .text', { hasText: 'hi @' }).waitFor();
  const h = await api(server, 'GET', `/v1/channels/${g.data.channel.id}/messages`, { token: sa.token });
  const sent = h.data.messages.find((m) => m.text.startsWith('hi @'));
  assert.deepEqual(sent.mentions, [ids[[b, c].sort()[1]]]);
  await A.context.close();
});

test('one sender\'s consecutive messages show one name; a hidden tab notifies new messages (when allowed), not muted ones, and a click opens the conversation', async () => {
  const A = await newPerson(browser, server);
  const B = await newPerson(browser, server);
  const a = uname('gia'), b = uname('hal');
  const sa = await signUp(A.page, a, 'Gia');
  const sb = await signUp(B.page, b, 'Hal');
  const g = await api(server, 'POST', '/v1/groups', { token: sb.token, body: { name: 'Runs', members: [sa.user.id] } });
  const ch = g.data.channel.id;
  for (const t of ['one', 'two', 'three']) await api(server, 'POST', `/v1/channels/${ch}/messages`, { token: sb.token, body: { text: t } });
  await api(server, 'POST', `/v1/channels/${ch}/messages`, { token: sa.token, body: { text: 'mine' } });
  await api(server, 'POST', `/v1/channels/${ch}/messages`, { token: sb.token, body: { text: 'four' } });
  await A.page.reload();
  await openChat(A.page, 'Runs');
  await waitForText(A.page, 'four');
  const cont = await A.page.locator('#msgs li.msg').evaluateAll((lis) => lis.map((li) => [li.querySelector('.text').textContent, li.classList.contains('cont')]));
  assert.deepEqual(cont, [['one', false], ['two', true], ['three', true], ['mine', false], ['four', false]]);
  // the name stays for screen readers on every message
  assert.equal(await A.page.locator('#msgs li.msg', { hasText: 'two' }).locator('.who').textContent(), 'Hal');

  // the tab is hidden: a notification names the sender and the conversation; a click opens it
  await A.page.evaluate(() => {
    window.__notes = [];
    window.Notification = class {
      static permission = 'granted';
      constructor(title, opts) { this.title = title; window.__notes.push({ title, body: opts.body }); window.__last = this; }
      close() {}
    };
    Object.defineProperty(document, 'visibilityState', { get: () => 'hidden', configurable: true });
  });
  if (await A.page.getByRole('button', { name: 'Back to conversations' }).isVisible()) await A.page.getByRole('button', { name: 'Back to conversations' }).click();
  await api(server, 'POST', `/v1/channels/${ch}/messages`, { token: sb.token, body: { text: 'are you there?' } });
  await A.page.waitForFunction(() => window.__notes.length === 1);
  assert.deepEqual(await A.page.evaluate(() => window.__notes), [{ title: 'Hal in Runs', body: 'are you there?' }]);
  // muted: none (unless it mentions me)
  assert.equal((await api(server, 'PUT', `/v1/channels/${ch}/mute`, { token: sa.token })).status, 204);
  await A.page.reload();
  await A.page.evaluate(() => {
    window.__notes = [];
    window.Notification = class { static permission = 'granted'; constructor(title, opts) { window.__notes.push({ title, body: opts.body }); window.__last = this; } close() {} };
    Object.defineProperty(document, 'visibilityState', { get: () => 'hidden', configurable: true });
  });
  await A.page.locator('#conn[data-state="online"]').waitFor();
  await api(server, 'POST', `/v1/channels/${ch}/messages`, { token: sb.token, body: { text: 'quiet one' } });
  await api(server, 'POST', `/v1/channels/${ch}/messages`, { token: sb.token, body: { text: `@${a} look` } });
  await A.page.waitForFunction(() => window.__notes.length >= 1);
  await A.page.waitForTimeout(300);
  assert.deepEqual((await A.page.evaluate(() => window.__notes)).map((n) => n.body), [`@${a} look`]);
  await A.page.evaluate(() => window.__last.onclick());
  await A.page.locator('#chat-title', { hasText: 'Runs' }).waitFor();
  assert.deepEqual([...A.page.errors, ...B.page.errors], []);
  await A.context.close();
  await B.context.close();
});
