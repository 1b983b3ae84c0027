// search.test.mjs — GET /v1/search (contract "Message features", Search): substring matching
// for Korean, English in any case and emoji, over the caller's own channels only, ranked, with
// snippets and highlights; bad input; what the index must never show (edited-away words,
// deleted messages, channels one was removed from); and every acknowledged message findable
// after a SIGKILL (the indexer catches up from its cursor).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, api, show, newUser, ms, sleep, assertHttpError, UNKNOWN_ID, mapLimit,
} from './lib/harness.mjs';

const T = { timeout: ms(120000) };
let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.cleanup(); });

const search = (u, params) => api(srv, 'GET', `/v1/search?${new URLSearchParams(params)}`, { token: u.token });

/** search until `ok(results)` holds (the index lags the ack by up to ~a quarter second) */
async function searchUntil(u, params, ok, what, timeoutMs = ms(10000)) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await search(u, params);
    assert.equal(r.status, 200, `${what}: ${show(r)}`);
    if (ok(r.body.results)) return r.body.results;
    if (Date.now() > until) assert.fail(`${what}: still ${JSON.stringify(r.body.results).slice(0, 800)}`);
    await sleep(50);
  }
}
const texts = (rs) => rs.map((x) => x.message.text);

async function sendTo(from, to, text) {
  const r = await api(srv, 'POST', `/v1/users/${to.user.id}/messages`, { token: from.token, body: { text } });
  assert.equal(r.status, 201, show(r));
  return r.body.message;
}
async function sendIn(from, channel, text) {
  const r = await api(srv, 'POST', `/v1/channels/${channel}/messages`, { token: from.token, body: { text } });
  assert.equal(r.status, 201, show(r));
  return r.body.message;
}

test('Korean, English in any case and emoji; ranked results with snippets; only the caller\'s channels', T, async () => {
  const [a, b, c] = [await newUser(srv, 'sa'), await newUser(srv, 'sb'), await newUser(srv, 'sc')];
  const ko = await sendTo(a, b, '안녕하세요 반갑습니다');
  await sendTo(b, a, 'Hello World');
  await sendTo(a, b, 'party 🎉 time');
  await sendTo(a, b, 'the quick brown fox jumps');
  const bc = await sendTo(b, c, 'hello from b to c, secret');
  const ab = ko.channel;

  let rs = await searchUntil(a, { q: '안녕' }, (x) => x.length === 1, 'two Korean syllables');
  assert.equal(rs[0].message.id, ko.id);
  assert.equal(rs[0].message.text, '안녕하세요 반갑습니다', 'the whole message comes with its snippet');
  assert.equal(rs[0].snippet, '안녕하세요 반갑습니다');
  assert.deepEqual(rs[0].highlights, [[0, 2]]);
  rs = await searchUntil(a, { q: '하세요' }, (x) => x.length === 1, 'inside a Korean word');
  rs = await searchUntil(a, { q: 'WORLD' }, (x) => x.length === 1, 'case-insensitive');
  assert.deepEqual(rs[0].highlights, [[6, 11]]);
  rs = await searchUntil(a, { q: '🎉 t' }, (x) => x.length === 1, 'emoji');
  // what the indexer took in is counted (make bench waits on it between runs): all five
  // messages, once the indexer's next batch has run (it waits 250 ms after one that took all)
  let indexed = 0;
  for (const until = Date.now() + ms(10000); indexed < 5 && Date.now() < until; await sleep(50)) {
    const m = await (await fetch(`${srv.url}/metrics`)).text();
    indexed = Number(/^iyagi_search_indexed_total (\d+)$/m.exec(m)?.[1]);
  }
  assert.ok(indexed >= 5, `iyagi_search_indexed_total counts the indexed messages: ${indexed}`);
  const sn = [...rs[0].snippet];
  assert.equal(sn.slice(rs[0].highlights[0][0], rs[0].highlights[0][1]).join(''), '🎉 t', 'highlights count code points');

  // the caller's channels only
  rs = await searchUntil(a, { q: 'hello' }, (x) => x.length === 1, 'a: not b and c\'s chat');
  assert.deepEqual(texts(rs), ['Hello World']);
  rs = await searchUntil(c, { q: 'hello' }, (x) => x.length === 1, 'c: only its own chat');
  assert.equal(rs[0].message.id, bc.id);
  rs = await searchUntil(b, { q: 'hello' }, (x) => x.length === 2, 'b: both of its chats');
  rs = await searchUntil(b, { q: 'hello', channel: ab }, (x) => x.length === 1, 'b in one channel');
  assert.equal(rs[0].message.text, 'Hello World');
  rs = await searchUntil(b, { q: 'secret' }, (x) => x.length === 1, 'b finds b-c');
  rs = await searchUntil(a, { q: 'secret' }, (x) => x.length === 0, 'a never does');

  // limit, before, and a substring that is not in any message
  for (let i = 0; i < 5; i++) await sendTo(a, b, `lunch plan number ${i}`);
  rs = await searchUntil(a, { q: 'lunch plan' }, (x) => x.length === 5, 'five of them');
  rs = await searchUntil(a, { q: 'lunch plan', limit: 2 }, (x) => x.length === 2, 'limit');
  const ids = (await search(a, { q: 'lunch plan' })).body.results.map((x) => BigInt(x.message.id)).sort((x, y) => (x < y ? -1 : 1));
  rs = await searchUntil(a, { q: 'lunch plan', before: String(ids[2]) }, (x) => x.length === 2, 'before an id: older ones');
  assert.ok(rs.every((x) => BigInt(x.message.id) < ids[2]));
  rs = await searchUntil(a, { q: 'brown quick' }, (x) => x.length === 0, 'a substring, not a bag of words');
  rs = await searchUntil(a, { q: 'fox OR hello' }, (x) => x.length === 0, 'no query syntax');
  rs = await searchUntil(a, { q: '100%' }, (x) => x.length === 0, 'LIKE wildcards are text');

  // ranked: where the query is a whole word comes before where it is inside one (PostgreSQL:
  // word similarity; SQLite: bm25) — both put the exact short message first
  await sendTo(a, b, 'cat');
  await sendTo(a, b, 'concatenate these long strings of words together please, a category of its own');
  rs = await searchUntil(a, { q: 'cat' }, (x) => x.length === 2, 'two matches');
  assert.equal(rs[0].message.text, 'cat', `the best match first: ${JSON.stringify(texts(rs))}`);

  // a long message: the snippet is the text around the match, cut with an ellipsis
  const long = `${'앞'.repeat(200)} needle ${'뒤'.repeat(200)}`;
  await sendTo(a, b, long);
  rs = await searchUntil(a, { q: 'NEEDLE' }, (x) => x.length === 1, 'in a long message');
  assert.ok(rs[0].snippet.startsWith('…') && rs[0].snippet.endsWith('…'), rs[0].snippet);
  assert.ok([...rs[0].snippet].length < 80, 'a snippet, not the message');
  const h = rs[0].highlights[0];
  assert.equal([...rs[0].snippet].slice(h[0], h[1]).join(''), 'needle');
  assert.equal(rs[0].message.text, long);
});

test('bad input gets a clear error', T, async () => {
  const [a, b, c] = [await newUser(srv, 'sd'), await newUser(srv, 'se'), await newUser(srv, 'sf')];
  const m = await sendTo(b, c, 'not for a');
  const bad = [
    [{}, 'no q'], [{ q: '' }, 'empty'], [{ q: 'a' }, 'one code point'], [{ q: '안' }, 'one syllable'],
    [{ q: 'x'.repeat(101) }, '101 code points'], [{ q: 'a\nb' }, 'a control character'],
    [{ q: 'ok', limit: '0' }, 'limit 0'], [{ q: 'ok', limit: '101' }, 'limit 101'], [{ q: 'ok', limit: 'x' }, 'limit x'],
    [{ q: 'ok', channel: 'abc' }, 'a channel that is no id'], [{ q: 'ok', before: 'yesterday' }, 'before that is no id'],
  ];
  for (const [p, what] of bad) assertHttpError(await search(a, p), 400, 'bad_request', what);
  const r = await api(srv, 'GET', '/v1/search?q=%FF%FE', { token: a.token });
  assertHttpError(r, 400, 'bad_request', 'not UTF-8');
  assertHttpError(await search(a, { q: 'not for', channel: m.channel }), 403, 'forbidden', 'someone else\'s channel');
  assertHttpError(await search(a, { q: 'not for', channel: UNKNOWN_ID }), 404, 'not_found', 'no such channel');
  assertHttpError(await api(srv, 'GET', '/v1/search?q=hello'), 401, 'unauthorized', 'no token');
  assertHttpError(await api(srv, 'GET', '/v1/search?q=hello', { token: 'nope' }), 401, 'unauthorized', 'a bad token');
  const ok = await search(a, { q: 'x'.repeat(100) });
  assert.equal(ok.status, 200, `100 code points: ${show(ok)}`);
  assert.deepEqual(ok.body, { results: [] });
});

test('what search never shows: edited-away words, deleted messages, channels one was removed from', T, async () => {
  const [a, b, c] = [await newUser(srv, 'sg'), await newUser(srv, 'sh'), await newUser(srv, 'si')];
  const g = await api(srv, 'POST', '/v1/groups', { token: a.token, body: { name: 'plans', members: [b.user.id, c.user.id] } });
  assert.equal(g.status, 201, show(g));
  const ch = g.body.channel.id;
  const draft = await sendIn(a, ch, 'budget draft one');
  const byC = await sendIn(c, ch, 'budget from c');
  await searchUntil(b, { q: 'budget' }, (x) => x.length === 2, 'both indexed');

  // an edit: the old words are never found again (even before the index catches up), the new ones are
  let r = await api(srv, 'PATCH', `/v1/messages/${draft.id}`, { token: a.token, body: { text: 'final plan one' } });
  assert.equal(r.status, 200, show(r));
  r = await search(b, { q: 'draft' });
  assert.deepEqual(r.body.results, [], 'at once after the edit');
  const rs = await searchUntil(b, { q: 'final plan' }, (x) => x.length === 1, 'the new text');
  assert.ok(rs[0].message.edited_at > 0);
  // a delete (the owner's of a member's message): never found again
  r = await api(srv, 'DELETE', `/v1/messages/${byC.id}`, { token: a.token });
  assert.equal(r.status, 204, show(r));
  r = await search(b, { q: 'from c' });
  assert.deepEqual(r.body.results, [], 'at once after the delete');
  await sleep(600);
  r = await search(b, { q: 'budget' });
  assert.deepEqual(r.body.results, [], 'nor later');

  // removed: b finds nothing of the group any more (nor what is sent after), and may not ask for it
  await sendIn(a, ch, 'before removal: zebra');
  await searchUntil(b, { q: 'zebra' }, (x) => x.length === 1, 'b, a member');
  r = await api(srv, 'DELETE', `/v1/channels/${ch}/members/${b.user.id}`, { token: a.token });
  assert.ok(r.status === 204 || r.status === 200, show(r));
  await sendIn(a, ch, 'after removal: zebra secret');
  await searchUntil(c, { q: 'zebra' }, (x) => x.length === 2, 'c, still a member');
  r = await search(b, { q: 'zebra' });
  assert.deepEqual(r.body.results, [], 'b after the removal');
  assertHttpError(await search(b, { q: 'zebra', channel: ch }), 403, 'forbidden', 'b asking for the group');
});

test('every acknowledged message is findable after a SIGKILL: the indexer catches up from its cursor', T, async () => {
  const [a, b] = [await newUser(srv, 'sj'), await newUser(srv, 'sk')];
  const n = 200;
  const acked = [];
  await mapLimit([...Array(n).keys()], 8, async (i) => {
    const m = await sendTo(a, b, `crash test zq${i}q 검색${i}`);
    acked.push({ i, id: m.id });
  });
  await srv.kill();        // right after the last ack: the index lags it
  await srv.start();
  const [a2] = [{ token: (await api(srv, 'POST', '/v1/sessions', { body: { username: a.username, password: a.password } })).body.token }];
  await searchUntil(a2, { q: 'crash test', limit: 100 }, (x) => x.length === 100, 'caught up (a page)');
  const missing = [];
  await mapLimit(acked, 8, async ({ i, id }) => {
    const r = await searchUntil(a2, { q: `zq${i}q` }, (x) => x.length >= 1, `message ${i}`);
    if (r.length !== 1 || r[0].message.id !== id) missing.push(i);
  });
  assert.deepEqual(missing, [], 'every acknowledged message found by its own word');
  const rs = await searchUntil(a2, { q: '검색19' }, (x) => x.length === 11, 'Korean after the restart: 19 and 190..199');
  assert.ok(rs.every((x) => /검색19/.test(x.message.text)));
});
