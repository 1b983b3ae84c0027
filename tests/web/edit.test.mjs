// Editing and deleting messages in the browser: the author edits in place (Enter saves, Escape
// cancels) and deletes after asking in place; the other person sees both live, and after a reload
// (history shows the current state); the channel list's preview follows; a group's owner may
// delete a member's message but not edit it; a refused change is said next to the message.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, newPerson, signUp, send, texts, waitForText, uname, api, openDirect, openChat,
} from './lib/harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launchBrowser(); });
after(async () => { await browser?.close(); await server?.close(); });

const msgLi = (page, text) => page.locator('#msgs li.msg[data-seq]', { hasText: text });

test('edit and delete: in place, live on the other side, kept across a reload; who may', async () => {
  const A = await newPerson(browser, server);
  const B = await newPerson(browser, server);
  const a = uname('edie'), b = uname('fred');
  const sa = await signUp(A.page, a, 'Edie');
  await signUp(B.page, b, 'Fred');
  await openDirect(A.page, b);
  await send(A.page, 'helo fred');
  await send(A.page, 'second thought');
  await waitForText(A.page, 'second thought');
  await A.page.locator('#msgs li[data-state="sending"]').first().waitFor({ state: 'detached' }).catch(() => {});
  await openChat(B.page, 'Edie');
  await waitForText(B.page, 'second thought');
  assert.equal(await msgLi(B.page, 'helo fred').getByRole('button', { name: 'Edit this message' }).count(), 0,
    'no Edit on someone else\'s message');
  assert.equal(await msgLi(B.page, 'helo fred').getByRole('button', { name: 'Delete this message' }).count(), 0,
    'no Delete on someone else\'s message in a direct chat');

  // edit: Escape cancels, Enter saves; the other side sees the new text, marked edited
  await msgLi(A.page, 'helo fred').getByRole('button', { name: 'Edit this message' }).click();
  const box = A.page.getByLabel('Edit message');
  await box.fill('never mind');
  await box.press('Escape');
  await waitForText(A.page, 'helo fred');
  await msgLi(A.page, 'helo fred').getByRole('button', { name: 'Edit this message' }).click();
  await A.page.getByLabel('Edit message').fill('hello fred');
  await A.page.getByLabel('Edit message').press('Enter');
  await msgLi(A.page, 'hello fred').locator('.edited').waitFor();
  await msgLi(B.page, 'hello fred').locator('.edited').waitFor();
  assert.deepEqual(await texts(B.page), ['hello fred', 'second thought'], 'the edit replaces the text, adds no message');

  // delete after a confirmation (declined first): a tombstone on both sides, the preview follows
  await msgLi(A.page, 'second thought').getByRole('button', { name: 'Delete this message' }).click();
  await msgLi(A.page, 'second thought').getByRole('button', { name: 'No' }).click();
  await msgLi(A.page, 'second thought').getByRole('button', { name: 'Delete this message' }).click();
  await msgLi(A.page, 'second thought').getByRole('button', { name: 'Yes, delete' }).click();
  await B.page.locator('#msgs li.msg.deleted', { hasText: 'This message was deleted' }).waitFor();
  await A.page.locator('#msgs li.msg.deleted', { hasText: 'This message was deleted' }).waitFor();
  assert.equal(await B.page.locator('#msgs li.msg', { hasText: 'second thought' }).count(), 0);
  await B.page.locator('#chat-list .chat-item .ci-last', { hasText: 'Edie deleted a message' }).waitFor();
  assert.equal(await B.page.locator('#chat-list .badge.unread').count(), 0, 'a change is no unread message');

  // after a reload: the current state from history
  await B.page.reload();
  await openChat(B.page, 'Edie');
  await msgLi(B.page, 'hello fred').locator('.edited').waitFor();
  await B.page.locator('#msgs li.msg.deleted').waitFor();
  assert.deepEqual(await texts(B.page), ['hello fred', 'This message was deleted']);

  // a group: the owner may delete a member's message, not edit it; a refused edit is said
  const g = await api(server, 'POST', '/v1/groups', { token: sa.token, body: { name: 'Edits', members: [(await api(server, 'GET', `/v1/users?username=${b}`, { token: sa.token })).data.user.id] } });
  assert.equal(g.status, 201);
  await openChat(B.page, 'Edits');
  await send(B.page, 'from fred');
  await openChat(A.page, 'Edits');
  await waitForText(A.page, 'from fred');
  const theirs = msgLi(A.page, 'from fred');
  assert.equal(await theirs.getByRole('button', { name: 'Edit this message' }).count(), 0);
  await theirs.getByRole('button', { name: 'Delete this message' }).click();
  await theirs.getByRole('button', { name: 'Yes, delete' }).click();
  await B.page.locator('#msgs li.msg.deleted').waitFor();

  await send(B.page, 'mine to edit');
  await waitForText(B.page, 'mine to edit');
  await B.page.locator('#msgs li[data-state="sending"]').first().waitFor({ state: 'detached' }).catch(() => {});
  await waitForText(A.page, 'mine to edit');
  // the owner deletes it while Fred is editing: his save is refused and said
  await msgLi(B.page, 'mine to edit').getByRole('button', { name: 'Edit this message' }).click();
  await B.page.getByLabel('Edit message').fill('too late');
  await msgLi(A.page, 'mine to edit').getByRole('button', { name: 'Delete this message' }).click();
  await msgLi(A.page, 'mine to edit').getByRole('button', { name: 'Yes, delete' }).click();
  await A.page.locator('#msgs li.msg.deleted').nth(1).waitFor();
  const editing = B.page.locator('#msgs li.msg', { has: B.page.getByLabel('Edit message') });
  await B.page.getByLabel('Edit message').press('Enter').catch(() => {});
  // either the delete arrived first (the message shows deleted) or the save was refused (said)
  await B.page.locator('#msgs li.msg.deleted').nth(1).or(editing.locator('.error', { hasText: 'Not edited' })).first().waitFor();
  assert.deepEqual([...A.page.errors, ...B.page.errors], []);
  await A.context.close();
  await B.context.close();
});

test('reply: Reply on a message quotes it above the composer; the reply shows the quote on both sides (also after a reload) and a click jumps to the original', async () => {
  const A = await newPerson(browser, server);
  const B = await newPerson(browser, server);
  const a = uname('rita'), b = uname('sam');
  await signUp(A.page, a, 'Rita');
  await signUp(B.page, b, 'Sam');
  await openDirect(A.page, b);
  await send(A.page, 'where shall we meet?');
  for (let i = 0; i < 60; i++) await send(A.page, `filler ${i}`);
  await waitForText(A.page, 'filler 59');
  await openChat(B.page, 'Rita');
  await waitForText(B.page, 'filler 59');

  // the original is older than the first page: reply to a loaded one, then to the old one by jump
  await msgLi(B.page, 'filler 59').getByRole('button', { name: 'Reply to this message' }).click();
  await B.page.locator('#replying', { hasText: 'Replying to Rita: filler 59' }).waitFor();
  await B.page.getByRole('button', { name: 'Cancel the reply' }).click();
  await B.page.locator('#replying').waitFor({ state: 'hidden' });
  await msgLi(B.page, 'filler 58').getByRole('button', { name: 'Reply to this message' }).click();
  await send(B.page, 'at the station');
  await B.page.locator('#replying').waitFor({ state: 'hidden' });
  const mine = msgLi(B.page, 'at the station');
  await mine.locator('.quote', { hasText: 'filler 58' }).waitFor();
  const theirs = msgLi(A.page, 'at the station');
  await theirs.locator('.quote', { hasText: 'Sam' }).or(theirs.locator('.quote', { hasText: 'filler 58' })).first().waitFor();
  assert.match(await theirs.locator('.quote').textContent(), /filler 58/);

  // a reply to a message the page has not loaded: the quote is asked from the server; the jump
  // loads older pages until the original is there
  const sr = await api(server, 'GET', `/v1/users?username=${a}`, { token: (await B.page.evaluate(() => JSON.parse(localStorage.getItem('iyagi.session')).token)) });
  const tokenB = await B.page.evaluate(() => JSON.parse(localStorage.getItem('iyagi.session')).token);
  const ch = await B.page.evaluate(() => location.hash.slice(4));
  const first = (await api(server, 'GET', `/v1/channels/${ch}/messages?after_seq=0&limit=1`, { token: tokenB })).data.messages[0];
  assert.equal(first.text, 'where shall we meet?');
  const r = await api(server, 'POST', `/v1/users/${sr.data.user.id}/messages`, { token: tokenB, body: { text: 'about your first question', cmid: 'rq1', reply_to: first.id } });
  assert.equal(r.status, 201);
  const late = msgLi(A.page, 'about your first question');
  await late.locator('.quote', { hasText: 'where shall we meet?' }).waitFor();
  await late.locator('.quote').click();
  await A.page.locator('#msgs li.flash', { hasText: 'where shall we meet?' }).waitFor();

  // after a reload the quotes come back
  await A.page.reload();
  await openChat(A.page, 'Sam');
  await msgLi(A.page, 'at the station').locator('.quote', { hasText: 'filler 58' }).waitFor();
  await msgLi(A.page, 'about your first question').locator('.quote', { hasText: 'where shall we meet?' }).waitFor();
  assert.deepEqual([...A.page.errors, ...B.page.errors], []);
  await A.context.close();
  await B.context.close();
});

test('reactions: React offers a few, the chip counts people and toggles mine; live on both sides and after a reload', async () => {
  const A = await newPerson(browser, server);
  const B = await newPerson(browser, server);
  const a = uname('tia'), b = uname('ugo');
  await signUp(A.page, a, 'Tia');
  await signUp(B.page, b, 'Ugo');
  await openDirect(A.page, b);
  await send(A.page, 'shall we?');
  await waitForText(A.page, 'shall we?');
  await openChat(B.page, 'Tia');
  await waitForText(B.page, 'shall we?');

  await msgLi(B.page, 'shall we?').getByRole('button', { name: 'React to this message' }).click();
  await B.page.getByRole('button', { name: 'React with 👍' }).click();
  const chipA = msgLi(A.page, 'shall we?').locator('.reaction', { hasText: '👍' });
  await chipA.locator('.count', { hasText: '1' }).waitFor();
  assert.equal(await chipA.getAttribute('aria-pressed'), 'false', 'not mine');
  await chipA.click();
  await chipA.locator('.count', { hasText: '2' }).waitFor();
  await A.page.locator('#msgs li.msg .reaction[aria-pressed="true"]', { hasText: '👍' }).waitFor();
  const chipB = msgLi(B.page, 'shall we?').locator('.reaction', { hasText: '👍' });
  await chipB.locator('.count', { hasText: '2' }).waitFor();
  await chipB.click();   // Ugo takes his back
  await chipA.locator('.count', { hasText: '1' }).waitFor();
  assert.equal(await B.page.locator('#chat-list .badge.unread').count(), 0, 'a reaction is no unread message');

  await B.page.reload();
  await openChat(B.page, 'Tia');
  const again = msgLi(B.page, 'shall we?').locator('.reaction', { hasText: '👍' });
  await again.locator('.count', { hasText: '1' }).waitFor();
  assert.equal(await again.getAttribute('aria-pressed'), 'false');
  assert.deepEqual(await texts(B.page), ['shall we?'], 'reactions add no message');
  assert.deepEqual([...A.page.errors, ...B.page.errors], []);
  await A.context.close();
  await B.context.close();
});
