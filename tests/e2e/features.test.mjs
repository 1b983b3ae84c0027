// features.test.mjs — message features of the contract ("Message features"), the parts built so
// far: history around a message (around_seq, HTTP and WebSocket), every member's read seq in
// GET /v1/channels/{id}, live friend notices, blocking, sessions, password, account deletion,
// mentions, edit and delete. With their failure modes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, api, show, newUser, newDevice, connectWs, ms, PASSWORD } from './lib/harness.mjs';

const T = { timeout: ms(60000) };
let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.cleanup(); });

async function channelOf(a, b, n) {
  let channel = null;
  for (let i = 1; i <= n; i++) {
    const r = await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: { text: `m${i}`, cmid: `c${i}` } });
    assert.equal(r.status, 201, show(r));
    channel = r.body.message.channel;
  }
  return channel;
}

const seqs = (r) => r.body.messages.map((m) => m.seq);

test('history around a message: oldest first, the message and its neighbours, at both ends; bad input refused', T, async () => {
  const [a, b] = [await newUser(srv, 'ara'), await newUser(srv, 'arb')];
  const ch = await channelOf(a, b, 30);
  const get = (q) => api(srv, 'GET', `/v1/channels/${ch}/messages?${q}`, { token: a.token });

  let r = await get('around_seq=15&limit=5');
  assert.equal(r.status, 200, show(r));
  assert.deepEqual(seqs(r), [13, 14, 15, 16, 17]);
  assert.deepEqual(r.body.messages.map((m) => m.text), ['m13', 'm14', 'm15', 'm16', 'm17']);
  r = await get('around_seq=15&limit=4');
  assert.deepEqual(seqs(r), [13, 14, 15, 16], 'an even page: one more older than newer');
  r = await get('around_seq=1&limit=5');
  assert.deepEqual(seqs(r), [1, 2, 3, 4, 5], 'at the start: newer ones fill the page');
  r = await get('around_seq=30&limit=5');
  assert.deepEqual(seqs(r), [26, 27, 28, 29, 30], 'at the end: older ones fill the page');
  r = await get('around_seq=1000&limit=3');
  assert.deepEqual(seqs(r), [28, 29, 30], 'past the end: the newest page, oldest first');
  r = await get('around_seq=7&limit=1');
  assert.deepEqual(seqs(r), [7]);
  r = await get('around_seq=15');
  assert.equal(r.body.messages.length, 30, 'default limit (50): the whole channel');

  for (const q of ['around_seq=0', 'around_seq=-1', 'around_seq=x', 'around_seq=5&before_seq=9', 'around_seq=5&after_seq=1', 'around_seq=5&limit=0', 'around_seq=5&limit=201']) {
    const bad = await get(q);
    assert.equal(bad.status, 400, `${q}: ${show(bad)}`);
    assert.equal(bad.body.error.code, 'bad_request');
  }
  const stranger = await newUser(srv, 'arc');
  const f = await api(srv, 'GET', `/v1/channels/${ch}/messages?around_seq=5`, { token: stranger.token });
  assert.equal(f.status, 403, `a non-member: ${show(f)}`);

  const w = await connectWs(srv, { token: b.token, label: 'B' });
  try {
    const p = await w.request({ op: 'history', channel: ch, around_seq: 20, limit: 3 });
    assert.equal(p.op, 'batch', JSON.stringify(p));
    assert.deepEqual(p.messages.map((m) => m.seq), [19, 20, 21]);
    for (const bad of [{ around_seq: 0 }, { around_seq: 3, before_seq: 5 }, { around_seq: 3, after_seq: 1 }, { around_seq: 'x' }]) {
      const e = await w.request({ op: 'history', channel: ch, ...bad });
      assert.equal(e.op, 'error', JSON.stringify(e));
      assert.equal(e.code, 'bad_request');
    }
  } finally { w.terminate(); }
});

test('GET /v1/channels/{id} carries every member\'s read seq, kept across reconnects', T, async () => {
  const [a, b, c] = [await newUser(srv, 'rda'), await newUser(srv, 'rdb'), await newUser(srv, 'rdc')];
  const g = await api(srv, 'POST', '/v1/groups', { token: a.token, body: { name: 'readers', members: [b.user.id, c.user.id] } });
  assert.equal(g.status, 201, show(g));
  const ch = g.body.channel.id;
  let last = null;
  for (let i = 0; i < 5; i++) {
    last = await api(srv, 'POST', `/v1/channels/${ch}/messages`, { token: a.token, body: { text: `g${i}`, cmid: `g${i}` } });
    assert.equal(last.status, 201, show(last));
  }
  const top = last.body.message.seq;
  const wb = await connectWs(srv, { token: b.token, label: 'B' });
  const wa = await connectWs(srv, { token: a.token, label: 'A' });
  try {
    const receipt = wa.waitFor((f) => f.op === 'receipt' && f.user === b.user.id, { what: 'B\'s receipt' });
    wb.send({ op: 'read', channel: ch, seq: top - 2 });
    await receipt;   // stored before it is announced
  } finally { wb.terminate(); wa.terminate(); }
  const r = await api(srv, 'GET', `/v1/channels/${ch}`, { token: c.token });
  assert.equal(r.status, 200, show(r));
  assert.equal(r.body.channel.id, ch);
  const read = Object.fromEntries(r.body.read.map((x) => [x.user_id, x.seq]));
  assert.equal(Object.keys(read).length, 3, 'one entry per member');
  assert.equal(read[a.user.id], top, 'the sender has read what it sent');
  assert.equal(read[b.user.id], top - 2);
  assert.equal(read[c.user.id], 0, 'never read: 0');
  const stranger = await newUser(srv, 'rdd');
  assert.equal((await api(srv, 'GET', `/v1/channels/${ch}`, { token: stranger.token })).status, 403);
});

test('friend requests, acceptances and removals reach the other user\'s open sockets at once', T, async () => {
  const [a, b] = [await newUser(srv, 'fna'), await newUser(srv, 'fnb')];
  const wb = await connectWs(srv, { token: b.token, label: 'B' });
  const wa = await connectWs(srv, { token: a.token, label: 'A' });
  try {
    const friendFrame = (w, state) => w.waitFor((f) => f.op === 'friend' && f.state === state, { what: `friend ${state}` });
    let seen = friendFrame(wb, 'incoming');
    assert.equal((await api(srv, 'PUT', `/v1/friends/${b.user.id}`, { token: a.token })).status, 200);
    let f = await seen;
    assert.equal(f.user.id, a.user.id);
    assert.equal(f.user.username, a.username);
    assert.equal(f.user.password, undefined);

    seen = friendFrame(wa, 'friends');
    assert.equal((await api(srv, 'PUT', `/v1/friends/${a.user.id}`, { token: b.token })).status, 200);
    f = await seen;
    assert.equal(f.user.id, b.user.id);

    seen = friendFrame(wb, 'none');
    assert.equal((await api(srv, 'DELETE', `/v1/friends/${b.user.id}`, { token: a.token })).status, 204);
    f = await seen;
    assert.equal(f.user.id, a.user.id);

    // a request to nobody, or to oneself, notifies nobody and fails as before
    assert.equal((await api(srv, 'PUT', `/v1/friends/${a.user.id}`, { token: a.token })).status, 400);
    assert.equal((await api(srv, 'PUT', '/v1/friends/123456789', { token: a.token })).status, 404);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(wa.all.filter((x) => x.op === 'friend').length, 1, 'A got only its own notice');
  } finally { wa.terminate(); wb.terminate(); }
});

test('blocking: the blocked user can neither start nor continue a direct chat with its blocker, nor befriend it; listed and reversible', T, async () => {
  const [a, b, c] = [await newUser(srv, 'bla'), await newUser(srv, 'blb'), await newUser(srv, 'blc')];
  const dm = (from, to, text, cmid) => api(srv, 'POST', `/v1/users/${to.user.id}/messages`, { token: from.token, body: { text, cmid } });
  let r = await dm(b, a, 'hello a', 'b1');
  assert.equal(r.status, 201, show(r));
  const ch = r.body.message.channel;
  const first = r.body.message.id;
  // friends first: a block ends the friendship (and presence with it)
  assert.equal((await api(srv, 'PUT', `/v1/friends/${b.user.id}`, { token: a.token })).status, 200);
  assert.equal((await api(srv, 'PUT', `/v1/friends/${a.user.id}`, { token: b.token })).status, 200);

  for (const [id, code] of [[a.user.id, 400], ['123456789', 404]]) {
    const x = await api(srv, 'PUT', `/v1/blocks/${id}`, { token: a.token });
    assert.equal(x.status, code, show(x));
  }
  assert.equal((await api(srv, 'PUT', `/v1/blocks/${b.user.id}`, { token: a.token })).status, 204);
  assert.equal((await api(srv, 'PUT', `/v1/blocks/${b.user.id}`, { token: a.token })).status, 204, 'again: the same');
  r = await api(srv, 'GET', '/v1/blocks', { token: a.token });
  assert.equal(r.status, 200, show(r));
  assert.deepEqual(r.body.blocked.map((u) => u.id), [b.user.id]);
  assert.equal(r.body.blocked[0].username, b.username);
  assert.deepEqual((await api(srv, 'GET', '/v1/blocks', { token: b.token })).body.blocked, [], 'one direction');
  const fa = await api(srv, 'GET', '/v1/friends', { token: a.token });
  assert.equal(fa.body.friends.length, 0, 'the friendship ended');
  const pres = await api(srv, 'GET', `/v1/presence?users=${a.user.id}`, { token: b.token });
  assert.equal(pres.status, 200);
  assert.equal(JSON.stringify(pres.body).includes(a.user.id), false, 'no presence of the blocker');
  const fr = await api(srv, 'PUT', `/v1/friends/${a.user.id}`, { token: b.token });
  assert.equal(fr.status, 403, `befriending the blocker: ${show(fr)}`);
  assert.equal(fr.body.error.code, 'forbidden');

  const before = (await api(srv, 'GET', `/v1/channels/${ch}/messages`, { token: a.token })).body.messages.length;
  r = await dm(b, a, 'are you there', 'b2');
  assert.equal(r.status, 403, `by user: ${show(r)}`);
  assert.equal(r.body.error.code, 'forbidden');
  r = await api(srv, 'POST', `/v1/channels/${ch}/messages`, { token: b.token, body: { text: 'by channel', cmid: 'b3' } });
  assert.equal(r.status, 403, `by channel: ${show(r)}`);
  const wb = await connectWs(srv, { token: b.token, label: 'B' });
  try {
    for (const target of [{ to: a.user.id }, { channel: ch }]) {
      const e = await wb.request({ op: 'send', ...target, text: 'over ws', cmid: `bw${Object.keys(target)[0]}` });
      assert.equal(e.op, 'error', JSON.stringify(e));
      assert.equal(e.code, 'forbidden');
    }
  } finally { wb.terminate(); }
  assert.equal((await api(srv, 'GET', `/v1/channels/${ch}/messages`, { token: a.token })).body.messages.length, before, 'nothing stored');
  // the blocker still writes; a cmid stored before the block still answers with its message
  assert.equal((await dm(a, b, 'I can still write', 'a1')).status, 201);
  r = await dm(b, a, 'hello a', 'b1');
  assert.equal(r.status, 200, `a retry of an earlier send finds it: ${show(r)}`);
  assert.equal(r.body.message.id, first);

  // c blocks b before they ever talked: b cannot start a chat with c
  assert.equal((await api(srv, 'PUT', `/v1/blocks/${b.user.id}`, { token: c.token })).status, 204);
  r = await dm(b, c, 'hi c', 'b4');
  assert.equal(r.status, 403, show(r));
  const chans = await api(srv, 'GET', '/v1/channels', { token: c.token });
  assert.equal(chans.body.channels.length, 0, 'no channel was made');
  // groups are not direct chats: b still posts where both are members
  const g = await api(srv, 'POST', '/v1/groups', { token: c.token, body: { name: 'both', members: [b.user.id] } });
  assert.equal(g.status, 201, show(g));
  assert.equal((await api(srv, 'POST', `/v1/channels/${g.body.channel.id}/messages`, { token: b.token, body: { text: 'in a group', cmid: 'b5' } })).status, 201);

  // reversible
  assert.equal((await api(srv, 'DELETE', `/v1/blocks/${b.user.id}`, { token: a.token })).status, 204);
  assert.equal((await api(srv, 'DELETE', `/v1/blocks/${b.user.id}`, { token: a.token })).status, 204, 'again: the same');
  assert.equal((await api(srv, 'DELETE', '/v1/blocks/123456789', { token: a.token })).status, 404);
  assert.deepEqual((await api(srv, 'GET', '/v1/blocks', { token: a.token })).body.blocked, []);
  assert.equal((await dm(b, a, 'back again', 'b6')).status, 201);
  assert.equal((await api(srv, 'PUT', `/v1/friends/${a.user.id}`, { token: b.token })).status, 200);
});

test('sessions: listed with device, date and which is current; one revoked by id (its sockets close); bad ids refused', T, async () => {
  const a = await newUser(srv, 'ssa', { device: 'phone' });
  const second = await newDevice(srv, a, 'laptop');
  const r = await api(srv, 'GET', '/v1/sessions', { token: a.token });
  assert.equal(r.status, 200, show(r));
  assert.equal(r.body.sessions.length, 2);
  const [s1, s2] = r.body.sessions;
  assert.deepEqual([s1.device, s2.device], ['phone', 'laptop'], 'oldest first');
  assert.deepEqual([s1.current, s2.current], [true, false]);
  for (const x of r.body.sessions) {
    assert.match(x.id, /^[0-9a-f]{16}$/);
    assert.ok(Math.abs(x.created_at - Date.now()) < 60000, `created_at ${x.created_at}`);
  }
  const other = await newUser(srv, 'ssb');
  assert.equal((await api(srv, 'GET', '/v1/sessions', { token: other.token })).body.sessions.length, 1, 'only one\'s own');
  for (const bad of ['zz', '0123456789abcdeg', '0123456789abcdef0', '0123456789ABCDEF']) {
    assert.equal((await api(srv, 'DELETE', `/v1/sessions/${bad}`, { token: a.token })).status, 404, bad);
  }
  assert.equal((await api(srv, 'DELETE', `/v1/sessions/${s2.id}`, { token: other.token })).status, 404, 'not another user\'s session');

  const w = await connectWs(srv, { token: second.token, label: 'laptop' });
  const d = await api(srv, 'DELETE', `/v1/sessions/${s2.id}`, { token: a.token });
  assert.equal(d.status, 204, show(d));
  const closed = await w.closed;
  assert.ok(closed.code >= 1000, `the revoked session's socket closed (${closed.code})`);
  assert.equal((await api(srv, 'GET', '/v1/me', { token: second.token })).status, 401, 'its token is dead');
  assert.equal((await api(srv, 'GET', '/v1/me', { token: a.token })).status, 200, 'the caller\'s lives');
  assert.equal((await api(srv, 'DELETE', `/v1/sessions/${s2.id}`, { token: a.token })).status, 404, 'twice: gone');
  assert.equal((await api(srv, 'GET', '/v1/sessions', { token: a.token })).body.sessions.length, 1);
  assert.equal((await api(srv, 'GET', '/v1/sessions')).status, 401);
});

test('password change: the old password is checked, every other session ends (sockets closed), the new password logs in, the old does not', T, async () => {
  const a = await newUser(srv, 'pwa', { device: 'one' });
  const second = await newDevice(srv, a, 'two');
  const w = await connectWs(srv, { token: second.token, label: 'two' });
  const change = (body, token = a.token) => api(srv, 'PUT', '/v1/me/password', { token, body });
  let r = await change({ old_password: 'wrong password!', new_password: 'a new secret 1' });
  assert.equal(r.status, 403, show(r));
  assert.equal(r.body.error.code, 'forbidden');
  r = await change({ old_password: PASSWORD, new_password: 'short' });
  assert.equal(r.status, 400, show(r));
  r = await change({ new_password: 'a new secret 1' });
  assert.equal(r.status, 400, show(r));
  r = await change({ old_password: PASSWORD, new_password: 'a new secret 1' }, 'not-a-token');
  assert.equal(r.status, 401, show(r));
  assert.equal((await api(srv, 'GET', '/v1/me', { token: second.token })).status, 200, 'nothing changed yet');

  r = await change({ old_password: PASSWORD, new_password: 'a new secret 1' });
  assert.equal(r.status, 204, show(r));
  const closed = await w.closed;
  assert.ok(closed.code >= 1000, `the other session's socket closed (${closed.code})`);
  assert.equal((await api(srv, 'GET', '/v1/me', { token: second.token })).status, 401, 'the other session ended');
  assert.equal((await api(srv, 'GET', '/v1/me', { token: a.token })).status, 200, 'this one goes on');
  assert.equal((await api(srv, 'POST', '/v1/sessions', { body: { username: a.username, password: PASSWORD } })).status, 401);
  const l = await api(srv, 'POST', '/v1/sessions', { body: { username: a.username, password: 'a new secret 1' } });
  assert.equal(l.status, 201, show(l));
});

test('deleting an account: the password is checked; sessions, friends and blocks end, sockets close; login and lookups fail; its messages stay; its username is free again', T, async () => {
  const [a, b, c, d] = [await newUser(srv, 'dla'), await newUser(srv, 'dlb'), await newUser(srv, 'dlc'), await newUser(srv, 'dld')];
  const second = await newDevice(srv, a, 'two');
  assert.equal((await api(srv, 'PUT', `/v1/friends/${b.user.id}`, { token: a.token })).status, 200);
  assert.equal((await api(srv, 'PUT', `/v1/friends/${a.user.id}`, { token: b.token })).status, 200);
  assert.equal((await api(srv, 'PUT', `/v1/friends/${d.user.id}`, { token: a.token })).status, 200);   // a pending request
  assert.equal((await api(srv, 'PUT', `/v1/blocks/${c.user.id}`, { token: a.token })).status, 204);
  const sent = await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: { text: 'before I go', cmid: 'x1' } });
  assert.equal(sent.status, 201, show(sent));
  const w = await connectWs(srv, { token: second.token, label: 'two' });

  let r = await api(srv, 'DELETE', '/v1/me', { token: a.token, body: { password: 'not the password' } });
  assert.equal(r.status, 403, show(r));
  r = await api(srv, 'DELETE', '/v1/me', { token: a.token, body: {} });
  assert.equal(r.status, 400, show(r));
  assert.equal((await api(srv, 'GET', '/v1/me', { token: a.token })).status, 200, 'still there');

  r = await api(srv, 'DELETE', '/v1/me', { token: a.token, body: { password: PASSWORD } });
  assert.equal(r.status, 204, show(r));
  const closed = await w.closed;
  assert.ok(closed.code >= 1000, `sockets close (${closed.code})`);
  for (const t of [a.token, second.token]) assert.equal((await api(srv, 'GET', '/v1/me', { token: t })).status, 401);
  assert.equal((await api(srv, 'POST', '/v1/sessions', { body: { username: a.username, password: PASSWORD } })).status, 401);
  assert.equal((await api(srv, 'GET', `/v1/users/${a.user.id}`, { token: b.token })).status, 404);
  assert.equal((await api(srv, 'GET', `/v1/users?username=${a.username}`, { token: b.token })).status, 404);
  const fb = await api(srv, 'GET', '/v1/friends', { token: b.token });
  assert.equal(fb.body.friends.length, 0, 'the friendship ended');
  const fd = await api(srv, 'GET', '/v1/friends', { token: d.token });
  assert.equal(fd.body.incoming.length, 0, 'the request ended');
  // its message stays, from its id
  const h = await api(srv, 'GET', `/v1/channels/${sent.body.message.channel}/messages`, { token: b.token });
  assert.equal(h.status, 200);
  assert.equal(h.body.messages[0].from, a.user.id);
  assert.equal(h.body.messages[0].text, 'before I go');
  // nobody starts a chat with it; c (it had blocked c) can write to others as before
  r = await api(srv, 'POST', `/v1/users/${a.user.id}/messages`, { token: d.token, body: { text: 'hello?', cmid: 'x2' } });
  assert.equal(r.status, 404, show(r));
  assert.equal((await api(srv, 'DELETE', '/v1/me', { token: a.token, body: { password: PASSWORD } })).status, 401, 'twice: no session');
  // the username is free again: a new account, with a new id
  const again = await api(srv, 'POST', '/v1/users', { body: { username: a.username, password: PASSWORD } });
  assert.equal(again.status, 201, show(again));
  assert.notEqual(again.body.user.id, a.user.id);
});

test('mentions: @username of a member makes mentions on the message (live, history, sync), counted unread in the channel list until read; not the sender, not a stranger', T, async () => {
  const [a, b, c, d] = [await newUser(srv, 'mna'), await newUser(srv, 'mnb'), await newUser(srv, 'mnc'), await newUser(srv, 'mnd')];
  const g = await api(srv, 'POST', '/v1/groups', { token: a.token, body: { name: 'mentions', members: [b.user.id, c.user.id] } });
  assert.equal(g.status, 201, show(g));
  const ch = g.body.channel.id;
  const wb = await connectWs(srv, { token: b.token, label: 'B' });
  try {
    const live = wb.waitFor((f) => f.op === 'msg' && f.channel === ch && f.cmid === 'mn1', { what: 'the mention, live' });
    const text = `hi @${b.username.toUpperCase()} and @${c.username}, not @${d.username} (no member), not me @${a.username}, nobody @zz_nobody_here; mail x@${b.username}.com`;
    const r = await api(srv, 'POST', `/v1/channels/${ch}/messages`, { token: a.token, body: { text, cmid: 'mn1' } });
    assert.equal(r.status, 201, show(r));
    const sortIds = (v) => [...v].sort();
    assert.deepEqual(sortIds(r.body.message.mentions), sortIds([b.user.id, c.user.id]));
    const f = await live;
    assert.deepEqual(sortIds(f.mentions), sortIds([b.user.id, c.user.id]));
    const plain = await api(srv, 'POST', `/v1/channels/${ch}/messages`, { token: a.token, body: { text: 'no names here', cmid: 'mn2' } });
    assert.equal(plain.body.message.mentions, undefined, 'no mentions: no field');

    const h = await api(srv, 'GET', `/v1/channels/${ch}/messages?after_seq=0`, { token: c.token });
    const m1 = h.body.messages.find((m) => m.cmid === 'mn1');
    assert.deepEqual(sortIds(m1.mentions), sortIds([b.user.id, c.user.id]), 'stored: in history');
    const s = await wb.request({ op: 'sync', after: 0, limit: 50 });
    assert.deepEqual(sortIds(s.messages.find((m) => m.cmid === 'mn1').mentions), sortIds([b.user.id, c.user.id]), 'in sync');

    const entry = async (u) => (await api(srv, 'GET', '/v1/channels', { token: u.token })).body.channels.find((x) => x.channel.id === ch);
    assert.equal((await entry(b)).mentions, 1);
    assert.equal((await entry(a)).mentions, 0, 'the sender is not mentioned by itself');
    const receipt = new Promise((resolve) => setTimeout(resolve, 300));
    wb.send({ op: 'read', channel: ch, seq: plain.body.message.seq });
    await receipt;
    let after = await entry(b);
    for (let i = 0; i < 20 && after.mentions !== 0; i++) { await new Promise((x) => setTimeout(x, 100)); after = await entry(b); }
    assert.equal(after.mentions, 0, 'read: no unread mention');
    assert.equal((await entry(c)).mentions, 1, 'c has not read');

    // a direct chat: the other person is a member
    const dm = await api(srv, 'POST', `/v1/users/${d.user.id}/messages`, { token: a.token, body: { text: `@${d.username} look`, cmid: 'mn3' } });
    assert.deepEqual(dm.body.message.mentions, [d.user.id]);
  } finally { wb.terminate(); }
});

test('edit and delete: events with their own seq and pos (live, sync, history), the message shows its current state; who may, and bad input', T, async () => {
  const [a, b, c, x] = [await newUser(srv, 'eda'), await newUser(srv, 'edb'), await newUser(srv, 'edc'), await newUser(srv, 'edx')];
  const g = await api(srv, 'POST', '/v1/groups', { token: a.token, body: { name: 'edits', members: [b.user.id, c.user.id] } });
  assert.equal(g.status, 201, show(g));
  const ch = g.body.channel.id;
  const wa = await connectWs(srv, { token: a.token, label: 'A' });
  const wb = await connectWs(srv, { token: b.token, label: 'B' });
  try {
    const sent = await wb.request({ op: 'send', channel: ch, text: 'helo world', cmid: 'ed1' });
    assert.equal(sent.op, 'ack', JSON.stringify(sent));
    const id = sent.id;

    // edit over WebSocket: an ack for the event; every member's sockets get it as a msg
    const liveA = wa.waitFor((f) => f.op === 'msg' && f.event === 'edited', { what: 'the edit, live' });
    const ack = await wb.request({ op: 'edit', id, text: 'hello world' });
    assert.equal(ack.op, 'ack', JSON.stringify(ack));
    assert.equal(ack.channel, ch);
    assert.equal(ack.seq, sent.seq + 1);
    assert.ok(ack.pos > sent.pos && ack.id !== id && ack.ts >= sent.ts, JSON.stringify(ack));
    assert.equal(ack.cmid, undefined, 'an event has no cmid');
    const ev = await liveA;
    assert.equal(ev.target, id);
    assert.equal(ev.text, 'hello world');
    assert.equal(ev.from, b.user.id);
    assert.equal(ev.seq, ack.seq);

    // edit over HTTP: 200 with the message as it is now
    const p = await api(srv, 'PATCH', `/v1/messages/${id}`, { token: b.token, body: { text: 'hello, world' } });
    assert.equal(p.status, 200, show(p));
    assert.equal(p.body.message.id, id);
    assert.equal(p.body.message.seq, sent.seq);
    assert.equal(p.body.message.text, 'hello, world');
    assert.ok(p.body.message.edited_at >= ack.ts, show(p));

    // who may: not someone else (403), a stranger learns nothing (404); bad input 400
    const other = await api(srv, 'PATCH', `/v1/messages/${id}`, { token: a.token, body: { text: 'mine' } });
    assert.equal(other.status, 403, `the owner cannot edit a member's message: ${show(other)}`);
    const bd = await api(srv, 'DELETE', `/v1/messages/${id}`, { token: c.token });
    assert.equal(bd.status, 403, `a member cannot delete another's message: ${show(bd)}`);
    const strange = await api(srv, 'PATCH', `/v1/messages/${id}`, { token: x.token, body: { text: 'hi' } });
    assert.equal(strange.status, 404, show(strange));
    assert.equal((await api(srv, 'DELETE', `/v1/messages/${id}`, { token: x.token })).status, 404);
    assert.equal((await api(srv, 'PATCH', '/v1/messages/99999', { token: b.token, body: { text: 'hi' } })).status, 404);
    assert.equal((await api(srv, 'PATCH', `/v1/messages/${ack.id}`, { token: b.token, body: { text: 'an event' } })).status, 404, 'an event cannot be edited');
    for (const body of [{}, { text: '' }, { text: 5 }]) {
      const r = await api(srv, 'PATCH', `/v1/messages/${id}`, { token: b.token, body });
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${show(r)}`);
    }
    const big = await api(srv, 'PATCH', `/v1/messages/${id}`, { token: b.token, body: { text: '😀'.repeat(100001) } });
    assert.equal(big.status, 400, show(big));
    assert.equal(big.body.error.code, 'too_large');
    assert.equal((await api(srv, 'PATCH', `/v1/messages/${id}`, { body: { text: 'x' } })).status, 401);
    let e = await wb.request({ op: 'edit', id, text: '' });
    assert.equal(e.code, 'bad_request', JSON.stringify(e));
    e = await wb.request({ op: 'edit', text: 'no id' });
    assert.equal(e.code, 'bad_request', JSON.stringify(e));
    e = await wb.request({ op: 'delete', id: 'abc' });
    assert.equal(e.code, 'bad_request', JSON.stringify(e));
    e = await wa.request({ op: 'edit', id, text: 'not mine' });
    assert.equal(e.code, 'forbidden', JSON.stringify(e));

    // delete by the group's owner: 204, a tombstone; again -> not_found, and no edit after
    const liveB = wb.waitFor((f) => f.op === 'msg' && f.event === 'deleted', { what: 'the delete, live' });
    const del = await api(srv, 'DELETE', `/v1/messages/${id}`, { token: a.token });
    assert.equal(del.status, 204, show(del));
    const dev = await liveB;
    assert.equal(dev.target, id);
    assert.equal(dev.text, '');
    assert.equal(dev.from, a.user.id);
    assert.equal((await api(srv, 'DELETE', `/v1/messages/${id}`, { token: a.token })).status, 404, 'deleting twice');
    e = await wb.request({ op: 'delete', id });
    assert.equal(e.code, 'not_found', JSON.stringify(e));
    assert.equal((await api(srv, 'PATCH', `/v1/messages/${id}`, { token: b.token, body: { text: 'back' } })).status, 404);

    // history: the message as it is now, then the events in order
    const h = await api(srv, 'GET', `/v1/channels/${ch}/messages?after_seq=0`, { token: c.token });
    const [m, e1, e2, e3] = h.body.messages;
    assert.equal(m.id, id);
    assert.equal(m.deleted, true);
    assert.equal(m.text, '');
    assert.ok(m.edited_at > 0);
    assert.deepEqual([e1.event, e2.event, e3.event], ['edited', 'edited', 'deleted']);
    assert.deepEqual([e1.target, e2.target, e3.target], [id, id, id]);
    // sync of a device that was away: every event, pos consecutive
    const s = await wa.request({ op: 'sync', after: 0, limit: 50 });
    const mine = s.messages.filter((y) => y.channel === ch);
    assert.deepEqual(mine.map((y) => y.event ?? 'msg'), ['msg', 'edited', 'edited', 'deleted']);
    for (let i = 1; i < s.messages.length; i++) assert.equal(s.messages[i].pos, s.messages[i - 1].pos + 1);

    // in a direct chat only the author may delete
    const dm = await api(srv, 'POST', `/v1/users/${c.user.id}/messages`, { token: b.token, body: { text: 'dm', cmid: 'ed2' } });
    assert.equal((await api(srv, 'DELETE', `/v1/messages/${dm.body.message.id}`, { token: c.token })).status, 403);
    assert.equal((await api(srv, 'DELETE', `/v1/messages/${dm.body.message.id}`, { token: b.token })).status, 204);
  } finally { wa.terminate(); wb.terminate(); }
});

test('reply: reply_to a message of the same conversation (WebSocket and HTTP), carried live, in history and sync with the original\'s seq; anything else is bad_request, nothing stored', T, async () => {
  const [a, b, c] = [await newUser(srv, 'rpa'), await newUser(srv, 'rpb'), await newUser(srv, 'rpc')];
  const q = await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: { text: 'lunch?', cmid: 'rp1' } });
  assert.equal(q.status, 201, show(q));
  const ch = q.body.message.channel;
  assert.equal(q.body.message.reply_to, undefined, 'no reply: no field');
  const wa = await connectWs(srv, { token: a.token, label: 'A' });
  const wb = await connectWs(srv, { token: b.token, label: 'B' });
  try {
    const live = wa.waitFor((f) => f.op === 'msg' && f.cmid === 'rp2', { what: 'the reply, live' });
    const ack = await wb.request({ op: 'send', channel: ch, text: 'yes!', cmid: 'rp2', reply_to: q.body.message.id });
    assert.equal(ack.op, 'ack', JSON.stringify(ack));
    const f = await live;
    assert.equal(f.reply_to, q.body.message.id);
    assert.equal(f.reply_seq, q.body.message.seq);
    // over HTTP, to the user: the direct channel's message
    const r = await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: { text: 'great', cmid: 'rp3', reply_to: ack.id } });
    assert.equal(r.status, 201, show(r));
    assert.equal(r.body.message.reply_to, ack.id);
    assert.equal(r.body.message.reply_seq, ack.seq);

    // not: another conversation's message, an event, a deleted one, none, a malformed id
    const other = await api(srv, 'POST', `/v1/users/${c.user.id}/messages`, { token: a.token, body: { text: 'elsewhere', cmid: 'rp4' } });
    const edit = await wb.request({ op: 'edit', id: ack.id, text: 'yes!!' });
    const gone = await api(srv, 'POST', `/v1/channels/${ch}/messages`, { token: a.token, body: { text: 'oops', cmid: 'rp5' } });
    assert.equal((await api(srv, 'DELETE', `/v1/messages/${gone.body.message.id}`, { token: a.token })).status, 204);
    for (const [what, reply_to] of [['another conversation', other.body.message.id], ['an event', edit.id], ['a deleted message', gone.body.message.id], ['no message', '424242']]) {
      const bad = await api(srv, 'POST', `/v1/channels/${ch}/messages`, { token: a.token, body: { text: 'x', cmid: `rpx${reply_to}`, reply_to } });
      assert.equal(bad.status, 400, `${what}: ${show(bad)}`);
      assert.equal(bad.body.error.code, 'bad_request');
      const e = await wa.request({ op: 'send', channel: ch, text: 'x', reply_to });
      assert.equal(e.code, 'bad_request', `${what} over ws: ${JSON.stringify(e)}`);
    }
    for (const reply_to of [5, 'abc', '0']) {
      const bad = await api(srv, 'POST', `/v1/channels/${ch}/messages`, { token: a.token, body: { text: 'x', reply_to } });
      assert.equal(bad.status, 400, `reply_to ${JSON.stringify(reply_to)}: ${show(bad)}`);
    }
    // a new direct chat has nothing to reply to: nothing is created
    const fresh = await api(srv, 'POST', `/v1/users/${c.user.id}/messages`, { token: b.token, body: { text: 'x', reply_to: q.body.message.id } });
    assert.equal(fresh.status, 400, show(fresh));
    assert.equal((await api(srv, 'GET', '/v1/channels', { token: c.token })).body.channels.length, 1, 'no channel between b and c');
    // a stranger: forbidden, as any send
    const s = await api(srv, 'POST', `/v1/channels/${ch}/messages`, { token: c.token, body: { text: 'x', reply_to: q.body.message.id } });
    assert.equal(s.status, 403, show(s));

    // stored: history and sync carry it; an edit keeps it
    const h = await api(srv, 'GET', `/v1/channels/${ch}/messages?after_seq=0`, { token: a.token });
    const byCmid = (id) => h.body.messages.find((m) => m.cmid === id);
    assert.equal(byCmid('rp2').reply_to, q.body.message.id);
    assert.equal(byCmid('rp2').text, 'yes!!');
    assert.equal(byCmid('rp3').reply_seq, ack.seq);
    const sy = await wb.request({ op: 'sync', after: 0, limit: 50 });
    assert.equal(sy.messages.find((m) => m.cmid === 'rp3').reply_to, ack.id);
    assert.equal(h.body.messages.filter((m) => m.cmid?.startsWith('rpx')).length, 0, 'nothing refused was stored');
  } finally { wa.terminate(); wb.terminate(); }
});

test('reactions: one per person per emoji, added and taken back (WebSocket and HTTP, with the emoji in the path), events live and in sync, counts in history; limits, a flood, bad input', T, async () => {
  const [a, b, c, x] = [await newUser(srv, 'rxa'), await newUser(srv, 'rxb'), await newUser(srv, 'rxc'), await newUser(srv, 'rxx')];
  const g = await api(srv, 'POST', '/v1/groups', { token: a.token, body: { name: 'reactions', members: [b.user.id, c.user.id] } });
  const ch = g.body.channel.id;
  const m = await api(srv, 'POST', `/v1/channels/${ch}/messages`, { token: a.token, body: { text: 'pizza tonight?', cmid: 'rx1' } });
  const id = m.body.message.id;
  const wa = await connectWs(srv, { token: a.token, label: 'A' });
  const wb = await connectWs(srv, { token: b.token, label: 'B' });
  try {
    const live = wa.waitFor((f) => f.op === 'msg' && f.event === 'reaction', { what: 'the reaction, live' });
    const ack = await wb.request({ op: 'react', id, emoji: '👍', on: true });
    assert.equal(ack.op, 'ack', JSON.stringify(ack));
    assert.equal(ack.seq, m.body.message.seq + 1);
    const f = await live;
    assert.deepEqual([f.target, f.emoji, f.on, f.from], [id, '👍', true, b.user.id]);
    // HTTP, the emoji %-encoded in the path; again: 204 (already so), and no new event
    const path = (e) => `/v1/messages/${id}/reactions/${encodeURIComponent(e)}`;
    assert.equal((await api(srv, 'PUT', path('👍'), { token: c.token })).status, 204);
    assert.equal((await api(srv, 'PUT', path('👍'), { token: c.token })).status, 204);
    assert.equal((await api(srv, 'PUT', path('🍕'), { token: a.token })).status, 204);
    let e = await wb.request({ op: 'react', id, emoji: '👍' });
    assert.equal(e.code, 'conflict', `on by default, and already so: ${JSON.stringify(e)}`);
    e = await wb.request({ op: 'react', id, emoji: '🍕', on: false });
    assert.equal(e.code, 'conflict', JSON.stringify(e));

    let h = await api(srv, 'GET', `/v1/channels/${ch}/messages?after_seq=0&limit=1`, { token: c.token });
    assert.deepEqual(h.body.messages[0].reactions, [
      { emoji: '👍', count: 2, users: [b.user.id, c.user.id] },
      { emoji: '🍕', count: 1, users: [a.user.id] },
    ]);
    assert.equal(h.body.messages[0].text, 'pizza tonight?');
    // taken back: the count falls, an emoji nobody holds goes; DELETE again is 204
    const off = wa.waitFor((y) => y.op === 'msg' && y.event === 'reaction' && y.on === false, { what: 'taken back, live' });
    assert.equal((await api(srv, 'DELETE', path('🍕'), { token: a.token })).status, 204);
    assert.equal((await off).emoji, '🍕');
    assert.equal((await api(srv, 'DELETE', path('🍕'), { token: a.token })).status, 204);
    h = await api(srv, 'GET', `/v1/channels/${ch}/messages?after_seq=0&limit=1`, { token: c.token });
    assert.deepEqual(h.body.messages[0].reactions, [{ emoji: '👍', count: 2, users: [b.user.id, c.user.id] }]);

    // who and what: a stranger 404; bad emoji 400; an event or nothing 404
    assert.equal((await api(srv, 'PUT', path('👍'), { token: x.token })).status, 404);
    for (const bad of ['a b', 'x'.repeat(33), '%00', '%FF', '%zz']) {
      const r = await api(srv, 'PUT', `/v1/messages/${id}/reactions/${bad}`, { token: b.token });
      assert.equal(r.status, 400, `${bad}: ${show(r)}`);
    }
    for (const bad of ['', 'a b', 'x'.repeat(33), 5, null]) {
      const r = await wb.request({ op: 'react', id, emoji: bad });
      assert.equal(r.code, 'bad_request', `${JSON.stringify(bad)}: ${JSON.stringify(r)}`);
    }
    assert.equal((await wb.request({ op: 'react', id, emoji: '👍', on: 'yes' })).code, 'bad_request');
    assert.equal((await api(srv, 'PUT', `/v1/messages/${ack.id}/reactions/x`, { token: b.token })).status, 404, 'an event');
    assert.equal((await api(srv, 'PUT', '/v1/messages/424242/reactions/x', { token: b.token })).status, 404);
    assert.equal((await api(srv, 'PUT', path('👍'))).status, 401);

    // limits: 20 different emoji on one message; the 21st is too_large, nothing stored
    for (let i = 2; i <= 20; i++) assert.equal((await api(srv, 'PUT', path(`e${i}`), { token: b.token })).status, 204);
    const big = await api(srv, 'PUT', path('e21'), { token: b.token });
    assert.equal(big.status, 400, show(big));
    assert.equal(big.body.error.code, 'too_large');
    // a flood from one user is rate limited (the message rate limit), answered, never a crash
    const flood = await Promise.all(Array.from({ length: 200 }, (_, i) => wb.request({ op: 'react', id, emoji: i % 2 ? 'e2' : 'e3', on: i % 4 < 2 })));
    assert.ok(flood.every((y) => y.op === 'ack' || ['conflict', 'rate_limited'].includes(y.code)), JSON.stringify(flood.find((y) => y.op !== 'ack' && !['conflict', 'rate_limited'].includes(y.code))));
    // sync replays every reaction event in order, pos consecutive
    const s = await wa.request({ op: 'sync', after: 0, limit: 500 });
    for (let i = 1; i < s.messages.length; i++) assert.equal(s.messages[i].pos, s.messages[i - 1].pos + 1);
    assert.ok(s.messages.filter((y) => y.event === 'reaction').length >= 22);
    // a delete takes the reactions with it
    assert.equal((await api(srv, 'DELETE', `/v1/messages/${id}`, { token: a.token })).status, 204);
    h = await api(srv, 'GET', `/v1/channels/${ch}/messages?after_seq=0&limit=1`, { token: c.token });
    assert.equal(h.body.messages[0].reactions, undefined);
    assert.equal((await api(srv, 'PUT', path('👍'), { token: b.token })).status, 404, 'a deleted message takes no reaction');
  } finally { wa.terminate(); wb.terminate(); }
});
