// Message search in the browser (web/search.js over GET /v1/search): two people chat in Korean and
// English; one searches "안녕" and an English word in mixed case and sees the matches highlighted
// (<mark>), opens an old result (out of the first history page) and the conversation shows that
// message; a conversation's own search finds only its messages; a 1-character query shows a hint
// and asks nothing; a conversation the searcher is not in never shows up; more results page by
// page; errors are said; the keyboard (arrows, Enter, Escape) and the phone's one pane at a time.
// The index lags a fresh message by up to about a second: the scene waits for it by polling the
// API (never by sleeping a fixed time); what the page shows is then waited for as usual.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, newPerson, signUp, openChat, openDirect, send, waitForText, uname, api, sleep,
  noHorizontalOverflow, PASSWORD, PHONE,
} from './lib/harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launchBrowser(); });
after(async () => { await browser?.close(); await server?.close(); });

const hits = (page) => page.locator('#search-results .hit');
const status = (page) => page.locator('#search-status');
const box = (page) => page.getByRole('searchbox', { name: 'Search messages' });

/** polls the API until a search of `token`'s finds at least n messages (the index lags) */
async function indexed(token, q, n, channel) {
  const deadline = Date.now() + 15000;
  for (;;) {
    const qs = new URLSearchParams({ q, limit: '100' });
    if (channel) qs.set('channel', channel);
    const r = await api(server, 'GET', `/v1/search?${qs}`, { token });
    if (r.status === 200 && r.data.results.length >= n) return r.data.results;
    if (Date.now() > deadline) throw new Error(`search "${q}" did not find ${n}: ${r.status} ${JSON.stringify(r.data).slice(0, 500)}`);
    await sleep(100);
  }
}

/** types a query and waits for its results (the status says how many, or none) */
async function search(page, q) {
  await box(page).fill(q);
  await page.waitForFunction((q) => document.getElementById('search-results').dataset.query === q.trim() &&
    /found/.test(document.getElementById('search-status').textContent), q);
}

/** every hit: {chat, from, snippet, marks, channel} */
async function hitList(page) {
  return page.locator('#search-results .hit').evaluateAll((bs) => bs.map((b) => ({
    chat: b.querySelector('.hit-chat').textContent,
    from: b.querySelector('.hit-from').textContent.replace(/:\s*$/, ''),
    time: b.querySelector('.hit-time').textContent,
    snippet: b.querySelector('.hit-snippet').textContent,
    marks: [...b.querySelectorAll('.hit-snippet mark')].map((m) => m.textContent),
    channel: b.dataset.channel,
  })));
}

async function person(username, display_name) {
  await api(server, 'POST', '/v1/users', { body: { username, password: PASSWORD, display_name } });
  return (await api(server, 'POST', '/v1/sessions', { body: { username, password: PASSWORD } })).data;
}

/** the scene: Mina and Jun (in browsers) chat in Korean and English, 70 messages between the
 * greeting and now; a group of theirs; Jun and Cleo's own chat, which Mina must never see */
async function scene({ phone = false } = {}) {
  const M = await newPerson(browser, server, phone ? { viewport: PHONE, mobile: true } : {});
  const J = await newPerson(browser, server);
  const m = uname('mina'), j = uname('jun'), c = uname('cleo');
  const sm = await signUp(M.page, m, 'Mina');
  const sj = await signUp(J.page, j, 'Jun');
  const sc = await person(c, 'Cleo');
  const requests = [];
  M.page.on('request', (r) => { if (r.url().includes('/v1/search')) requests.push(new URL(r.url()).searchParams); });

  await openDirect(J.page, m);
  await send(J.page, '안녕하세요 미나! Long time no see.');
  await waitForText(J.page, '안녕하세요 미나');
  const direct = await J.page.evaluate(() => location.hash.slice(4));
  await openChat(M.page, 'Jun');
  await waitForText(M.page, '안녕하세요 미나');
  await send(M.page, 'Shall we meet at the BlueBird café?');
  await waitForText(J.page, 'BlueBird café');
  for (let i = 0; i < 70; i++) {
    const [s, to] = i % 2 ? [sm, sj] : [sj, sm];
    const r = await api(server, 'POST', `/v1/users/${to.user.id}/messages`, { token: s.token, body: { text: `filler ${i}`, cmid: `f${i}` } });
    assert.equal(r.status, 201);
  }
  await send(J.page, '안녕, see you at the Bluebird at 7');
  await waitForText(M.page, 'see you at the Bluebird');

  const g = await api(server, 'POST', '/v1/groups', { token: sm.token, body: { name: 'Book club', members: [sj.user.id] } });
  assert.equal(g.status, 201);
  const group = g.data.channel.id;
  await api(server, 'POST', `/v1/channels/${group}/messages`, { token: sm.token, body: { text: 'The blue book is great', cmid: 'g1' } });
  await api(server, 'POST', `/v1/channels/${group}/messages`, { token: sj.token, body: { text: '안녕 모두', cmid: 'g2' } });
  // Jun and Cleo: the same words, in a conversation Mina is not in
  const secret = await api(server, 'POST', `/v1/users/${sj.user.id}/messages`, { token: sc.token, body: { text: '안녕 비밀: BLUEBIRD secret plan', cmid: 's1' } });
  assert.equal(secret.status, 201);

  // the index has everything (Cleo's message too: Jun finds it), so an absence means something
  await indexed(sj.token, '비밀', 1);
  await indexed(sm.token, '안녕', 3);
  await indexed(sm.token, 'bluebird', 2);
  await indexed(sm.token, 'filler', 70);
  await indexed(sm.token, 'blue book', 1);
  return { M, J, sm, sj, direct, group, requests, secretChannel: secret.data.message.channel };
}

test('search: Korean and mixed-case English highlighted, only my conversations; an old result opens the conversation at it', async () => {
  const { M, J, direct, requests, secretChannel } = await scene();
  const page = M.page;

  // under 2 characters: a hint, nothing asked (typing, nor Enter)
  await box(page).fill('안');
  await status(page).filter({ hasText: 'Type at least 2 characters' }).waitFor();
  await box(page).press('Enter');
  await status(page).filter({ hasText: 'Type at least 2 characters' }).waitFor();
  await box(page).fill('b');
  await status(page).filter({ hasText: 'Type at least 2 characters' }).waitFor();
  assert.equal(await hits(page).count(), 0);

  // Korean: the greeting, the later "안녕," and the group's "안녕 모두"; not Cleo's
  await search(page, '안녕');
  let list = await hitList(page);
  assert.equal(list.length, 3, JSON.stringify(list));
  for (const h of list) assert.deepEqual(h.marks, ['안녕'], JSON.stringify(h));
  assert.deepEqual(list.map((h) => h.snippet).sort(),
    ['안녕 모두', '안녕, see you at the Bluebird at 7', '안녕하세요 미나! Long time no see.'].sort());
  const greet = list.find((h) => h.snippet.startsWith('안녕하세요'));
  assert.equal(greet.chat, 'Jun');
  assert.equal(greet.from, 'Jun');
  assert.ok(greet.time.length > 0, 'a date');
  assert.equal(list.find((h) => h.snippet === '안녕 모두').chat, 'Book club');
  assert.ok(list.every((h) => h.channel !== secretChannel));
  await status(page).filter({ hasText: '3 messages found' }).waitFor();
  // the matches are <mark> elements, the rest plain text: no markup from a message
  assert.equal(await page.locator('#search-results mark').count(), 3);

  // English, mixed case: "bLUEbIRD" finds "BlueBird" and "Bluebird" as they are written
  await search(page, 'bLUEbIRD');
  list = await hitList(page);
  assert.equal(list.length, 2, JSON.stringify(list));
  assert.deepEqual(list.map((h) => h.marks[0]).sort(), ['BlueBird', 'Bluebird']);
  assert.ok(list.every((h) => h.channel === direct));
  const mine = list.find((h) => h.marks[0] === 'BlueBird');
  assert.equal(mine.from, 'You');
  assert.equal(mine.snippet, 'Shall we meet at the BlueBird café?');
  assert.equal(await page.locator('#search-results').getByText(/secret|비밀/).count(), 0, 'nothing of a conversation I am not in');


  // open the greeting: older than the first page of history (73 messages after it)
  await search(page, '안녕하세요');
  await hits(page).first().click();
  const target = page.locator('#msgs li.msg[data-seq]', { hasText: '안녕하세요 미나' });
  await target.waitFor();
  await page.locator('#msgs li.msg.flash', { hasText: '안녕하세요 미나' }).waitFor();   // highlighted briefly
  assert.equal(await target.getAttribute('data-seq'), '1');
  assert.ok(await page.locator('#msgs li.msg[data-seq]').count() > 50, 'older pages were loaded to reach it');
  const inView = async () => {
    const [t, l] = [await target.boundingBox(), await page.locator('#log').boundingBox()];
    return t && l && t.y >= l.y - 1 && t.y + Math.min(t.height, l.height) <= l.y + l.height + 1;
  };
  assert.ok(await inView(), 'the message is scrolled into view');
  assert.equal(await page.locator('#chat-title').textContent(), 'Jun');
  assert.equal(await hits(page).first().getAttribute('aria-current'), 'true');
  assert.equal(await page.evaluate(() => document.activeElement.closest('li.msg')?.dataset.seq), '1', 'the message has the focus');

  // the keyboard: arrows to a result, Enter opens it, Escape closes the search
  await search(page, 'bluebird');
  await box(page).press('ArrowDown');
  assert.equal(await page.evaluate(() => document.activeElement.classList.contains('hit')), true);
  await page.keyboard.press('ArrowDown');
  const second = await page.evaluate(() => document.activeElement.dataset.id);
  await page.keyboard.press('Enter');
  await page.locator(`#msgs li.flash[data-id="${second}"], #msgs li[data-id="${second}"]:focus`).first().waitFor();
  await box(page).focus();
  await page.keyboard.press('Escape');
  await page.locator('#search-view').waitFor({ state: 'hidden' });
  assert.equal(await box(page).inputValue(), '');
  await page.locator('#chat-list').waitFor({ state: 'visible' });

  // every request had a query of at least 2 code points; none for the 1-character ones
  assert.ok(requests.length >= 4);
  for (const q of requests) assert.ok([...q.get('q')].length >= 2, `asked for "${q.get('q')}"`);
  assert.ok(requests.every((q) => !q.has('channel')));

  // more results page by page: 70 fillers, no duplicates
  await search(page, 'filler');
  await page.getByRole('button', { name: 'More results' }).waitFor();
  for (let i = 0; i < 5 && await page.getByRole('button', { name: 'More results' }).isVisible(); i++) {
    const n = await hits(page).count();
    await page.getByRole('button', { name: 'More results' }).click();
    await page.waitForFunction((k) => document.querySelectorAll('#search-results .hit').length > k ||
      document.getElementById('search-more').hidden, n);
  }
  const fillers = (await hitList(page)).map((h) => h.snippet);
  assert.equal(fillers.length, 70, `${fillers.length} fillers`);
  assert.equal(new Set(fillers).size, 70);
  assert.deepEqual([...M.page.errors, ...J.page.errors], []);
  await M.context.close();
  await J.context.close();
});

test('search in one conversation: only its messages; then all of them; errors and no results are said', async () => {
  const { M, J, direct, group, requests } = await scene();
  const page = M.page;
  await openChat(page, 'Jun');
  await page.getByRole('button', { name: 'Search this conversation' }).click();
  await page.locator('#search-scope', { hasText: 'Only in Jun' }).waitFor();
  await status(page).filter({ hasText: 'Type at least 2 characters' }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), 'search-input');
  await search(page, 'Blue');
  let list = await hitList(page);
  assert.equal(list.length, 2, JSON.stringify(list));
  assert.ok(list.every((h) => h.channel === direct), 'only this conversation');
  assert.ok(requests.some((q) => q.get('channel') === direct && q.get('q') === 'Blue'));
  await search(page, '안녕');
  list = await hitList(page);
  assert.equal(list.length, 2, JSON.stringify(list));
  assert.ok(list.every((h) => h.channel === direct));

  // all conversations: the group's too
  await page.getByRole('button', { name: 'Search all conversations' }).click();
  await page.locator('#search-scope').waitFor({ state: 'hidden' });
  await status(page).filter({ hasText: '3 messages found' }).waitFor();
  list = await hitList(page);
  assert.ok(list.some((h) => h.channel === group && h.chat === 'Book club'));

  // in the group: its own search finds the group's "blue book", not the direct chat's Bluebird
  await page.keyboard.press('Escape');
  await openChat(page, 'Book club');
  await page.getByRole('button', { name: 'Search this conversation' }).click();
  await search(page, 'blue');
  list = await hitList(page);
  assert.deepEqual(list.map((h) => [h.chat, h.snippet, h.marks]), [['Book club', 'The blue book is great', ['blue']]]);
  await hits(page).first().press('Enter');
  await page.locator('#msgs li.msg[data-seq]', { hasText: 'The blue book is great' }).waitFor();
  assert.equal(await page.locator('#chat-title').textContent(), 'Book club');

  // nothing found; the server's errors are said (and a later search clears them)
  await page.getByRole('button', { name: 'Search all conversations' }).click();
  await search(page, 'zebra crossing');
  await status(page).filter({ hasText: 'No messages found' }).waitFor();
  assert.equal(await hits(page).count(), 0);
  await page.route('**/v1/search?*', (r) => r.fulfill({ status: 503, contentType: 'application/json',
    body: JSON.stringify({ error: { code: 'unavailable', message: 'not implemented' } }) }));
  await box(page).fill('bluebird');
  await page.locator('#search-error', { hasText: 'This is not available on this server yet.' }).waitFor();
  await page.unroute('**/v1/search?*');
  await box(page).fill('bluebirds');
  await status(page).filter({ hasText: 'No messages found' }).waitFor();
  assert.equal(await page.locator('#search-error').textContent(), '');
  assert.deepEqual([...M.page.errors, ...J.page.errors], []);
  await M.context.close();
  await J.context.close();
});

test('search on a phone: the results are the list pane; a result opens the conversation, Back comes back to them', async () => {
  const { M, J, direct } = await scene({ phone: true });
  const page = M.page;
  const sidebar = page.locator('.sidebar');
  const chat = page.locator('#chat');
  await page.getByRole('button', { name: 'Back to conversations' }).click();
  await search(page, '안녕하세요');
  assert.ok(await noHorizontalOverflow(page), 'results fit');
  await hits(page).first().click();
  await page.locator('#msgs li.msg[data-seq="1"]').waitFor();
  assert.ok(!(await sidebar.isVisible()) && await chat.isVisible(), 'the conversation takes the screen');
  await page.getByRole('button', { name: 'Back to conversations' }).click();
  await hits(page).first().waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.classList.contains('hit')), true, 'back at the result');

  // a conversation's own search is shown over it; Escape goes back to the conversation
  await hits(page).first().click();
  await page.getByRole('button', { name: 'Search this conversation' }).click();
  await page.locator('#search-scope', { hasText: 'Only in Jun' }).waitFor();
  assert.ok(await sidebar.isVisible() && !(await chat.isVisible()));
  await search(page, 'bluebird');
  assert.ok(await noHorizontalOverflow(page));
  await page.keyboard.press('Escape');
  await chat.waitFor({ state: 'visible' });
  assert.ok(!(await sidebar.isVisible()));
  assert.equal(await page.evaluate(() => location.hash), `#/c/${direct}`);
  await page.getByRole('button', { name: 'Search this conversation' }).click();
  await search(page, 'bluebird');
  await hits(page).filter({ hasText: 'BlueBird café' }).click();
  await page.locator('#msgs li.msg[data-seq]', { hasText: 'BlueBird café' }).waitFor();
  assert.ok(await chat.isVisible() && !(await sidebar.isVisible()));
  assert.ok(await noHorizontalOverflow(page), 'conversation fits (with its Search button)');
  assert.deepEqual([...M.page.errors, ...J.page.errors], []);
  await M.context.close();
  await J.context.close();
});
