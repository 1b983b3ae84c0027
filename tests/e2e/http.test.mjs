// http.test.mjs — the HTTP API: accounts, sessions, lookups, sending, sync, long polling,
// history, metrics, discovery, and the error shape.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, api, rawHttp, show, uname, signup, login, newUser, connectWs, ms, PASSWORD, isId,
} from './lib/harness.mjs';

// every test stops by itself: its waits are bounded, and so is the test
const T = { timeout: ms(120000) };

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.cleanup(); });

/** asserts status and the error body {"error":{"code","message"}} */
function assertError(r, status, code, what) {
  assert.equal(r.status, status, `${what}: status, got ${show(r)}`);
  assert.ok(r.body && typeof r.body === 'object', `${what}: body is JSON, got ${show(r)}`);
  assert.ok(r.body.error && typeof r.body.error === 'object', `${what}: body has "error", got ${show(r)}`);
  assert.equal(r.body.error.code, code, `${what}: error code, got ${show(r)}`);
  assert.equal(typeof r.body.error.message, 'string', `${what}: error message is a string, got ${show(r)}`);
}

async function t(fn) {
  try { await fn(); } catch (e) { throw srv.annotate(e); }
}

test('healthz answers 200', T, () => t(async () => {
  const r = await api(srv, 'GET', '/healthz');
  assert.equal(r.status, 200);
}));

test('signup validation and conflicts', T, () => t(async () => {
  const bad = [
    ['ab', 'too short'],
    ['a'.repeat(33), 'too long'],
    ['Abcdef', 'upper case'],
    ['abc def', 'space'],
    ['abc!', 'punctuation'],
    ['ab\u00e9cd', 'non-ascii'],
    ['', 'empty'],
  ];
  for (const [username, why] of bad) {
    const r = await api(srv, 'POST', '/v1/users', { body: { username, password: PASSWORD } });
    assertError(r, 400, 'bad_request', `username ${why} (${JSON.stringify(username)})`);
  }
  // missing fields
  assertError(await api(srv, 'POST', '/v1/users', { body: { password: PASSWORD } }), 400, 'bad_request', 'no username');
  assertError(await api(srv, 'POST', '/v1/users', { body: { username: uname('nopw') } }), 400, 'bad_request', 'no password');
  // password shorter than 8
  assertError(await api(srv, 'POST', '/v1/users', { body: { username: uname('shortpw'), password: '1234567' } }),
    400, 'bad_request', 'password of 7');

  // boundaries that are valid: 3 and 32 characters of [a-z0-9_.-], password of exactly 8
  const three = 'a-1'; // a fresh server: no other test uses names this short
  const r3 = await api(srv, 'POST', '/v1/users', { body: { username: three, password: '12345678' } });
  assert.equal(r3.status, 201, `3-char username ${three}: ${show(r3)}`);
  assert.equal(r3.body.user.username, three);
  const long = uname('x').padEnd(31, '-') + 'z';
  assert.equal(long.length, 32);
  const r32 = await api(srv, 'POST', '/v1/users', { body: { username: long, password: PASSWORD, display_name: 'Long Name' } });
  assert.equal(r32.status, 201, `32-char username: ${show(r32)}`);
  assert.ok(isId(r32.body.user.id), `user id is a string of digits: ${show(r32)}`);
  assert.equal(r32.body.user.username, long);
  assert.equal(r32.body.user.display_name, 'Long Name');

  // duplicate -> 409 conflict
  assertError(await api(srv, 'POST', '/v1/users', { body: { username: long, password: 'another password' } }),
    409, 'conflict', 'duplicate username');
}));

test('login failures, /v1/me, PATCH /v1/me, user lookup', T, () => t(async () => {
  const name = uname('alice');
  const user = await signup(srv, name, PASSWORD, 'Alice');
  assert.equal(user.username, name);
  assert.equal(user.display_name, 'Alice');

  assertError(await api(srv, 'POST', '/v1/sessions', { body: { username: name, password: 'wrong password' } }),
    401, 'unauthorized', 'wrong password');
  assertError(await api(srv, 'POST', '/v1/sessions', { body: { username: uname('nobody'), password: PASSWORD } }),
    401, 'unauthorized', 'unknown user');

  const s = await login(srv, name, PASSWORD, 'laptop');
  assert.equal(typeof s.token, 'string');
  assert.ok(s.token.length > 0);
  assert.equal(s.device, 'laptop');
  assert.deepEqual({ id: s.user.id, username: s.user.username }, { id: user.id, username: name });
  assert.equal(typeof s.ws_url, 'string');

  assertError(await api(srv, 'GET', '/v1/me'), 401, 'unauthorized', '/v1/me without token');
  assertError(await api(srv, 'GET', '/v1/me', { token: 'not-a-token' }), 401, 'unauthorized', '/v1/me with a bad token');
  assertError(await api(srv, 'GET', '/v1/me', { token: s.token + 'x' }), 401, 'unauthorized', '/v1/me with a changed token');

  const me = await api(srv, 'GET', '/v1/me', { token: s.token });
  assert.equal(me.status, 200, show(me));
  assert.deepEqual(me.body.user, { id: user.id, username: name, display_name: 'Alice' });

  const p = await api(srv, 'PATCH', '/v1/me', { token: s.token, body: { display_name: 'Alice Liddell \u{1F600}' } });
  assert.equal(p.status, 200, show(p));
  assert.equal(p.body.user.display_name, 'Alice Liddell \u{1F600}');
  const me2 = await api(srv, 'GET', '/v1/me', { token: s.token });
  assert.equal(me2.body.user.display_name, 'Alice Liddell \u{1F600}');

  const byId = await api(srv, 'GET', `/v1/users/${user.id}`, { token: s.token });
  assert.equal(byId.status, 200, show(byId));
  assert.deepEqual(byId.body.user, { id: user.id, username: name, display_name: 'Alice Liddell \u{1F600}' });
  const byName = await api(srv, 'GET', `/v1/users?username=${encodeURIComponent(name)}`, { token: s.token });
  assert.equal(byName.status, 200, show(byName));
  assert.equal(byName.body.user.id, user.id);
  assert.equal(byName.body.user.username, name);

  assertError(await api(srv, 'GET', `/v1/users?username=${uname('ghost')}`, { token: s.token }), 404, 'not_found', 'unknown username');
  assertError(await api(srv, 'GET', '/v1/users/12345', { token: s.token }), 404, 'not_found', 'unknown user id');
  assertError(await api(srv, 'GET', `/v1/users/${user.id}`), 401, 'unauthorized', 'lookup without token');
}));

test('unknown route -> 404; malformed and oversized JSON bodies', T, () => t(async () => {
  const a = await newUser(srv, 'bodies');
  const nf = await api(srv, 'GET', '/v1/no/such/route', { token: a.token });
  assert.equal(nf.status, 404, show(nf));
  assert.equal(nf.body?.error?.code, 'not_found', show(nf));
  const nf2 = await api(srv, 'GET', '/nothing-here');
  assert.equal(nf2.status, 404, show(nf2));

  assertError(await api(srv, 'POST', '/v1/users', { raw: '{"username":"abc","password":' }), 400, 'bad_request', 'truncated JSON');
  assertError(await api(srv, 'POST', '/v1/users', { raw: 'not json at all' }), 400, 'bad_request', 'not JSON');
  assertError(await api(srv, 'POST', '/v1/users', { raw: '[1,2,3]' }), 400, 'bad_request', 'JSON array instead of object');
  assertError(await api(srv, 'POST', '/v1/users', { raw: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]) }),
    400, 'bad_request', 'invalid UTF-8 in the body');
  assertError(await api(srv, 'PATCH', '/v1/me', { token: a.token, raw: '{"display_name": }' }), 400, 'bad_request', 'malformed PATCH');

  const b = await newUser(srv, 'bodiesb');
  // 3 MB of JSON, larger than any valid request (the largest text escaped is ~1.2 MB)
  const big = JSON.stringify({ text: 'a'.repeat(3 * 1024 * 1024), cmid: 'big' });
  const r = await rawHttp(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: big });
  assert.ok(r.status === 413 || r.status === 400, `oversized body: status 400 or 413, got ${show(r)}`);
  assert.equal(r.body?.error?.code, 'too_large', `oversized body: ${show(r)}`);
  // nothing was stored, and the server still answers
  const sy = await api(srv, 'GET', '/v1/sync?after=0', { token: b.token });
  assert.equal(sy.status, 200, show(sy));
  assert.deepEqual(sy.body.messages, []);
}));

test('metrics: Prometheus text with iyagi_ names', T, () => t(async () => {
  // make sure something was sent so that counters and the histogram have data
  const a = await newUser(srv, 'metra');
  const b = await newUser(srv, 'metrb');
  for (let i = 0; i < 3; i++) {
    const r = await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: { text: `metric ${i}`, cmid: `metric-${i}` } });
    assert.equal(r.status, 201, show(r));
  }
  const ws = await connectWs(srv, { token: a.token, label: 'metrics-ws' });
  try {
    const ack = await ws.request({ op: 'send', to: b.user.id, text: 'over ws', cmid: 'metric-ws' });
    assert.equal(ack.op, 'ack', JSON.stringify(ack));
    const r = await api(srv, 'GET', '/metrics');
    assert.equal(r.status, 200, show(r));
    assert.match(r.headers.get('content-type') || '', /^text\/plain/, 'Prometheus text content type');
    const text = r.text;
    const lines = text.split('\n').filter((l) => l && !l.startsWith('#'));
    assert.ok(lines.length > 0, 'some samples');
    for (const l of lines) {
      // label values are quoted and may hold braces (route="/v1/channels/{id}/messages")
      assert.match(l, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([^}"]|"([^"\\]|\\.)*")*\})? [-+0-9.eEaInNf]+( \d+)?$/,
        `sample line syntax: ${JSON.stringify(l)}`);
    }
    assert.ok(lines.some((l) => l.startsWith('iyagi_')), 'iyagi_ metrics present');
    assert.match(text, /^iyagi_\w*connection\w*(\{[^}]*\})? /m, 'a connections metric');
    assert.match(text, /^iyagi_\w*(commit|batch)\w*(\{[^}]*\})? /m, 'a commit batch size metric');
    assert.match(text, /^iyagi_\w*ack\w*_bucket\{[^}]*le="[^"]+"[^}]*\} \d+/m, 'an ack latency histogram with buckets');
    assert.match(text, /^iyagi_\w*ack\w*_bucket\{[^}]*le="\+Inf"[^}]*\} \d+/m, 'the +Inf bucket of the ack latency histogram');
    // a messages-stored counter that counts at least the 4 messages sent above
    const msgSamples = [...text.matchAll(/^(iyagi_\w*messages?\w*)(\{[^}]*\})? ([0-9.eE+]+)$/gm)]
      .filter((m) => !/_bucket$|_sum$|_count$/.test(m[1]));
    assert.ok(msgSamples.length > 0, `a messages metric; got:\n${text.slice(0, 3000)}`);
    assert.ok(msgSamples.some((m) => Number(m[3]) >= 4), `a messages-stored counter >= 4; got ${msgSamples.map((m) => m[0]).join(', ')}`);
    // the connections gauge sees our open socket
    const conn = [...text.matchAll(/^(iyagi_\w*connection\w*)(\{[^}]*\})? ([0-9.eE+]+)$/gm)];
    assert.ok(conn.some((m) => Number(m[3]) >= 1), `a connections metric >= 1 while a socket is open; got ${conn.map((m) => m[0]).join(', ')}`);
  } finally {
    ws.close();
  }
}));

test('discovery and ws_url from login', T, () => t(async () => {
  const d = await api(srv, 'GET', '/v1/discovery');
  assert.equal(d.status, 200, show(d));
  assert.equal(typeof d.body.ws_url, 'string', show(d));
  assert.match(d.body.ws_url, /^wss?:\/\//, 'ws_url is a WebSocket URL');
  assert.ok(d.body.node !== undefined && d.body.node !== null, `discovery has node: ${show(d)}`);
  assert.ok(['string', 'number'].includes(typeof d.body.node), `node is a string or number: ${show(d)}`);

  const a = await newUser(srv, 'disco');
  assert.match(a.ws_url, /^wss?:\/\//, 'login ws_url is a WebSocket URL');
  const ws = await connectWs(a.ws_url, { token: a.token, label: 'via ws_url' });
  try {
    assert.equal(ws.ready.op, 'ready');
    assert.equal(ws.ready.user.id, a.user.id);
    const hb = await ws.request({ op: 'hb' });
    assert.equal(hb.op, 'hb');
  } finally {
    ws.close();
  }
}));

test('HTTP send to a user and to a channel; idempotent cmid; sync with pos continuity', T, () => t(async () => {
  const a = await newUser(srv, 'senda');
  const b = await newUser(srv, 'sendb');

  const r1 = await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: { text: 'hello b', cmid: 'c1' } });
  assert.equal(r1.status, 201, show(r1));
  const m1 = r1.body.message;
  assert.ok(isId(m1.id), `message id is a string of digits: ${show(r1)}`);
  assert.ok(isId(m1.channel), `channel id is a string of digits: ${show(r1)}`);
  assert.equal(m1.seq, 1);
  assert.equal(m1.text, 'hello b');
  assert.equal(m1.from, a.user.id);
  assert.equal(m1.cmid, 'c1');
  assert.equal(typeof m1.ts, 'number');
  assert.ok(Math.abs(m1.ts - Date.now()) < 10 * 60 * 1000, `ts is ms since the epoch: ${m1.ts}`);

  // to the channel (b answers)
  const r2 = await api(srv, 'POST', `/v1/channels/${m1.channel}/messages`, { token: b.token, body: { text: 'hello a', cmid: 'c1' } });
  assert.equal(r2.status, 201, show(r2));
  const m2 = r2.body.message;
  assert.ok(isId(m2.id));
  assert.equal(m2.channel, m1.channel, 'one direct channel per pair');
  assert.equal(m2.seq, 2);
  assert.equal(m2.text, 'hello a');
  assert.equal(m2.from, b.user.id);
  assert.ok(BigInt(m2.id) > BigInt(m1.id), 'ids are time-sortable');

  // b -> a by user id lands in the same channel
  const r3 = await api(srv, 'POST', `/v1/users/${a.user.id}/messages`, { token: b.token, body: { text: 'third', cmid: 'c2' } });
  assert.equal(r3.status, 201, show(r3));
  assert.equal(r3.body.message.channel, m1.channel);
  assert.equal(r3.body.message.seq, 3);

  // same cmid again (same user) -> same message, nothing new
  const again = await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: { text: 'hello b', cmid: 'c1' } });
  assert.ok(again.status === 201 || again.status === 200, show(again));
  assert.equal(again.body.message.id, m1.id);
  assert.equal(again.body.message.seq, 1);
  assert.equal(again.body.message.channel, m1.channel);

  // validation of sends
  assertError(await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: { text: '', cmid: 'empty' } }),
    400, 'bad_request', 'empty text');
  assertError(await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { body: { text: 'x' } }), 401, 'unauthorized', 'send without token');
  assertError(await api(srv, 'POST', '/v1/users/99999/messages', { token: a.token, body: { text: 'x', cmid: 'nf' } }),
    404, 'not_found', 'send to unknown user');

  // sync: both inboxes hold exactly the 3 messages with pos 1, 2, 3
  for (const [who, u] of [['a', a], ['b', b]]) {
    const s = await api(srv, 'GET', '/v1/sync?after=0', { token: u.token });
    assert.equal(s.status, 200, show(s));
    assert.deepEqual(s.body.messages.map((m) => m.pos), [1, 2, 3], `${who}'s inbox pos`);
    assert.deepEqual(s.body.messages.map((m) => m.id), [m1.id, m2.id, r3.body.message.id], `${who}'s inbox ids`);
    assert.deepEqual(s.body.messages.map((m) => m.seq), [1, 2, 3]);
    assert.deepEqual(s.body.messages.map((m) => m.text), ['hello b', 'hello a', 'third']);
    assert.equal(s.body.pos, 3, `${who}'s sync pos`);
    const s2 = await api(srv, 'GET', '/v1/sync?after=1&limit=1', { token: u.token });
    assert.equal(s2.status, 200, show(s2));
    assert.deepEqual(s2.body.messages.map((m) => m.pos), [2]);
    assert.equal(s2.body.pos, 2);
    const s3 = await api(srv, 'GET', '/v1/sync?after=3', { token: u.token });
    assert.deepEqual(s3.body.messages, []);
    assert.equal(s3.body.pos, 3);
  }
}));

test('long polling: held until a message arrives, empty after the wait otherwise', T, () => t(async () => {
  const a = await newUser(srv, 'polla');
  const b = await newUser(srv, 'pollb');
  const first = await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: { text: 'first', cmid: 'p1' } });
  assert.equal(first.status, 201, show(first));
  const s0 = await api(srv, 'GET', '/v1/sync?after=0', { token: b.token });
  const P = s0.body.pos;
  assert.equal(P, 1);

  // nothing new: wait=1 returns an empty answer after about a second
  const t0 = Date.now();
  const empty = await api(srv, 'GET', `/v1/sync?after=${P}&wait=1`, { token: b.token });
  const took = Date.now() - t0;
  assert.equal(empty.status, 200, show(empty));
  assert.deepEqual(empty.body.messages, []);
  assert.equal(empty.body.pos, P);
  assert.ok(took >= 800, `wait=1 held the request (took ${took} ms)`);

  // a poll with wait=20 is answered as soon as a sends
  const WAIT = 20;
  const poll = api(srv, 'GET', `/v1/sync?after=${P}&wait=${WAIT}`, { token: b.token, timeoutMs: ms(60000) });
  await new Promise((r) => setTimeout(r, 500));
  const tSend = Date.now();
  const sent = await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: { text: 'wake up', cmid: 'p2' } });
  assert.equal(sent.status, 201, show(sent));
  const got = await poll;
  const after = Date.now() - tSend;
  assert.equal(got.status, 200, show(got));
  assert.equal(got.body.messages.length, 1, `the poll returned the new message: ${show(got)}`);
  assert.equal(got.body.messages[0].id, sent.body.message.id);
  assert.equal(got.body.messages[0].text, 'wake up');
  assert.equal(got.body.messages[0].pos, P + 1);
  assert.equal(got.body.pos, P + 1);
  assert.ok(after < (WAIT - 5) * 1000, `the poll returned well before its wait of ${WAIT} s (${after} ms after the send)`);
}));

test('history paging both ways, limits, and forbidden for non-members', T, () => t(async () => {
  const a = await newUser(srv, 'hista');
  const b = await newUser(srv, 'histb');
  const c = await newUser(srv, 'histc');
  const ids = [];
  let channel;
  for (let i = 1; i <= 7; i++) {
    const r = await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: { text: `h${i}`, cmid: `h${i}` } });
    assert.equal(r.status, 201, show(r));
    assert.equal(r.body.message.seq, i);
    ids.push(r.body.message.id);
    channel = r.body.message.channel;
  }
  const H = (q, token = a.token) => api(srv, 'GET', `/v1/channels/${channel}/messages?${q}`, { token });
  const seqs = (r) => { assert.equal(r.status, 200, show(r)); return r.body.messages.map((m) => m.seq); };

  // newest first with before_seq
  assert.deepEqual(seqs(await H('before_seq=8&limit=3')), [7, 6, 5]);
  assert.deepEqual(seqs(await H('before_seq=5&limit=3')), [4, 3, 2]);
  assert.deepEqual(seqs(await H('before_seq=2&limit=3')), [1]);
  assert.deepEqual(seqs(await H('before_seq=1&limit=3')), []);
  // oldest first with after_seq
  assert.deepEqual(seqs(await H('after_seq=0&limit=3')), [1, 2, 3]);
  assert.deepEqual(seqs(await H('after_seq=3&limit=3')), [4, 5, 6]);
  assert.deepEqual(seqs(await H('after_seq=6&limit=3')), [7]);
  assert.deepEqual(seqs(await H('after_seq=7&limit=3')), []);
  // the messages themselves
  const all = await H('after_seq=0&limit=200');
  assert.deepEqual(all.body.messages.map((m) => m.id), ids);
  assert.deepEqual(all.body.messages.map((m) => m.text), ids.map((_, i) => `h${i + 1}`));
  assert.ok(all.body.messages.every((m) => m.channel === channel && m.from === a.user.id));
  // b (the other member) reads the same history
  assert.deepEqual(seqs(await H('after_seq=0&limit=200', b.token)), [1, 2, 3, 4, 5, 6, 7]);
  // limit bounds: 1 and 200 are fine, 0 and 201 are not
  assert.deepEqual(seqs(await H('after_seq=0&limit=1')), [1]);
  assertError(await H('after_seq=0&limit=0'), 400, 'bad_request', 'limit=0');
  assertError(await H('after_seq=0&limit=201'), 400, 'bad_request', 'limit=201');
  assertError(await H('before_seq=8&limit=201'), 400, 'bad_request', 'limit=201 with before_seq');

  // c is not a member
  assertError(await H('after_seq=0&limit=10', c.token), 403, 'forbidden', 'history of another users\' channel');
  assertError(await api(srv, 'POST', `/v1/channels/${channel}/messages`, { token: c.token, body: { text: 'intrude', cmid: 'x' } }),
    403, 'forbidden', 'send into another users\' channel');
  // and nothing was added
  assert.deepEqual(seqs(await H('before_seq=100&limit=1')), [7]);
}));
