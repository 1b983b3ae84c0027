// receipts.test.mjs — read receipts (relay, forward only, clamping, forbidden), unread counts per
// channel (from a second device, after one's own message, across a restart) and typing (relay to
// the other members only, never to the typist's devices, rate limit, forbidden).
//
// Server decisions tested here beyond shared/PROTOCOL.md:
//   {op:"read", channel, seq}: the read seq only moves forward; a seq beyond the channel's last is
//   clamped to it; non-member -> error forbidden; every online device of every member except the
//   reading socket gets {op:"receipt", channel, user, seq} (the reader's other devices included).
//   GET /v1/channels -> {channels:[{channel, last_message, unread}]}, unread = last seq - the
//   caller's read seq, where sending a message marks it read for its sender.
//   {op:"typing", channel}: every online device of the OTHER members gets {op:"typing", channel,
//   user}; non-member -> error forbidden; at most one typing relayed per socket per second.
// Exact seq values assume that creating a group stores no message (docs/PROTOCOL-ADDITIONS.md).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, withServer, api, show, newUser, newDevice, connectWs, ms, sleep, assertWsError, withSockets,
} from './lib/harness.mjs';

const T = { timeout: ms(120000) };

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.cleanup(); });

const t = (fn, server = srv) => withSockets(server, fn);

async function createGroup(server, owner, name, members) {
  const r = await api(server, 'POST', '/v1/groups', { token: owner.token, body: { name, members: members.map((u) => u.user.id) } });
  assert.equal(r.status, 201, `create group ${name}: ${show(r)}`);
  return r.body.channel;
}

async function sendHttp(server, u, channelId, text, cmid) {
  const r = await api(server, 'POST', `/v1/channels/${channelId}/messages`, { token: u.token, body: { text, cmid } });
  assert.equal(r.status, 201, `send ${cmid}: ${show(r)}`);
  return r.body.message;
}

/** GET /v1/channels as u: {channelId -> {unread, last_message}} */
async function unreadOf(server, u) {
  const r = await api(server, 'GET', '/v1/channels', { token: u.token });
  assert.equal(r.status, 200, show(r));
  assert.ok(Array.isArray(r.body.channels), show(r));
  const out = {};
  for (const e of r.body.channels) out[e.channel.id] = e;
  return out;
}

const receiptsAbout = (c, channel, u) => c.received((f) => f.op === 'receipt' && f.channel === channel && f.user === u.user.id);
const typingIn = (c, channel) => c.received((f) => f.op === 'typing' && f.channel === channel);

test('read: receipt to every other device of every member (the reader\'s other device too), not the reading socket; forward only; clamped', T, () => t(async (track) => {
  const [a, b, c, x] = await Promise.all(['rca', 'rcb', 'rcc', 'rcx'].map((n) => newUser(srv, n)));
  const a2 = await newDevice(srv, a, 'a-two');
  const b2 = await newDevice(srv, b, 'b-two');
  const ch = await createGroup(srv, a, 'Readers', [b, c]);
  for (let i = 1; i <= 3; i++) await sendHttp(srv, b, ch.id, `r${i}`, `rc-${i}`);
  const A1 = track(await connectWs(srv, { token: a.token, label: 'A1' }));
  const A2 = track(await connectWs(srv, { token: a2.token, label: 'A2' }));
  const B1 = track(await connectWs(srv, { token: b.token, label: 'B1' }));
  const B2 = track(await connectWs(srv, { token: b2.token, label: 'B2' }));
  const C = track(await connectWs(srv, { token: c.token, label: 'C' }));
  const X = track(await connectWs(srv, { token: x.token, label: 'X' }));
  const receivers = [A2, B1, B2, C];
  const everyone = [A1, ...receivers, X];

  A1.send({ op: 'read', channel: ch.id, seq: 2 });
  for (const r of receivers) {
    const f = await r.waitFor((g) => g.op === 'receipt', { what: `${r.label}: receipt` });
    assert.deepEqual({ op: f.op, channel: f.channel, user: f.user, seq: f.seq }, { op: 'receipt', channel: ch.id, user: a.user.id, seq: 2 }, `${r.label}: the receipt`);
  }
  // backward: changes nothing, relays nothing; then forward again
  A1.send({ op: 'read', channel: ch.id, seq: 1 });
  A1.send({ op: 'read', channel: ch.id, seq: 3 });
  for (const r of receivers) await r.waitFor((g) => g.op === 'receipt' && g.seq === 3, { what: `${r.label}: receipt 3` });
  // beyond the last seq (3): clamped to 3, which is no move at all; then a new message and a
  // read far beyond it: clamped to 4
  A1.send({ op: 'read', channel: ch.id, seq: 1000 });
  const m4 = await sendHttp(srv, c, ch.id, 'r4', 'rc-4');
  assert.equal(m4.seq, 4);
  for (const r of [A1, A2, B1, B2]) await r.waitFor((g) => g.op === 'msg' && g.seq === 4, { what: `${r.label}: msg 4` });
  A1.send({ op: 'read', channel: ch.id, seq: 9007199254740991 });
  for (const r of receivers) await r.waitFor((g) => g.op === 'receipt' && g.seq === 4, { what: `${r.label}: receipt clamped to 4` });

  for (const s of everyone) await s.roundTrip();
  await sleep(300);
  for (const s of everyone) await s.roundTrip();
  for (const r of receivers) {
    // A read that moves nothing (the backward 1, the clamped 1000 -> 3) is not relayed: exactly
    // one receipt per move, never the backward value, never a seq beyond the channel's last.
    const seqs = receiptsAbout(r, ch.id, a).map((f) => f.seq);
    assert.deepEqual(seqs, [2, 3, 4], `${r.label}: receipts about a, one per move, in order`);
  }
  assert.deepEqual(A1.received((f) => f.op === 'receipt'), [], 'the reading socket gets no receipt');
  assert.deepEqual(X.received((f) => f.op === 'receipt'), [], 'a non-member gets no receipt');
  assert.deepEqual(A1.received((f) => f.op === 'error'), [], 'reads raise no error');
  // c's message counts as read by c: no unread for c, whatever receipts that implies
  const uc = await unreadOf(srv, c);
  assert.equal(uc[ch.id].unread, 0, 'c sent the last message: nothing unread for c');
  const ua = await unreadOf(srv, a2);
  assert.equal(ua[ch.id].unread, 0, 'a read everything (clamped read)');
  const ub = await unreadOf(srv, b);
  assert.equal(ub[ch.id].unread, 1, 'b sent 1..3 and has not read 4');

  // a non-member's read is forbidden, and relays nothing
  assertWsError(await X.request({ op: 'read', channel: ch.id, seq: 1, rid: 'x-read' }), 'forbidden', 'read by a non-member');
  await sleep(300);
  for (const s of everyone) await s.roundTrip();
  for (const s of everyone) assert.deepEqual(receiptsAbout(s, ch.id, x), [], `${s.label}: no receipt about the non-member`);
}));

test('unread per channel: from a second device, own messages count as read, forward only, across a restart', T, () => withServer({}, async (s2) => {
  const [a, b, c, d] = await Promise.all(['una', 'unb', 'unc', 'und'].map((n) => newUser(s2, n)));
  const a2 = await newDevice(s2, a, 'a-http'); // a second device that only asks over HTTP
  await t(async (track) => {
    const g = await createGroup(s2, a, 'Unread', [b, c]);
    const sent = [];
    for (let i = 1; i <= 5; i++) sent.push(await sendHttp(s2, b, g.id, `g${i}`, `un-${i}`));
    const dm1 = await api(s2, 'POST', `/v1/users/${a.user.id}/messages`, { token: d.token, body: { text: 'd1', cmid: 'un-d1' } });
    const dm2 = await api(s2, 'POST', `/v1/users/${a.user.id}/messages`, { token: d.token, body: { text: 'd2', cmid: 'un-d2' } });
    assert.equal(dm2.status, 201, show(dm2));
    const dmId = dm1.body.message.channel;

    let u = await unreadOf(s2, a2);
    assert.equal(u[g.id]?.unread, 5, `group unread before any read: ${JSON.stringify(u[g.id])}`);
    assert.equal(u[g.id].last_message.id, sent[4].id, 'last_message is the newest message');
    assert.equal(u[g.id].last_message.seq, 5);
    assert.equal(u[g.id].last_message.text, 'g5');
    assert.equal(u[dmId]?.unread, 2, `direct unread: ${JSON.stringify(u[dmId])}`);
    assert.equal(u[dmId].last_message.text, 'd2');
    const ub0 = await unreadOf(s2, b);
    assert.equal(ub0[g.id].unread, 0, 'b sent all five: nothing unread for b');
    assert.equal((await unreadOf(s2, c))[g.id].unread, 5);

    const A1 = track(await connectWs(s2, { token: a.token, label: 'A1' }));
    const B = track(await connectWs(s2, { token: b.token, label: 'B' }));
    A1.send({ op: 'read', channel: g.id, seq: 2 });
    await B.waitFor((f) => f.op === 'receipt' && f.user === a.user.id && f.seq === 2, { what: 'receipt 2' });
    u = await unreadOf(s2, a2);
    assert.equal(u[g.id].unread, 3, 'after reading 2 of 5, seen from the other device');
    assert.equal(u[dmId].unread, 2, 'the other channel is untouched');

    // backward then forward: read 1 changes nothing
    A1.send({ op: 'read', channel: g.id, seq: 1 });
    A1.send({ op: 'read', channel: g.id, seq: 4 });
    await B.waitFor((f) => f.op === 'receipt' && f.user === a.user.id && f.seq === 4, { what: 'receipt 4' });
    assert.equal((await unreadOf(s2, a2))[g.id].unread, 1, 'read 4 of 5');
    A1.send({ op: 'read', channel: g.id, seq: 2 });
    await A1.roundTrip();
    await sleep(300);
    assert.equal((await unreadOf(s2, a2))[g.id].unread, 1, 'a backward read does not raise unread');

    // a's own message: read by a (unread 0), unread for the others
    const ack = await A1.request({ op: 'send', channel: g.id, text: 'g6 by a', cmid: 'un-a6' });
    assert.equal(ack.op, 'ack', JSON.stringify(ack));
    assert.equal(ack.seq, 6);
    u = await unreadOf(s2, a2);
    assert.equal(u[g.id].unread, 0, 'sending marks the channel read for the sender (read seq 6)');
    assert.equal(u[g.id].last_message.id, ack.id);
    assert.equal((await unreadOf(s2, b))[g.id].unread, 1, 'b: only a\'s message is unread');
    assert.equal((await unreadOf(s2, c))[g.id].unread, 6, 'c read nothing');

    // d reads its direct channel with a: d sent both messages, so it had read them already and
    // the read moves nothing: no receipt; a's own unread of the channel is unchanged
    const Dsock = track(await connectWs(s2, { token: d.token, label: 'D' }));
    Dsock.send({ op: 'read', channel: dmId, seq: 2 });
    await Dsock.roundTrip();
    await sleep(300);
    await A1.roundTrip();
    assert.deepEqual(A1.received((f) => f.op === 'receipt' && f.channel === dmId), [], 'a read that moves nothing is not relayed');
    assert.equal((await unreadOf(s2, a2))[dmId].unread, 2, 'another user\'s read does not change a\'s unread');
  }, s2);

  const r = await s2.stop();
  assert.deepEqual(r, { code: 0, signal: null });
  await s2.start();

  const ua = await unreadOf(s2, a2);
  const dmId = Object.keys(ua).find((id) => ua[id].channel.kind === 'direct');
  const gid = Object.keys(ua).find((id) => ua[id].channel.kind === 'group');
  assert.equal(ua[gid].unread, 0, 'a: group after the restart');
  assert.equal(ua[gid].last_message.seq, 6);
  assert.equal(ua[dmId].unread, 2, 'a: direct after the restart');
  assert.equal((await unreadOf(s2, b))[gid].unread, 1, 'b after the restart');
  assert.equal((await unreadOf(s2, c))[gid].unread, 6, 'c after the restart');
  assert.equal((await unreadOf(s2, d))[dmId].unread, 0, 'd after the restart');

  // reads keep working after the restart, and stay forward only
  await t(async (track) => {
    const C = track(await connectWs(s2, { token: c.token, label: 'C' }));
    const B = track(await connectWs(s2, { token: b.token, label: 'B' }));
    C.send({ op: 'read', channel: gid, seq: 5 });
    await B.waitFor((f) => f.op === 'receipt' && f.user === c.user.id && f.seq === 5, { what: 'c\'s receipt after the restart' });
    assert.equal((await unreadOf(s2, c))[gid].unread, 1);
  }, s2);
}));

test('typing: to every device of the other members only; never the typist\'s devices; forbidden for non-members', T, () => t(async (track) => {
  const [a, b, c, x] = await Promise.all(['tya', 'tyb', 'tyc', 'tyx'].map((n) => newUser(srv, n)));
  const a2 = await newDevice(srv, a, 'a-two');
  const b2 = await newDevice(srv, b, 'b-two');
  const ch = await createGroup(srv, a, 'Typists', [b, c]);
  const A1 = track(await connectWs(srv, { token: a.token, label: 'A1' }));
  const A2 = track(await connectWs(srv, { token: a2.token, label: 'A2' }));
  const B1 = track(await connectWs(srv, { token: b.token, label: 'B1' }));
  const B2 = track(await connectWs(srv, { token: b2.token, label: 'B2' }));
  const C = track(await connectWs(srv, { token: c.token, label: 'C' }));
  const X = track(await connectWs(srv, { token: x.token, label: 'X' }));
  const others = [B1, B2, C];
  const everyone = [A1, A2, ...others, X];
  const hist = async () => {
    const r = await api(srv, 'GET', `/v1/channels/${ch.id}/messages?after_seq=0`, { token: a.token });
    assert.equal(r.status, 200, show(r));
    return r.body.messages;
  };
  const histBefore = await hist();

  A1.send({ op: 'typing', channel: ch.id });
  for (const r of others) {
    const f = await r.waitFor((g) => g.op === 'typing', { what: `${r.label}: typing` });
    assert.deepEqual({ op: f.op, channel: f.channel, user: f.user }, { op: 'typing', channel: ch.id, user: a.user.id }, `${r.label}: the typing frame`);
  }
  assertWsError(await X.request({ op: 'typing', channel: ch.id, rid: 'x-typing' }), 'forbidden', 'typing by a non-member');
  await sleep(500);
  for (const s of everyone) await s.roundTrip();
  for (const r of others) assert.equal(typingIn(r, ch.id).length, 1, `${r.label}: exactly one typing`);
  assert.deepEqual(typingIn(A1, ch.id), [], 'the typing socket gets nothing');
  assert.deepEqual(typingIn(A2, ch.id), [], 'the typist\'s other device gets nothing');
  assert.deepEqual(X.received((f) => f.op === 'typing'), [], 'a non-member gets nothing');
  for (const s of everyone) assert.deepEqual(s.received((f) => f.op === 'typing' && f.user === x.user.id), [], `${s.label}: no typing from the non-member`);
  assert.deepEqual(A1.received((f) => f.op === 'error'), [], 'typing raises no error for a member');

  // typing is not stored
  assert.deepEqual(await hist(), histBefore, 'nothing stored for typing');
}));

test('typing rate limit: 10 frames at once reach a receiver at most twice, dropped silently', T, () => t(async (track) => {
  const [a, b] = await Promise.all(['rla', 'rlb'].map((n) => newUser(srv, n)));
  const ch = await createGroup(srv, a, 'Rate', [b]);
  const B = track(await connectWs(srv, { token: b.token, label: 'B' }));
  const A = track(await connectWs(srv, { token: a.token, label: 'A' }));
  for (let i = 0; i < 10; i++) A.send({ op: 'typing', channel: ch.id });
  await B.waitFor((f) => f.op === 'typing', { what: 'the first typing' });
  // long enough for a server that queued the extras instead of dropping them to show it
  await sleep(3000);
  await A.roundTrip();
  await B.roundTrip();
  const got = typingIn(B, ch.id);
  assert.ok(got.length >= 1 && got.length <= 2, `10 typing frames sent at once reached the receiver ${got.length} times (allowed 1..2)`);
  assert.deepEqual(A.received((f) => f.op === 'error'), [], 'the extra typing frames are dropped silently');
  // after a second, typing is relayed again
  const before = got.length;
  A.send({ op: 'typing', channel: ch.id });
  await B.waitFor((f) => f.op === 'typing', { what: 'typing after the rate window' });
  await B.roundTrip();
  assert.equal(typingIn(B, ch.id).length, before + 1, 'one more typing relayed after the window');
}));
