// groups.test.mjs — group channels: create, read, rename, add, remove, leave (and every error),
// membership events as messages (live, in history, in sync), ownership passing on, the 100-member
// limit, and fan-out in a full 100-member group with concurrent senders.
//
// Server decisions tested here beyond shared/PROTOCOL.md:
//   POST /v1/groups {name, members} -> 201 {channel:{id, kind:"group", name, members, owner}}
//   POST /v1/channels/{id}/members {user_id} -> 200 {channel}; 409 already a member; 400 too_large
//     when it would make 101 (nothing changed); 404 unknown user; 403 non-member caller
//   DELETE /v1/channels/{id}/members/{user_id} -> 204; owner removes anyone, anyone removes
//     themselves, else 403; 404 not a member
//   PATCH /v1/channels/{id} {name} -> 200 {channel}; owner only (403); direct channel -> 400
//   every membership change is a message of the channel with event:"member_added"|
//     "member_removed"|"renamed", user (member events), from (who did it), text (new name or "")
//   the owner leaving passes ownership to the lowest remaining member id
//   a removed member keeps its inbox (sync) but history -> 403, send -> forbidden, no new msg
//
// Whether creating a group stores messages is not specified: every check of seq/pos below is
// relative to the state right after creation (history length, ready.pos).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, api, show, newUser, newDevice, newUsers, connectWs, fullHistory, gapFree, ms, mapLimit,
  sortIds, minId, UNKNOWN_ID, assertHttpError, assertWsError, isId, withSockets
} from './lib/harness.mjs';

const T = { timeout: ms(120000) };
const T_BIG = { timeout: ms(300000) };

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.cleanup(); });

/** run a test body with the server's stderr attached to failures and every socket closed after */
async function t(fn) {
  const sockets = [];
  const track = (c) => { sockets.push(c); return c; };
  try {
    await fn(track);
  } catch (e) {
    throw srv.annotate(e);
  } finally {
    for (const c of sockets) c.terminate();
  }
}

// 101 users shared by the tests that need many members (signing up costs Argon2id hashes)
let poolPromise = null;
const userPool = () => (poolPromise ??= newUsers(srv, 'gp', 101, { concurrency: 8 }));

async function createGroup(owner, name, members) {
  const r = await api(srv, 'POST', '/v1/groups', { token: owner.token, body: { name, members: members.map((u) => u.user.id) } });
  assert.equal(r.status, 201, `create group ${name}: ${show(r)}`);
  assert.ok(r.body?.channel && isId(r.body.channel.id), `create group ${name}: ${show(r)}`);
  return r.body.channel;
}

async function getChannel(u, id) {
  const r = await api(srv, 'GET', `/v1/channels/${id}`, { token: u.token });
  assert.equal(r.status, 200, `GET /v1/channels/${id}: ${show(r)}`);
  return r.body.channel;
}

/** the highest seq of a channel now (0 when empty), read by a member */
async function lastSeq(u, id) {
  const h = await fullHistory(srv, u.token, id);
  return h.length ? h[h.length - 1].seq : 0;
}

const sendHttp = (u, channelId, text, cmid) => api(srv, 'POST', `/v1/channels/${channelId}/messages`, { token: u.token, body: { text, cmid } });

/** the fields of a membership event that every copy (live, history, sync) must carry */
const eventView = (m) => ({
  id: m.id, channel: m.channel, seq: m.seq, from: m.from, text: m.text, event: m.event || undefined,
  user: m.event === 'member_added' || m.event === 'member_removed' ? m.user : undefined,
});

test('create: 201 with kind, name, members (creator added once), owner; GET for members, 403 for others', T, () => t(async () => {
  const [a, b, c, d] = await Promise.all(['cra', 'crb', 'crc', 'crd'].map((n) => newUser(srv, n)));
  const r = await api(srv, 'POST', '/v1/groups', { token: a.token, body: { name: 'Trip \u{1F30D}', members: [b.user.id, c.user.id] } });
  assert.equal(r.status, 201, show(r));
  const ch = r.body.channel;
  assert.ok(isId(ch.id), `channel.id: ${show(r)}`);
  assert.equal(ch.kind, 'group');
  assert.equal(ch.name, 'Trip \u{1F30D}');
  assert.deepEqual(sortIds(ch.members), sortIds([a.user.id, b.user.id, c.user.id]), 'members: the creator is added');
  assert.equal(ch.owner, a.user.id, 'the creator is the owner');

  // the creator listed explicitly (and a duplicate) is a member once
  const r2 = await api(srv, 'POST', '/v1/groups', { token: a.token, body: { name: 'Dup', members: [a.user.id, b.user.id, b.user.id] } });
  assert.equal(r2.status, 201, show(r2));
  assert.deepEqual(sortIds(r2.body.channel.members), sortIds([a.user.id, b.user.id]), 'creator and duplicate listed once');
  assert.equal(r2.body.channel.owner, a.user.id);
  assert.notEqual(r2.body.channel.id, ch.id, 'a new channel for every group');

  // every member reads the same channel; a non-member is refused
  for (const u of [a, b, c]) {
    const got = await getChannel(u, ch.id);
    assert.equal(got.id, ch.id);
    assert.equal(got.kind, 'group');
    assert.equal(got.name, 'Trip \u{1F30D}');
    assert.deepEqual(sortIds(got.members), sortIds(ch.members), `members as seen by ${u.username}`);
    assert.equal(got.owner, a.user.id);
  }
  assertHttpError(await api(srv, 'GET', `/v1/channels/${ch.id}`, { token: d.token }), 403, 'forbidden', 'GET channel by a non-member');

  // the group is in every member's channel list, not in the outsider's
  const lc = await api(srv, 'GET', '/v1/channels', { token: c.token });
  assert.equal(lc.status, 200, show(lc));
  const entry = lc.body.channels.find((x) => x.channel.id === ch.id);
  assert.ok(entry, `group in c's channel list: ${show(lc)}`);
  assert.equal(entry.channel.kind, 'group');
  assert.equal(entry.channel.name, 'Trip \u{1F30D}');
  const ld = await api(srv, 'GET', '/v1/channels', { token: d.token });
  assert.equal(ld.status, 200, show(ld));
  assert.equal(ld.body.channels.find((x) => x.channel.id === ch.id), undefined, 'not in the outsider\'s list');

  // unknown member -> 404, nothing created
  assertHttpError(await api(srv, 'POST', '/v1/groups', { token: a.token, body: { name: 'Ghost', members: [b.user.id, UNKNOWN_ID] } }),
    404, 'not_found', 'create with an unknown member');
  const la = await api(srv, 'GET', '/v1/channels', { token: b.token });
  assert.equal(la.body.channels.filter((x) => x.channel.kind === 'group').length, 2, `b is in exactly the 2 groups created: ${show(la)}`);
}));

test('create: 100 members in all is fine, 101 is 400 too_large', T, () => t(async () => {
  const users = await userPool();
  const [owner, ...rest] = users; // 1 + 100
  assertHttpError(await api(srv, 'POST', '/v1/groups', { token: owner.token, body: { name: 'Too big', members: rest.map((u) => u.user.id) } }),
    400, 'too_large', 'creator + 100 others = 101');
  // the creator listed too: still 101 distinct
  assertHttpError(await api(srv, 'POST', '/v1/groups', { token: owner.token, body: { name: 'Too big 2', members: [owner, ...rest].map((u) => u.user.id) } }),
    400, 'too_large', '101 listed, creator among them');
  const before = await api(srv, 'GET', '/v1/channels', { token: rest[0].token });
  assert.equal(before.body.channels.filter((x) => x.channel.name === 'Too big' || x.channel.name === 'Too big 2').length, 0, 'nothing created');

  const ch = await createGroup(owner, 'Exactly 100', rest.slice(0, 99));
  assert.equal(ch.members.length, 100);
  assert.deepEqual(sortIds(ch.members), sortIds([owner, ...rest.slice(0, 99)].map((u) => u.user.id)));
}));

test('rename: owner only (403 for other members and outsiders), direct channel 400, renamed event', T, () => t(async () => {
  const [a, b, c] = await Promise.all(['rna', 'rnb', 'rnc'].map((n) => newUser(srv, n)));
  const ch = await createGroup(a, 'Old', [b]);
  const base = await lastSeq(a, ch.id);

  const r = await api(srv, 'PATCH', `/v1/channels/${ch.id}`, { token: a.token, body: { name: 'New name \u00e9' } });
  assert.equal(r.status, 200, show(r));
  assert.equal(r.body.channel.id, ch.id);
  assert.equal(r.body.channel.name, 'New name \u00e9');
  assert.equal(r.body.channel.kind, 'group');
  assert.equal(r.body.channel.owner, a.user.id);
  assert.deepEqual(sortIds(r.body.channel.members), sortIds([a.user.id, b.user.id]));
  assert.equal((await getChannel(b, ch.id)).name, 'New name \u00e9', 'GET shows the new name');

  assertHttpError(await api(srv, 'PATCH', `/v1/channels/${ch.id}`, { token: b.token, body: { name: 'By b' } }), 403, 'forbidden', 'rename by a non-owner member');
  assertHttpError(await api(srv, 'PATCH', `/v1/channels/${ch.id}`, { token: c.token, body: { name: 'By c' } }), 403, 'forbidden', 'rename by a non-member');
  assert.equal((await getChannel(a, ch.id)).name, 'New name \u00e9', 'refused renames changed nothing');

  // the rename is a message: event "renamed", text = the new name, from = the owner
  const h = await fullHistory(srv, a.token, ch.id);
  assert.equal(h.length, base + 1, `exactly one message for the rename (refused ones store nothing): ${JSON.stringify(h)}`);
  const ev = h[h.length - 1];
  assert.equal(ev.seq, base + 1);
  assert.ok(isId(ev.id));
  assert.equal(ev.event, 'renamed', JSON.stringify(ev));
  assert.equal(ev.text, 'New name \u00e9');
  assert.equal(ev.from, a.user.id);
  assert.equal(ev.channel, ch.id);

  // a direct channel cannot be renamed
  const dm = await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: { text: 'hi', cmid: 'rn-dm' } });
  assert.equal(dm.status, 201, show(dm));
  assertHttpError(await api(srv, 'PATCH', `/v1/channels/${dm.body.message.channel}`, { token: a.token, body: { name: 'nope' } }),
    400, 'bad_request', 'rename a direct channel');
}));

test('add: any member adds; 409 already a member, 404 unknown user, 403 non-member caller; the new member reads all history', T, () => t(async () => {
  const [a, b, c, d, e] = await Promise.all(['ada', 'adb', 'adc', 'add', 'ade'].map((n) => newUser(srv, n)));
  const ch = await createGroup(a, 'Adders', [b]);
  for (let i = 1; i <= 3; i++) assert.equal((await sendHttp(a, ch.id, `before ${i}`, `ad-${i}`)).status, 201);

  // a member who is not the owner may add
  const r = await api(srv, 'POST', `/v1/channels/${ch.id}/members`, { token: b.token, body: { user_id: c.user.id } });
  assert.equal(r.status, 200, show(r));
  assert.equal(r.body.channel.id, ch.id);
  assert.deepEqual(sortIds(r.body.channel.members), sortIds([a.user.id, b.user.id, c.user.id]));
  assert.equal(r.body.channel.owner, a.user.id, 'adding does not change the owner');

  assertHttpError(await api(srv, 'POST', `/v1/channels/${ch.id}/members`, { token: a.token, body: { user_id: c.user.id } }),
    409, 'conflict', 'add someone already a member');
  assertHttpError(await api(srv, 'POST', `/v1/channels/${ch.id}/members`, { token: a.token, body: { user_id: b.user.id } }),
    409, 'conflict', 'add an original member again');
  assertHttpError(await api(srv, 'POST', `/v1/channels/${ch.id}/members`, { token: a.token, body: { user_id: UNKNOWN_ID } }),
    404, 'not_found', 'add an unknown user');
  assertHttpError(await api(srv, 'POST', `/v1/channels/${ch.id}/members`, { token: d.token, body: { user_id: e.user.id } }),
    403, 'forbidden', 'a non-member adds someone');
  assertHttpError(await api(srv, 'POST', `/v1/channels/${ch.id}/members`, { token: d.token, body: { user_id: d.user.id } }),
    403, 'forbidden', 'a non-member adds itself');
  assert.deepEqual(sortIds((await getChannel(a, ch.id)).members), sortIds([a.user.id, b.user.id, c.user.id]), 'refused adds changed nothing');

  // the new member reads the whole history, including what was said before it joined
  const h = await fullHistory(srv, c.token, ch.id);
  const texts = h.filter((m) => !m.event).map((m) => m.text);
  assert.deepEqual(texts, ['before 1', 'before 2', 'before 3'], 'the new member sees messages from before it joined');
  const evs = h.filter((m) => m.event);
  assert.equal(evs.length, 1, `exactly one event (the add; refused adds store nothing): ${JSON.stringify(evs)}`);
  assert.deepEqual({ event: evs[0].event, user: evs[0].user, from: evs[0].from, text: evs[0].text },
    { event: 'member_added', user: c.user.id, from: b.user.id, text: '' });
  assert.equal(h.length, h[h.length - 1].seq, 'history is gap-free');
  assert.equal(gapFree(h.map((m) => m.seq), 'seq'), null);
  // and may send
  const s = await sendHttp(c, ch.id, 'hello from c', 'ad-c');
  assert.equal(s.status, 201, show(s));
}));

test('remove and leave: owner removes anyone, anyone leaves, others 403, non-member 404; owner leaving passes ownership', T, () => t(async () => {
  const users = await Promise.all(['rma', 'rmb', 'rmc', 'rmd', 'rme'].map((n) => newUser(srv, n)));
  const [a, b, c, d, e] = users;
  const outsider = await newUser(srv, 'rmx');
  const ch = await createGroup(a, 'Leavers', [b, c, d, e]);
  const path = (u) => `/v1/channels/${ch.id}/members/${u.user.id}`;
  const members = async () => sortIds((await getChannel(a, ch.id)).members);

  // a non-owner may not remove someone else; nor may an outsider
  assertHttpError(await api(srv, 'DELETE', path(c), { token: b.token }), 403, 'forbidden', 'member removes another member');
  assertHttpError(await api(srv, 'DELETE', path(c), { token: outsider.token }), 403, 'forbidden', 'outsider removes a member');
  assertHttpError(await api(srv, 'DELETE', path(a), { token: b.token }), 403, 'forbidden', 'member removes the owner');
  assert.deepEqual(await members(), sortIds(users.map((u) => u.user.id)), 'refused removals changed nothing');

  // the owner removes c
  const r1 = await api(srv, 'DELETE', path(c), { token: a.token });
  assert.equal(r1.status, 204, show(r1));
  assert.deepEqual(await members(), sortIds([a, b, d, e].map((u) => u.user.id)));
  assertHttpError(await api(srv, 'GET', `/v1/channels/${ch.id}`, { token: c.token }), 403, 'forbidden', 'removed member reads the channel');
  // removing a non-member: 404 (c again, and someone never in it)
  assertHttpError(await api(srv, 'DELETE', path(c), { token: a.token }), 404, 'not_found', 'remove a removed member');
  assertHttpError(await api(srv, 'DELETE', path(outsider), { token: a.token }), 404, 'not_found', 'remove a never-member');

  // b leaves by itself
  const r2 = await api(srv, 'DELETE', path(b), { token: b.token });
  assert.equal(r2.status, 204, show(r2));
  assert.deepEqual(await members(), sortIds([a, d, e].map((u) => u.user.id)));
  assertHttpError(await api(srv, 'GET', `/v1/channels/${ch.id}`, { token: b.token }), 403, 'forbidden', 'b after leaving');

  // the owner leaves: the lowest remaining member id becomes the owner
  const r3 = await api(srv, 'DELETE', path(a), { token: a.token });
  assert.equal(r3.status, 204, show(r3));
  const remaining = [d, e];
  const expectOwnerId = minId(remaining.map((u) => u.user.id));
  const newOwner = remaining.find((u) => u.user.id === expectOwnerId);
  const other = remaining.find((u) => u.user.id !== expectOwnerId);
  const got = await getChannel(d, ch.id);
  assert.deepEqual(sortIds(got.members), sortIds(remaining.map((u) => u.user.id)));
  assert.equal(got.owner, expectOwnerId, 'ownership passes to the lowest remaining member id');
  // and the new owner has the owner's rights, the other member still not
  assertHttpError(await api(srv, 'PATCH', `/v1/channels/${ch.id}`, { token: other.token, body: { name: 'x' } }), 403, 'forbidden', 'rename by the non-owner');
  const rn = await api(srv, 'PATCH', `/v1/channels/${ch.id}`, { token: newOwner.token, body: { name: 'Renamed by heir' } });
  assert.equal(rn.status, 200, show(rn));
  assert.equal(rn.body.channel.owner, expectOwnerId);

  // every change is in the history, in order, with who did it and to whom
  const h = await fullHistory(srv, d.token, ch.id);
  assert.equal(gapFree(h.map((m) => m.seq), 'seq'), null);
  const evs = h.filter((m) => m.event).slice(-4).map((m) => ({ event: m.event, user: m.user, from: m.from, text: m.text }));
  assert.deepEqual(evs, [
    { event: 'member_removed', user: c.user.id, from: a.user.id, text: '' },
    { event: 'member_removed', user: b.user.id, from: b.user.id, text: '' },
    { event: 'member_removed', user: a.user.id, from: a.user.id, text: '' },
    { event: 'renamed', user: evs[3]?.user, from: expectOwnerId, text: 'Renamed by heir' },
  ]);
}));

test('non-members: send is forbidden (ws and HTTP), history 403 (HTTP) and forbidden (ws)', T, () => t(async (track) => {
  const [a, b, x] = await Promise.all(['nma', 'nmb', 'nmx'].map((n) => newUser(srv, n)));
  const ch = await createGroup(a, 'Closed', [b]);
  assert.equal((await sendHttp(a, ch.id, 'secret', 'nm-1')).status, 201);
  const before = await fullHistory(srv, a.token, ch.id);
  const X = track(await connectWs(srv, { token: x.token, label: 'X' }));
  assertWsError(await X.request({ op: 'send', channel: ch.id, text: 'intrude', cmid: 'nm-x' }), 'forbidden', 'ws send by a non-member');
  assertWsError(await X.request({ op: 'history', channel: ch.id, after_seq: 0, limit: 10 }), 'forbidden', 'ws history by a non-member');
  assertHttpError(await sendHttp(x, ch.id, 'intrude', 'nm-x2'), 403, 'forbidden', 'HTTP send by a non-member');
  assertHttpError(await api(srv, 'GET', `/v1/channels/${ch.id}/messages?after_seq=0`, { token: x.token }), 403, 'forbidden', 'HTTP history by a non-member');
  await X.roundTrip();
  assert.deepEqual(await fullHistory(srv, a.token, ch.id), before, 'nothing stored');
  const sx = await api(srv, 'GET', '/v1/sync?after=0', { token: x.token });
  assert.deepEqual(sx.body.messages, [], 'the outsider\'s inbox is empty');
}));

test('membership events: live to every device concerned in seq order, in history and sync, with event/user/from/text', T, () => t(async (track) => {
  const [a, b, c, d, x] = await Promise.all(['eva', 'evb', 'evc', 'evd', 'evx'].map((n) => newUser(srv, n)));
  const a2 = await newDevice(srv, a, 'a-second');
  const ch = await createGroup(a, 'Events', [b, c]);
  assert.equal((await sendHttp(a, ch.id, 'pre 1', 'ev-p1')).status, 201);
  assert.equal((await sendHttp(b, ch.id, 'pre 2', 'ev-p2')).status, 201);
  const base = await lastSeq(a, ch.id);

  const A1 = track(await connectWs(srv, { token: a.token, label: 'A1' }));
  const A2 = track(await connectWs(srv, { token: a2.token, label: 'A2' }));
  const B = track(await connectWs(srv, { token: b.token, label: 'B' }));
  const C = track(await connectWs(srv, { token: c.token, label: 'C' }));
  const D = track(await connectWs(srv, { token: d.token, label: 'D' })); // not a member yet
  const X = track(await connectWs(srv, { token: x.token, label: 'X' })); // never a member
  const sockets = { A1, A2, B, C, D, X };
  const ready = Object.fromEntries(Object.entries(sockets).map(([k, s]) => [k, s.ready.pos]));
  const isEvMsg = (f) => f.op === 'msg' && f.channel === ch.id;

  // 1. b adds d
  const add = await api(srv, 'POST', `/v1/channels/${ch.id}/members`, { token: b.token, body: { user_id: d.user.id } });
  assert.equal(add.status, 200, show(add));
  // 2. a renames
  const rn = await api(srv, 'PATCH', `/v1/channels/${ch.id}`, { token: a.token, body: { name: 'Events 2' } });
  assert.equal(rn.status, 200, show(rn));
  // 3. a removes c
  const rm = await api(srv, 'DELETE', `/v1/channels/${ch.id}/members/${c.user.id}`, { token: a.token });
  assert.equal(rm.status, 204, show(rm));
  // 4. b sends a message (c must not get it)
  const post = await B.request({ op: 'send', channel: ch.id, text: 'after c left', cmid: 'ev-after' });
  assert.equal(post.op, 'ack', JSON.stringify(post));
  assert.equal(post.seq, base + 4);
  // 5. d leaves
  const lv = await api(srv, 'DELETE', `/v1/channels/${ch.id}/members/${d.user.id}`, { token: d.token });
  assert.equal(lv.status, 204, show(lv));

  const E = [
    { event: 'member_added', user: d.user.id, from: b.user.id, text: '' },
    { event: 'renamed', from: a.user.id, text: 'Events 2' },
    { event: 'member_removed', user: c.user.id, from: a.user.id, text: '' },
    { event: undefined, from: b.user.id, text: 'after c left' },
    { event: 'member_removed', user: d.user.id, from: d.user.id, text: '' },
  ];
  // who is concerned by each of the 5 messages (index into E)
  const expectFor = {
    A1: [0, 1, 2, 3, 4], A2: [0, 1, 2, 3, 4],
    B: [0, 1, 2, 4], // B sent #3 from this socket: it got the ack instead
    C: [0, 1, 2], // removed by #2: learns of its removal, then nothing more
    D: [0, 1, 2, 3, 4], // member from #0 on, learns of its own leaving
    X: [],
  };
  const seen = {};
  for (const [k, s] of Object.entries(sockets)) {
    seen[k] = await s.waitForN(isEvMsg, expectFor[k].length, { what: `${k} event msg` });
  }
  for (const s of Object.values(sockets)) await s.roundTrip();
  const byIdx = [];
  for (const [k, s] of Object.entries(sockets)) {
    const got = s.received(isEvMsg);
    assert.equal(got.length, expectFor[k].length, `${k}: exactly ${expectFor[k].length} msg of the channel, got ${JSON.stringify(got)}`);
    got.forEach((m, j) => {
      const i = expectFor[k][j];
      const e = E[i];
      assert.equal(m.seq, base + 1 + i, `${k} msg ${j}: seq (in seq order)`);
      // every socket here belongs to a user concerned from the first change on: message i has
      // that user's pos ready+1+i (B's own message #3 included: it got the ack with that pos)
      assert.equal(m.pos, ready[k] + 1 + i, `${k} msg ${j}: this user's inbox pos`);
      assert.equal(m.from, e.from, `${k} msg ${j}: from`);
      assert.equal(m.text, e.text, `${k} msg ${j}: text`);
      assert.equal(m.event || undefined, e.event, `${k} msg ${j}: event, got ${JSON.stringify(m)}`);
      if (e.user) assert.equal(m.user, e.user, `${k} msg ${j}: user`);
      assert.ok(isId(m.id), `${k} msg ${j}: id`);
      if (byIdx[i]) assert.equal(m.id, byIdx[i], `${k} msg ${j}: the same message id for everyone`);
      byIdx[i] = m.id;
    });
  }
  assert.deepEqual(B.received((f) => f.op === 'ack').map((f) => [f.seq, f.pos]), [[base + 4, ready.B + 4]], 'B got its ack, with its pos');

  // history (by a) has the same messages
  const h = await fullHistory(srv, a.token, ch.id);
  assert.equal(gapFree(h.map((m) => m.seq), 'seq'), null);
  assert.equal(h.length, base + 5);
  const tailH = h.slice(base);
  tailH.forEach((m, i) => {
    assert.equal(m.id, byIdx[i], `history ${i}: id`);
    assert.equal(m.from, E[i].from, `history ${i}: from`);
    assert.equal(m.text, E[i].text, `history ${i}: text`);
    assert.equal(m.event || undefined, E[i].event, `history ${i}: event, got ${JSON.stringify(m)}`);
    if (E[i].user) assert.equal(m.user, E[i].user, `history ${i}: user`);
  });

  // sync: c's inbox keeps the entries it got (pre-messages, add, rename, its removal), nothing after
  const sc = await api(srv, 'GET', `/v1/sync?after=${ready.C}`, { token: c.token });
  assert.equal(sc.status, 200, show(sc));
  assert.deepEqual(sc.body.messages.map(eventView), [0, 1, 2].map((i) => eventView({ id: byIdx[i], channel: ch.id, seq: base + 1 + i, ...E[i] })),
    'c\'s sync after ready: exactly the three events up to its removal');
  assert.deepEqual(sc.body.messages.map((m) => m.pos), [ready.C + 1, ready.C + 2, ready.C + 3]);
  const scAll = await api(srv, 'GET', '/v1/sync?after=0', { token: c.token });
  assert.deepEqual(scAll.body.messages.filter((m) => !m.event).map((m) => m.text), ['pre 1', 'pre 2'], 'c keeps the old messages');
  // d's inbox: from its addition to its leaving
  const sd = await api(srv, 'GET', '/v1/sync?after=0', { token: d.token });
  assert.deepEqual(sd.body.messages.map((m) => m.id), byIdx, 'd\'s inbox: exactly the 5 messages from its addition on');
  assert.deepEqual(sd.body.messages.map((m) => m.pos), [1, 2, 3, 4, 5]);
  // x's: nothing
  const sx = await api(srv, 'GET', '/v1/sync?after=0', { token: x.token });
  assert.deepEqual(sx.body.messages, []);
}));

test('101st member refused with nothing changed', T_BIG, () => t(async (track) => {
  const users = await userPool();
  const owner = users[0];
  const ch = await createGroup(owner, 'Full', users.slice(1, 100));
  const before = await getChannel(owner, ch.id);
  assert.equal(before.members.length, 100);
  const histBefore = await fullHistory(srv, owner.token, ch.id);
  const O = track(await connectWs(srv, { token: owner.token, label: 'owner' }));
  const M = track(await connectWs(srv, { token: users[50].token, label: 'member' }));
  const N = track(await connectWs(srv, { token: users[100].token, label: 'the 101st' }));

  // by the owner and by another member: 400 too_large
  assertHttpError(await api(srv, 'POST', `/v1/channels/${ch.id}/members`, { token: owner.token, body: { user_id: users[100].user.id } }),
    400, 'too_large', 'owner adds a 101st');
  assertHttpError(await api(srv, 'POST', `/v1/channels/${ch.id}/members`, { token: users[50].token, body: { user_id: users[100].user.id } }),
    400, 'too_large', 'member adds a 101st');
  const after = await getChannel(owner, ch.id);
  assert.deepEqual(sortIds(after.members), sortIds(before.members), 'member list identical');
  assert.equal(after.owner, before.owner);
  assert.equal(after.name, before.name);
  assert.deepEqual(await fullHistory(srv, owner.token, ch.id), histBefore, 'no message stored');
  assertHttpError(await api(srv, 'GET', `/v1/channels/${ch.id}`, { token: users[100].token }), 403, 'forbidden', 'the 101st is not a member');
  for (const s of [O, M, N]) await s.roundTrip();
  for (const s of [O, M, N]) assert.deepEqual(s.received((f) => f.op === 'msg'), [], `${s.label}: no msg`);

  // after someone leaves, the 101st fits
  const lv = await api(srv, 'DELETE', `/v1/channels/${ch.id}/members/${users[99].user.id}`, { token: users[99].token });
  assert.equal(lv.status, 204, show(lv));
  const ok = await api(srv, 'POST', `/v1/channels/${ch.id}/members`, { token: users[50].token, body: { user_id: users[100].user.id } });
  assert.equal(ok.status, 200, show(ok));
  assert.equal(ok.body.channel.members.length, 100);
  // and now it is full again
  assertHttpError(await api(srv, 'POST', `/v1/channels/${ch.id}/members`, { token: owner.token, body: { user_id: users[99].user.id } }),
    400, 'too_large', 're-adding the one who left, into a full group');
}));

test('100-member group: concurrent senders, every member gets every message once, in seq order, consecutive pos; removal', T_BIG, () => t(async (track) => {
  const users = (await userPool()).slice(0, 100);
  const owner = users[0];
  const ch = await createGroup(owner, 'Hundred', users.slice(1));
  assert.equal(ch.members.length, 100);
  const base = await lastSeq(owner, ch.id);

  const socks = await mapLimit(users, 16, async (u, i) => track(await connectWs(srv, { token: u.token, label: `m${i}` })));
  const readyPos = socks.map((s) => s.ready.pos);
  const SENDERS = [3, 17, 42, 88, 99]; // 5 members, each sends 10 messages, all at once
  const PER = 10;
  const total = SENDERS.length * PER;
  const isMsg = (f) => f.op === 'msg' && f.channel === ch.id;

  const sendsDone = SENDERS.map(async (si) => {
    const s = socks[si];
    const rids = [];
    for (let k = 0; k < PER; k++) {
      const cmid = `h-${si}-${k}`;
      rids.push(cmid);
      s.send({ op: 'send', rid: cmid, cmid, channel: ch.id, text: `from ${si} #${k}` });
    }
    return Promise.all(rids.map((r) => s.waitFor((f) => f.rid === r, { what: `ack ${r}`, timeoutMs: ms(60000) })));
  });
  const answers = await Promise.all(sendsDone);
  const ackBy = new Map(); // cmid -> ack
  answers.forEach((list, j) => list.forEach((f, k) => {
    assert.equal(f.op, 'ack', `sender ${SENDERS[j]} send ${k}: ${JSON.stringify(f)}`);
    ackBy.set(f.cmid, f);
  }));
  const seqs = [...ackBy.values()].map((f) => f.seq).sort((x, y) => x - y);
  assert.deepEqual(seqs, Array.from({ length: total }, (_, i) => base + 1 + i), 'the acks hold seq base+1..base+50, each once');
  const idBySeq = new Map([...ackBy.values()].map((f) => [f.seq, f.id]));

  // every member: its msgs arrive in seq order, consecutive pos, each message exactly once
  await mapLimit(socks.map((s, i) => i), 20, async (i) => {
    const s = socks[i];
    const own = SENDERS.includes(i) ? PER : 0;
    await s.waitForN(isMsg, total - own, { what: `msg for member ${i}`, timeoutMs: ms(60000) });
    await s.roundTrip();
  });
  for (let i = 0; i < socks.length; i++) {
    const s = socks[i];
    const sender = SENDERS.includes(i);
    const msgs = s.received(isMsg);
    const acks = s.received((f) => f.op === 'ack');
    assert.equal(msgs.length, total - (sender ? PER : 0), `member ${i}: number of msg frames`);
    assert.equal(acks.length, sender ? PER : 0, `member ${i}: number of acks`);
    for (let k = 1; k < msgs.length; k++) {
      assert.ok(msgs[k].seq > msgs[k - 1].seq, `member ${i}: msg seq in order, got ${msgs[k - 1].seq} then ${msgs[k].seq}`);
      assert.ok(msgs[k].pos > msgs[k - 1].pos, `member ${i}: msg pos in order`);
    }
    for (const m of msgs) {
      assert.equal(m.id, idBySeq.get(m.seq), `member ${i}: msg seq ${m.seq} is the acknowledged message`);
      assert.equal(m.channel, ch.id);
      if (sender) assert.notEqual(m.from, users[i].user.id, `member ${i}: the sending device got a msg for its own send`);
    }
    // msgs and acks together: every seq once, every pos of this member's inbox once, consecutive
    const bySeq = [...msgs, ...acks].sort((x, y) => x.seq - y.seq);
    assert.deepEqual(bySeq.map((f) => f.seq), seqs, `member ${i}: every message exactly once`);
    assert.deepEqual(bySeq.map((f) => f.pos), Array.from({ length: total }, (_, k) => readyPos[i] + 1 + k),
      `member ${i}: strictly consecutive pos after ready.pos ${readyPos[i]}, in seq order`);
  }
  // texts and senders as sent
  const any = socks[1].received(isMsg);
  for (const m of any) {
    const [, si, k] = m.cmid.split('-');
    assert.equal(m.text, `from ${si} #${k}`);
    assert.equal(m.from, users[Number(si)].user.id);
  }
  // stored once: history is exactly the 50, gap-free
  const h = await fullHistory(srv, users[7].token, ch.id);
  assert.equal(h.length, base + total);
  assert.equal(gapFree(h.map((m) => m.seq), 'history seq'), null);
  assert.deepEqual(h.slice(base).map((m) => m.id), seqs.map((q) => idBySeq.get(q)));
  // a member's inbox via sync: the same 50 with its pos
  const s60 = await api(srv, 'GET', `/v1/sync?after=${readyPos[60]}&limit=100`, { token: users[60].token });
  assert.deepEqual(s60.body.messages.map((m) => m.pos), Array.from({ length: total }, (_, k) => readyPos[60] + 1 + k));
  assert.deepEqual(s60.body.messages.map((m) => m.seq), seqs);

  // removal: the owner removes member 60; everyone (60 too) gets the event, then 60 gets nothing
  for (const s of socks) s.take(); // forget what was waited for already
  const cut = socks.map((s) => s.all.length);
  const victim = users[60];
  const rm = await api(srv, 'DELETE', `/v1/channels/${ch.id}/members/${victim.user.id}`, { token: owner.token });
  assert.equal(rm.status, 204, show(rm));
  const evs = await mapLimit(socks, 20, (s) => s.waitFor((f) => isMsg(f) && f.event === 'member_removed', { what: 'member_removed', timeoutMs: ms(30000) }));
  evs.forEach((f, i) => {
    assert.equal(f.user, victim.user.id, `member ${i}: removed user`);
    assert.equal(f.from, owner.user.id, `member ${i}: removed by`);
    assert.equal(f.text, '');
    assert.equal(f.seq, base + total + 1);
    assert.equal(f.pos, readyPos[i] + total + 1, `member ${i}: the event's pos`);
  });
  const last = await socks[3].request({ op: 'send', channel: ch.id, text: 'after the removal', cmid: 'h-after' });
  assert.equal(last.op, 'ack', JSON.stringify(last));
  assert.equal(last.seq, base + total + 2);
  await mapLimit(socks.map((s, i) => i).filter((i) => i !== 60 && i !== 3), 20,
    (i) => socks[i].waitFor((f) => isMsg(f) && f.cmid === 'h-after', { what: `member ${i}: the message after the removal`, timeoutMs: ms(30000) }));
  await socks[60].roundTrip();
  assert.deepEqual(socks[60].all.slice(cut[60]).filter(isMsg).map((f) => f.event ?? f.text), ['member_removed'],
    'the removed member got its removal and nothing after it');
  // the removed member: history 403, send forbidden, sync still has the old entries
  assertHttpError(await api(srv, 'GET', `/v1/channels/${ch.id}/messages?after_seq=0`, { token: victim.token }), 403, 'forbidden', 'history by the removed member');
  assertWsError(await socks[60].request({ op: 'history', channel: ch.id, after_seq: 0, limit: 10 }), 'forbidden', 'ws history by the removed member');
  assertWsError(await socks[60].request({ op: 'send', channel: ch.id, text: 'still here?', cmid: 'h-ghost' }), 'forbidden', 'send by the removed member');
  const sv = await api(srv, 'GET', `/v1/sync?after=${readyPos[60]}&limit=100`, { token: victim.token });
  assert.equal(sv.status, 200, show(sv));
  assert.deepEqual(sv.body.messages.map((m) => m.seq), [...seqs, base + total + 1], 'the removed member\'s sync keeps the 50 and its removal');
  assert.deepEqual(sv.body.messages.map((m) => m.pos), Array.from({ length: total + 1 }, (_, k) => readyPos[60] + 1 + k));
  assert.equal(sv.body.messages[total].event, 'member_removed');
  assert.equal(sv.body.messages[total].user, victim.user.id);
  assert.equal(sv.body.pos, readyPos[60] + total + 1, 'nothing after the removal in its inbox');
  const gc = await api(srv, 'GET', `/v1/channels/${ch.id}`, { token: owner.token });
  assert.equal(gc.body.channel.members.length, 99);
  assert.ok(!gc.body.channel.members.includes(victim.user.id));
}));

test('create: every open socket of every member gets {op:"channel"} at once; others do not; nothing is stored', T, () =>
  withSockets(srv, async (track) => {
    const [owner, m1, m2, stranger] = await newUsers(srv, 'gn', 4);
    const O = track(await connectWs(srv, { token: owner.token, label: 'O' }));
    const M1 = track(await connectWs(srv, { token: m1.token, label: 'M1' }));
    const M2 = track(await connectWs(srv, { token: m2.token, label: 'M2' }));
    const X = track(await connectWs(srv, { token: stranger.token, label: 'X' }));
    const r = await api(srv, 'POST', '/v1/groups', { token: owner.token, body: { name: 'notice', members: [m1.user.id, m2.user.id] } });
    assert.equal(r.status, 201, show(r));
    const ch = r.body.channel;
    for (const s of [O, M1, M2]) {
      const f = await s.waitFor((g) => g.op === 'channel', { what: `${s.label}: the channel notice` });
      assert.deepEqual(f, { op: 'channel', channel: ch }, `${s.label}: the notice carries the channel as created`);
    }
    await X.roundTrip();
    assert.deepEqual(X.received((g) => g.op === 'channel'), [], 'a non-member gets no notice');
    const h = await api(srv, 'GET', `/v1/channels/${ch.id}/messages`, { token: m1.token });
    assert.deepEqual(h.body.messages, [], 'the notice is not a stored message');
  }));
