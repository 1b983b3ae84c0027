// Opening without network (the product issue: "on phones it should feel like an app: ... opening
// without network on the cached conversations and the pending outbox"): the service worker serves
// the app shell from its cache (and nothing of the API), the page draws the conversation list and
// the saved messages from IndexedDB with "Offline — showing saved messages", messages written
// meanwhile wait in the outbox (IndexedDB, surviving a reload) and are delivered once when the
// network is back; logging out leaves nothing of the user in IndexedDB.
//
// Playwright's context.setOffline(true) cuts the browser's network: fetches, page loads and new
// WebSockets fail with ERR_INTERNET_DISCONNECTED, as on a phone in a tunnel.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  startServer, launchBrowser, newPerson, signUp, openDirect, openChat, send, texts, waitForText, waitOnline, uname, api,
  sleep, REPO, PHONE, PASSWORD,
} from './lib/harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launchBrowser(); });
after(async () => { await browser?.close(); await server?.close(); });

const count = (arr, x) => arr.filter((y) => y === x).length;

/** the SHELL list of the served sw.js */
async function shellOf() {
  const sw = await (await fetch(`${server.url}/sw.js`)).text();
  const m = /const SHELL = \[([\s\S]*?)\];/.exec(sw);
  assert.ok(m, 'sw.js has a SHELL list');
  return [...m[1].matchAll(/'([^']+)'/g)].map((x) => x[1]);
}

/** every IndexedDB database of the page's origin, with the number of records in each store;
 * `skip`: names not to open (opening a database being deleted would create it again) */
async function idbContents(page, skip = []) {
  return page.evaluate(async (skip) => {
    const p = (r) => new Promise((res, rej) => { r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
    const out = [];
    for (const { name, version } of await indexedDB.databases()) {
      if (skip.includes(name)) { out.push({ name, skipped: true }); continue; }
      const db = await p(indexedDB.open(name, version));
      const stores = {};
      for (const s of db.objectStoreNames) stores[s] = await p(db.transaction(s).objectStore(s).count());
      db.close();
      out.push({ name, stores });
    }
    return out;
  }, skip);
}

/** records of the user's saved database: {outbox: [...], convs: [...], meta: {me, users, list}} */
async function savedOf(page, uid) {
  return page.evaluate(async (name) => {
    const p = (r) => new Promise((res, rej) => { r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
    if (!(await indexedDB.databases()).some((d) => d.name === name)) return null;
    const db = await p(indexedDB.open(name));
    const t = db.transaction(['outbox', 'convs', 'meta']);
    const [outbox, convs, me, users, list] = await Promise.all([p(t.objectStore('outbox').getAll()), p(t.objectStore('convs').getAll()),
      p(t.objectStore('meta').get('me')), p(t.objectStore('meta').get('users')), p(t.objectStore('meta').get('list'))]);
    db.close();
    return { outbox, convs, meta: { me, users, list } };
  }, `iyagi.${uid}`);
}

async function until(what, fn, timeout = 10000) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function history(token, channel) {
  return (await api(server, 'GET', `/v1/channels/${channel}/messages?after_seq=0&limit=200`, { token })).data.messages;
}

test('the service worker caches exactly the app shell: every file of web/, nothing of the API', async () => {
  const shell = await shellOf();
  const files = fs.readdirSync(path.join(REPO, 'web')).filter((f) => f !== 'sw.js').map((f) => `/${f}`).sort();
  assert.deepEqual([...shell].sort(), files, 'SHELL in web/sw.js lists every file of web/ (a module missing there breaks opening offline)');
  for (const p of shell) assert.equal((await fetch(server.url + p)).status, 200, p);

  const A = await newPerson(browser, server);
  await signUp(A.page, uname('shel'));
  await A.page.waitForFunction(() => !!navigator.serviceWorker.controller, null, { timeout: 15000 });
  await A.page.evaluate(() => fetch('/v1/discovery').then((r) => r.text()));   // an API answer the worker must not keep
  const cached = await A.page.evaluate(async () => {
    const out = {};
    for (const k of await caches.keys()) out[k] = (await (await caches.open(k)).keys()).map((r) => new URL(r.url).pathname).sort();
    return out;
  });
  assert.deepEqual(Object.keys(cached).length, 1, `one versioned cache: ${Object.keys(cached)}`);
  assert.match(Object.keys(cached)[0], /^iyagi-shell-/);
  assert.deepEqual(Object.values(cached)[0], [...shell].sort());
  assert.deepEqual(A.page.errors, []);
  await A.context.close();
});

test('offline: the saved list and messages at once, the outbox kept and sent once when back, nothing left after logout', async () => {
  // Ann on a phone, Bo on a desktop; a direct chat and a group with an unread message
  const A = await newPerson(browser, server, { viewport: PHONE, mobile: true });
  const B = await newPerson(browser, server);
  const a = uname('ann'), b = uname('bo');
  const sa = await signUp(A.page, a, 'Ann Offline');
  const sb = await signUp(B.page, b, 'Bo Online');
  await openDirect(A.page, b);
  await send(A.page, 'hello from ann');
  await waitForText(A.page, 'hello from ann');
  await B.page.locator('#chat-list .chat-item', { hasText: 'Ann Offline' }).click();
  await waitForText(B.page, 'hello from ann');
  await send(B.page, 'hi back from bo');
  await waitForText(A.page, 'hi back from bo');
  const direct = await A.page.evaluate(() => location.hash.slice(4));
  const g = await api(server, 'POST', '/v1/groups', { token: sb.token, body: { name: 'Trip planning', members: [sa.user.id] } });
  assert.equal(g.status, 201, JSON.stringify(g.data));
  const group = g.data.channel.id;
  assert.equal((await api(server, 'POST', `/v1/channels/${group}/messages`,
    { token: sb.token, body: { text: 'who brings the tent?', cmid: 'bo-tent-1' } })).status, 201);
  await A.page.locator('#chat-list .chat-item', { hasText: 'Trip planning' }).locator('.badge.unread').waitFor({ state: 'attached' });

  // the shell is cached and the page controlled; what the page saw is written through
  await A.page.waitForFunction(() => !!navigator.serviceWorker.controller, null, { timeout: 15000 });
  await until('the saved conversation and list', async () => {
    const s = await savedOf(A.page, sa.user.id);
    const conv = s && s.convs.find((c) => c.id === direct);
    const trip = s && (s.meta.list || []).find((it) => it.channel.id === group);
    return conv && conv.messages.some((m) => m.text === 'hi back from bo') && trip && trip.unread === 1 &&
      (s.meta.users || []).some((u) => u.id === sb.user.id);
  });

  // (a) no network: a reload opens the app from the service worker's cache, drawn from IndexedDB
  await A.context.setOffline(true);
  await A.page.reload();
  await A.page.locator('#app').waitFor({ state: 'visible' });
  // the phone shows the open conversation: the connection line is repeated over it
  await A.page.locator('#chat-conn', { hasText: 'Offline — showing saved messages' }).waitFor();
  assert.equal(await A.page.locator('#conn').textContent(), 'Offline — showing saved messages');
  assert.notEqual(await A.page.locator('#conn').getAttribute('data-state'), 'online');
  await waitForText(A.page, 'hi back from bo');
  assert.deepEqual(await texts(A.page), ['hello from ann', 'hi back from bo']);
  assert.equal(await A.page.locator('#chat-title').textContent(), 'Bo Online', 'the name comes from what was saved');
  await A.page.getByRole('button', { name: 'Back to conversations' }).click();
  await A.page.locator('#conn', { hasText: 'Offline — showing saved messages' }).waitFor({ state: 'visible' });
  const names = await A.page.locator('#chat-list .ci-name').allTextContents();
  assert.deepEqual(names.sort(), ['Bo Online', 'Trip planning'], `the list: ${names}`);
  const trip = A.page.locator('#chat-list .chat-item', { hasText: 'Trip planning' });
  assert.equal(await trip.locator('.badge.unread').textContent(), '1', 'the unread count was saved');
  assert.match(await trip.locator('.ci-last').textContent(), /who brings the tent\?/);

  // (b) written offline: pending, kept in IndexedDB across a reload, sent once when back
  await openChat(A.page, 'Bo Online');
  await waitForText(A.page, 'hi back from bo');
  await send(A.page, 'written offline 1');
  await send(A.page, 'written offline 2');
  await A.page.locator('#msgs li.pending[data-state="sending"]').nth(1).waitFor();
  assert.deepEqual(await A.page.locator('#msgs li.pending .text').allTextContents(), ['written offline 1', 'written offline 2']);
  const outbox = await until('the outbox saved', async () => {
    const s = await savedOf(A.page, sa.user.id);
    return s && s.outbox.length === 2 && s.outbox;
  });
  assert.deepEqual(outbox.map((o) => o.text).sort(), ['written offline 1', 'written offline 2']);
  assert.equal(await A.page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('iyagi.outbox.')).length), 0,
    'the outbox is not in localStorage any more');
  await A.page.reload();
  await A.page.locator('#chat-conn', { hasText: 'Offline — showing saved messages' }).waitFor();
  await A.page.locator('#msgs li.pending[data-state="sending"]').nth(1).waitFor();
  assert.deepEqual(await A.page.locator('#msgs li.pending .text').allTextContents(), ['written offline 1', 'written offline 2'],
    'still pending after a reload, in order');
  // Bo writes meanwhile: Ann sees it once she is back
  await send(B.page, 'while you were away');
  await waitForText(B.page, 'while you were away');

  const sends = [];
  A.page.on('websocket', (ws) => ws.on('framesent', (f) => {
    try { const x = JSON.parse(f.payload); if (x.op === 'send') sends.push(x); } catch { /* not JSON */ }
  }));
  await A.context.setOffline(false);
  await A.page.locator('#conn[data-state="online"]').waitFor({ state: 'attached', timeout: 20000 });
  for (const t of ['written offline 1', 'written offline 2', 'while you were away']) await waitForText(A.page, t, 15000);
  await A.page.locator('#msgs li.pending').first().waitFor({ state: 'detached', timeout: 15000 });
  assert.equal(await A.page.locator('#conn').textContent(), 'Online');
  assert.equal(await A.page.locator('#chat-conn').isVisible(), false);
  for (const t of ['written offline 1', 'written offline 2']) await waitForText(B.page, t, 15000);
  await sleep(500);
  const want = ['hello from ann', 'hi back from bo', 'written offline 1', 'written offline 2', 'while you were away'];
  const ta = await texts(A.page);
  const tb = await texts(B.page);
  for (const t of want) {
    assert.equal(count(ta, t), 1, `Ann sees “${t}” once: ${JSON.stringify(ta)}`);
    assert.equal(count(tb, t), 1, `Bo sees “${t}” once: ${JSON.stringify(tb)}`);
  }
  const stored = await history(sa.token, direct);
  for (const t of want) assert.equal(count(stored.map((m) => m.text), t), 1, `stored once: ${t}`);
  // sent with the cmids they were given offline (so a resend could never make a second copy)
  for (const o of outbox) {
    const s = sends.filter((x) => x.text === o.text);
    assert.ok(s.length >= 1 && s.every((x) => x.cmid === o.cmid), `“${o.text}” went with its cmid: ${JSON.stringify(s)}`);
    const m = stored.find((x) => x.text === o.text);
    if (m.cmid !== undefined) assert.equal(m.cmid, o.cmid);
  }
  await until('the outbox emptied', async () => (await savedOf(A.page, sa.user.id)).outbox.length === 0);

  // (c) logout: nothing of Ann is left in IndexedDB (nor her read markers or outbox in localStorage)
  await A.page.getByRole('button', { name: 'Back to conversations' }).click();
  await A.page.getByRole('button', { name: 'Log out' }).click();
  await A.page.locator('#auth').waitFor({ state: 'visible' });
  await until('the user\'s database deleted', async () =>
    !(await A.page.evaluate(async () => (await indexedDB.databases()).map((d) => d.name))).includes(`iyagi.${sa.user.id}`));
  const left = await idbContents(A.page);
  const records = left.reduce((n, d) => n + Object.values(d.stores).reduce((x, y) => x + y, 0), 0);
  assert.equal(records, 0, `no records left in IndexedDB: ${JSON.stringify(left)}`);
  const keys = await A.page.evaluate(() => Object.keys(localStorage));
  assert.deepEqual(keys.filter((k) => k.includes(sa.user.id) || k.startsWith('iyagi.outbox') || k === 'iyagi.session'), [], `localStorage: ${keys}`);
  const cachedUrls = await A.page.evaluate(async () => {
    const out = [];
    for (const k of await caches.keys()) for (const r of await (await caches.open(k)).keys()) out.push(new URL(r.url).pathname);
    return out;
  });
  assert.ok(cachedUrls.every((u) => !u.startsWith('/v1/')), `only the shell is cached: ${cachedUrls}`);

  // offline, logged out: the login form, not someone's messages
  await A.context.setOffline(true);
  await A.page.reload();
  await A.page.locator('#auth').waitFor({ state: 'visible' });
  assert.equal(await A.page.locator('#app').isVisible(), false);
  await A.context.setOffline(false);
  assert.deepEqual([...A.page.errors, ...B.page.errors], []);
  await A.context.close();
  await B.context.close();
});

test('an outbox left in localStorage by the previous version is moved to IndexedDB once and sent once', async () => {
  const A = await newPerson(browser, server);
  const a = uname('mig'), b = uname('rat');
  const sa = await signUp(A.page, a, 'Mig');
  assert.equal((await api(server, 'POST', '/v1/users', { body: { username: b, password: PASSWORD } })).status, 201);
  await openDirect(A.page, b);
  await send(A.page, 'first');
  await waitForText(A.page, 'first');
  const channel = await A.page.evaluate(() => location.hash.slice(4));
  // what the previous version left: an unsent message in localStorage, then the page reopened
  await A.page.waitForFunction(() => !!navigator.serviceWorker.controller, null, { timeout: 15000 });
  await until('the list saved', async () => {
    const s = await savedOf(A.page, sa.user.id);
    return s && (s.meta.list || []).some((it) => it.channel.id === channel);
  });
  await A.context.setOffline(true);
  await A.page.evaluate(({ uid, channel }) => {
    localStorage.setItem(`iyagi.outbox.${uid}`, JSON.stringify([{ cmid: 'wlegacy0123456789abcdef', channel, text: 'from the old outbox', ts: Date.now(), owner: 'gone' }]));
  }, { uid: sa.user.id, channel });
  await A.page.reload();
  await A.page.locator('#msgs li.pending', { hasText: 'from the old outbox' }).waitFor();
  assert.equal(await A.page.evaluate((uid) => localStorage.getItem(`iyagi.outbox.${uid}`), sa.user.id), null, 'moved out of localStorage');
  await A.context.setOffline(false);
  await waitOnline(A.page, 20000);
  await waitForText(A.page, 'from the old outbox', 15000);
  await A.page.locator('#msgs li.pending').waitFor({ state: 'detached' });
  await A.page.reload();
  await waitOnline(A.page);
  await waitForText(A.page, 'from the old outbox');
  await sleep(300);
  assert.deepEqual(await texts(A.page), ['first', 'from the old outbox']);
  assert.deepEqual((await history(sa.token, channel)).map((m) => m.text), ['first', 'from the old outbox']);
  assert.deepEqual(A.page.errors, []);
  await A.context.close();
});

test('the server down (the network up): the app opens from the cache on what was saved, and catches up when it is back', async () => {
  const A = await newPerson(browser, server);
  const a = uname('sol'), b = uname('tam');
  const sa = await signUp(A.page, a, 'Sol');
  assert.equal((await api(server, 'POST', '/v1/users', { body: { username: b, password: PASSWORD } })).status, 201);
  await openDirect(A.page, b);
  await send(A.page, 'before the outage');
  await waitForText(A.page, 'before the outage');
  const channel = await A.page.evaluate(() => location.hash.slice(4));
  await A.page.waitForFunction(() => !!navigator.serviceWorker.controller, null, { timeout: 15000 });
  await until('the conversation saved', async () => {
    const s = await savedOf(A.page, sa.user.id);
    return s && s.convs.some((c) => c.id === channel && c.messages.length === 1);
  });

  await server.stop();
  await A.page.reload();
  await A.page.locator('#conn', { hasText: 'Offline — showing saved messages' }).waitFor();
  await waitForText(A.page, 'before the outage');
  await send(A.page, 'during the outage');
  await A.page.locator('#msgs li.pending[data-state="sending"]').waitFor();

  await server.up();
  const lb = (await api(server, 'POST', '/v1/sessions', { body: { username: b, password: PASSWORD } })).data;
  assert.equal((await api(server, 'POST', `/v1/channels/${channel}/messages`,
    { token: lb.token, body: { text: 'from tam meanwhile', cmid: 'tam-1' } })).status, 201);
  await waitOnline(A.page, 20000);
  await waitForText(A.page, 'during the outage', 15000);
  await waitForText(A.page, 'from tam meanwhile', 15000);
  await A.page.locator('#msgs li.pending').waitFor({ state: 'detached' });
  await sleep(300);
  const want = ['before the outage', 'during the outage', 'from tam meanwhile'];
  assert.deepEqual((await texts(A.page)).sort(), [...want].sort());
  assert.deepEqual((await history(sa.token, channel)).map((m) => m.text).sort(), [...want].sort());
  assert.deepEqual(A.page.errors, []);
  await A.context.close();
});

test('what is saved is bounded: the newest 200 messages of a conversation, the 50 conversations used last', async () => {
  const A = await newPerson(browser, server);
  const sa = await signUp(A.page, uname('cap'), 'Cap');
  const o = await api(server, 'POST', '/v1/users', { body: { username: uname('oth'), password: PASSWORD } });
  assert.equal(o.status, 201);
  const groups = [];
  for (let i = 0; i < 52; i++) {
    const r = await api(server, 'POST', '/v1/groups', { token: sa.token, body: { name: `Group ${i}`, members: [o.data.user.id] } });
    assert.equal(r.status, 201, JSON.stringify(r.data));
    groups.push(r.data.channel.id);
    const m = await api(server, 'POST', `/v1/channels/${r.data.channel.id}/messages`, { token: sa.token, body: { text: `hello ${i}`, cmid: `hi-${i}` } });
    assert.equal(m.status, 201);
  }
  const big = groups[51];
  for (let i = 1; i <= 229; i++) {
    const r = await api(server, 'POST', `/v1/channels/${big}/messages`, { token: sa.token, body: { text: `message ${i}`, cmid: `cap-${i}` } });
    assert.equal(r.status, 201);
  }
  for (const [i, id] of groups.entries()) {
    await A.page.evaluate((id) => { location.hash = `#/c/${id}`; }, id);
    await A.page.locator('#chat-title', { hasText: new RegExp(`^Group ${i}$`) }).waitFor();
    await A.page.locator('#msgs li[data-seq]').first().waitFor({ state: 'attached' });
  }
  // the big one: every message loaded into the page (scrolled back to the start)
  await A.page.waitForFunction(() => document.querySelectorAll('#msgs li.msg[data-seq]').length >= 50);
  for (let i = 0; i < 10 && (await A.page.locator('#msgs li.msg[data-seq]').count()) < 230; i++) {
    await A.page.locator('#log').evaluate((n) => { n.scrollTop = 0; });
    await sleep(300);
  }
  assert.equal(await A.page.locator('#msgs li.msg[data-seq]').count(), 230);
  const s = await until('50 conversations saved, the big one with its newest 200', async () => {
    const x = await savedOf(A.page, sa.user.id);
    const b = x && x.convs.find((c) => c.id === big);
    return x && x.convs.length === 50 && b && b.messages.length === 200 && x;
  });
  const b = s.convs.find((c) => c.id === big);
  assert.equal(b.messages.at(-1).text, 'message 229');
  const seqs = b.messages.map((m) => m.seq);
  assert.ok(seqs.every((q, i) => i === 0 || q === seqs[i - 1] + 1), 'the newest 200, in order, with no hole');
  assert.equal(b.top, seqs.at(-1));
  assert.equal(b.complete, false, 'not the whole history any more');
  const kept = new Set(s.convs.map((c) => c.id));
  assert.ok(!kept.has(groups[0]) && !kept.has(groups[1]), 'the two used first were dropped');
  assert.ok(groups.slice(2).every((id) => kept.has(id)));
  assert.deepEqual(A.page.errors, []);
  await A.context.close();
});
