// social.test.mjs — friends (request, accept, list, delete, errors) and presence: transitions
// pushed to friends only and once per change, clean close / logout -> offline at once, silent
// drop -> offline after the presence timeout, quick return -> no flap, presence queries over WS
// and HTTP (strangers omitted), last_active_at across a restart.
//
// Server decisions tested here beyond shared/PROTOCOL.md:
//   PUT /v1/friends/{id} -> 200 {state:"outgoing"|"friends"} (idempotent); DELETE -> 204 (for both);
//   GET /v1/friends -> {friends:[{user, presence:{user_id,status,last_active_at}}], incoming, outgoing};
//   unknown user -> 404; yourself -> 400.
//   --presence-timeout 2 (here): online while a device has an authenticated socket that showed
//   life within 2 s; a clean close of the last device or a logout -> offline at once; a silent
//   drop -> offline after the timeout (we allow timeout + 2 s); a drop and a return within the
//   timeout -> no offline/online flap. Presence pushes {op:"presence", user_id, status,
//   last_active_at} go to friends' online devices once per change. Queries report the caller,
//   friends and users sharing a channel; other ids are omitted.
//
// Every socket here sends a heartbeat every 500 ms so that it keeps "showing life".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, withServer, api, show, newUser, newDevice, connectWs, ms, sleep,
  sortIds, UNKNOWN_ID, assertHttpError, withSockets, isId,
} from './lib/harness.mjs';

const T = { timeout: ms(120000) };
const TIMEOUT_S = 2;
const TIMEOUT_MS = TIMEOUT_S * 1000;
// "at once": well under the presence timeout, so that it cannot be the timeout firing. A push on a
// clean close takes milliseconds even under a sanitizer; this bound is deliberately not scaled.
const AT_ONCE_MS = 1500;
// "after the timeout": the brief allows timeout + 2 s (scaled for slow builds)
const AFTER_TIMEOUT_MS = TIMEOUT_MS + ms(2000);
const HB_MS = 500;

let srv;
before(async () => { srv = await startServer({ presenceTimeout: TIMEOUT_S }); });
after(async () => { await srv?.cleanup(); });

const t = (fn, server = srv) => withSockets(server, fn);

/** connect and keep the socket alive with heartbeats */
async function live(server, u, label, track) {
  const c = track(await connectWs(server, { token: u.token, label }));
  c.heartbeat(HB_MS);
  return c;
}

async function befriend(server, a, b) {
  const r1 = await api(server, 'PUT', `/v1/friends/${b.user.id}`, { token: a.token });
  assert.equal(r1.status, 200, `friend request: ${show(r1)}`);
  const r2 = await api(server, 'PUT', `/v1/friends/${a.user.id}`, { token: b.token });
  assert.equal(r2.status, 200, `friend accept: ${show(r2)}`);
  assert.equal(r2.body.state, 'friends', show(r2));
}

/** unasked presence frames about user u received by client c so far */
const pushesAbout = (c, u) => c.received((f) => f.op === 'presence' && f.rid === undefined && f.user_id === u.user.id);
const isPushAbout = (u, status) => (f) => f.op === 'presence' && f.rid === undefined && f.user_id === u.user.id && (!status || f.status === status);

/** the contract's fields of a presence entry */
const pres = (p) => (p && { user_id: p.user_id, status: p.status, last_active_at: p.last_active_at });

/** the user objects' ids of a list */
const ids = (list) => sortIds(list.map((x) => x.id));

test('friends: request, accept, list, idempotency, delete by either side, 404 and 400', T, () => t(async () => {
  const [a, b, c] = await Promise.all(['fra', 'frb', 'frc'].map((n) => newUser(srv, n)));
  const friendsOf = async (u) => {
    const r = await api(srv, 'GET', '/v1/friends', { token: u.token });
    assert.equal(r.status, 200, show(r));
    assert.ok(Array.isArray(r.body.friends) && Array.isArray(r.body.incoming) && Array.isArray(r.body.outgoing), show(r));
    return r.body;
  };
  const empty = async (u, what) => {
    const f = await friendsOf(u);
    assert.deepEqual({ friends: f.friends, incoming: f.incoming, outgoing: f.outgoing }, { friends: [], incoming: [], outgoing: [] }, what);
  };
  await empty(a, 'a starts with nothing');

  // a asks b
  const r1 = await api(srv, 'PUT', `/v1/friends/${b.user.id}`, { token: a.token });
  assert.equal(r1.status, 200, show(r1));
  assert.equal(r1.body.state, 'outgoing');
  const r1b = await api(srv, 'PUT', `/v1/friends/${b.user.id}`, { token: a.token });
  assert.equal(r1b.status, 200, show(r1b));
  assert.equal(r1b.body.state, 'outgoing', 'asking again is idempotent');
  let fa = await friendsOf(a);
  assert.deepEqual(fa.friends, []);
  assert.deepEqual(fa.incoming, []);
  assert.deepEqual(ids(fa.outgoing), [b.user.id]);
  assert.equal(fa.outgoing[0].username, b.username, 'outgoing holds user objects');
  let fb = await friendsOf(b);
  assert.deepEqual(fb.friends, []);
  assert.deepEqual(ids(fb.incoming), [a.user.id]);
  assert.equal(fb.incoming[0].username, a.username);
  assert.deepEqual(fb.outgoing, []);

  // b asks back: friends, for both
  const r2 = await api(srv, 'PUT', `/v1/friends/${a.user.id}`, { token: b.token });
  assert.equal(r2.status, 200, show(r2));
  assert.equal(r2.body.state, 'friends');
  for (const [u, other] of [[a, b], [b, a]]) {
    const again = await api(srv, 'PUT', `/v1/friends/${other.user.id}`, { token: u.token });
    assert.equal(again.status, 200, show(again));
    assert.equal(again.body.state, 'friends', `${u.username}: PUT on a friend is idempotent`);
    const f = await friendsOf(u);
    assert.deepEqual(f.incoming, [], `${u.username}: no incoming`);
    assert.deepEqual(f.outgoing, [], `${u.username}: no outgoing`);
    assert.equal(f.friends.length, 1, `${u.username}: one friend: ${JSON.stringify(f)}`);
    const [fr] = f.friends;
    assert.equal(fr.user.id, other.user.id);
    assert.equal(fr.user.username, other.username);
    assert.equal(fr.presence.user_id, other.user.id);
    assert.equal(fr.presence.status, 'offline', 'no socket: offline');
    assert.equal(typeof fr.presence.last_active_at, 'number');
  }

  // the presence in the list follows the friend's sockets
  const t0 = Date.now();
  const B = await connectWs(srv, { token: b.token, label: 'B' });
  try {
    B.heartbeat(HB_MS);
    await B.roundTrip();
    fa = await friendsOf(a);
    assert.equal(fa.friends[0].presence.status, 'online', `b has a live socket: ${JSON.stringify(fa.friends)}`);
    assert.ok(fa.friends[0].presence.last_active_at >= t0 - 1000 && fa.friends[0].presence.last_active_at <= Date.now() + 1000,
      `last_active_at is about now: ${fa.friends[0].presence.last_active_at} vs ${t0}`);
  } finally {
    B.terminate();
  }

  // b ends the friendship: gone for both
  const d1 = await api(srv, 'DELETE', `/v1/friends/${a.user.id}`, { token: b.token });
  assert.equal(d1.status, 204, show(d1));
  await empty(a, 'a after b unfriended');
  await empty(b, 'b after unfriending');

  // a request withdrawn by the asker, and one declined by the asked: gone for both
  assert.equal((await api(srv, 'PUT', `/v1/friends/${c.user.id}`, { token: a.token })).body?.state, 'outgoing');
  assert.equal((await api(srv, 'DELETE', `/v1/friends/${c.user.id}`, { token: a.token })).status, 204);
  await empty(a, 'a after withdrawing');
  await empty(c, 'c after a withdrew');
  assert.equal((await api(srv, 'PUT', `/v1/friends/${c.user.id}`, { token: a.token })).body?.state, 'outgoing');
  assert.equal((await api(srv, 'DELETE', `/v1/friends/${a.user.id}`, { token: c.token })).status, 204);
  await empty(a, 'a after c declined');
  await empty(c, 'c after declining');
  // after a delete, a new PUT is a request again (not friends)
  assert.equal((await api(srv, 'PUT', `/v1/friends/${b.user.id}`, { token: a.token })).body?.state, 'outgoing', 'a fresh request after unfriending');

  // errors
  assertHttpError(await api(srv, 'PUT', `/v1/friends/${UNKNOWN_ID}`, { token: a.token }), 404, 'not_found', 'PUT unknown user');
  assertHttpError(await api(srv, 'DELETE', `/v1/friends/${UNKNOWN_ID}`, { token: a.token }), 404, 'not_found', 'DELETE unknown user');
  assertHttpError(await api(srv, 'PUT', `/v1/friends/${a.user.id}`, { token: a.token }), 400, 'bad_request', 'PUT yourself');
  assertHttpError(await api(srv, 'GET', '/v1/friends'), 401, 'unauthorized', 'GET without a token');
}));

test('presence: pushed to friends only, once per change; clean close of the last device -> offline at once', T, () => t(async (track) => {
  const [a, b, c, d, e] = await Promise.all(['pra', 'prb', 'prc', 'prd', 'pre'].map((n) => newUser(srv, n)));
  const a2 = await newDevice(srv, a, 'a-two');
  const b2 = await newDevice(srv, b, 'b-two');
  await befriend(srv, a, b);
  await befriend(srv, a, e);
  assert.equal((await api(srv, 'DELETE', `/v1/friends/${a.user.id}`, { token: e.token })).status, 204, 'e is a friend no more');
  // c shares a channel with a but is no friend; d is a stranger with a pending request to a
  const dm = await api(srv, 'POST', `/v1/users/${a.user.id}/messages`, { token: c.token, body: { text: 'hi a', cmid: 'pr-c' } });
  assert.equal(dm.status, 201, show(dm));
  assert.equal((await api(srv, 'PUT', `/v1/friends/${a.user.id}`, { token: d.token })).body?.state, 'outgoing');

  const B1 = await live(srv, b, 'B1', track);
  const B2 = await live(srv, b2, 'B2', track);
  const C = await live(srv, c, 'C', track);
  const D = await live(srv, d, 'D', track);
  const E = await live(srv, e, 'E', track);
  const others = [C, D, E];

  // a comes online: each of b's devices gets one "online"
  const t0 = Date.now();
  const A1 = await live(srv, a, 'A1', track);
  for (const B of [B1, B2]) {
    const f = await B.waitFor(isPushAbout(a, 'online'), { what: 'a online' });
    assert.equal(typeof f.last_active_at, 'number');
    assert.ok(f.last_active_at >= t0 - 1000 && f.last_active_at <= Date.now() + 1000, `last_active_at about now: ${f.last_active_at}, t0 ${t0}`);
  }
  // a second device of a: no change, no push
  const A2 = await live(srv, a2, 'A2', track);
  // stay online past the timeout (heartbeats): still no repeated push
  await sleep(TIMEOUT_MS + 1000);
  for (const x of [B1, B2, ...others]) await x.roundTrip();
  for (const B of [B1, B2]) {
    assert.deepEqual(pushesAbout(B, a).map((f) => f.status), ['online'], `${B.label}: exactly one push while a stays online`);
  }
  for (const x of others) assert.deepEqual(pushesAbout(x, a), [], `${x.label} (no friend) gets no presence of a`);

  // the second device closes cleanly: a is still online (A1), no push
  await A2.close();
  await sleep(500);
  for (const B of [B1, B2]) await B.roundTrip();
  for (const B of [B1, B2]) assert.deepEqual(pushesAbout(B, a).map((f) => f.status), ['online'], `${B.label}: no push when one of two devices leaves`);

  // the last device closes cleanly: offline at once
  const tClose = Date.now();
  await A1.close();
  for (const B of [B1, B2]) {
    const f = await B.waitFor(isPushAbout(a, 'offline'), { what: 'a offline after a clean close', timeoutMs: AFTER_TIMEOUT_MS });
    const took = Date.now() - tClose;
    assert.ok(took < AT_ONCE_MS, `${B.label}: offline ${took} ms after the clean close; expected at once (< ${AT_ONCE_MS} ms, the timeout is ${TIMEOUT_MS} ms)`);
    assert.equal(typeof f.last_active_at, 'number');
    assert.ok(f.last_active_at >= t0 && f.last_active_at <= Date.now() + 1000, `offline last_active_at ${f.last_active_at} within the session`);
  }
  // and nothing more once the timeout has passed too (no second offline)
  await sleep(TIMEOUT_MS + 1000);
  for (const x of [B1, B2, ...others]) await x.roundTrip();
  for (const B of [B1, B2]) assert.deepEqual(pushesAbout(B, a).map((f) => f.status), ['online', 'offline'], `${B.label}: one push per change`);
  for (const x of others) assert.deepEqual(pushesAbout(x, a), [], `${x.label} (no friend) gets no presence of a`);
  // a never got presence pushes about the non-friends either
  for (const A of [A1, A2]) {
    for (const u of [c, d, e]) assert.deepEqual(pushesAbout(A, u), [], `${A.label}: no presence of non-friend ${u.username}`);
  }
}));

test('presence: logout of the last device -> offline at once', T, () => t(async (track) => {
  const [a, b] = await Promise.all(['loa', 'lob'].map((n) => newUser(srv, n)));
  await befriend(srv, a, b);
  const B = await live(srv, b, 'B', track);
  const A = await live(srv, a, 'A', track);
  await B.waitFor(isPushAbout(a, 'online'), { what: 'a online' });
  const tOut = Date.now();
  const r = await api(srv, 'DELETE', '/v1/sessions/current', { token: a.token });
  assert.equal(r.status, 204, show(r));
  await B.waitFor(isPushAbout(a, 'offline'), { what: 'a offline after logout', timeoutMs: AFTER_TIMEOUT_MS });
  const took = Date.now() - tOut;
  assert.ok(took < AT_ONCE_MS, `offline ${took} ms after logout; expected at once (< ${AT_ONCE_MS} ms, the timeout is ${TIMEOUT_MS} ms)`);
  await A.waitClose();
  await sleep(TIMEOUT_MS + 1000);
  await B.roundTrip();
  assert.deepEqual(pushesAbout(B, a).map((f) => f.status), ['online', 'offline'], 'one push per change');
}));

test('presence: an abrupt drop -> offline only after the timeout, last_active_at = the last sign of life', T, () => t(async (track) => {
  const [a, b] = await Promise.all(['aba', 'abb'].map((n) => newUser(srv, n)));
  await befriend(srv, a, b);
  const B = await live(srv, b, 'B', track);
  const A = await live(srv, a, 'A', track);
  await B.waitFor(isPushAbout(a, 'online'), { what: 'a online' });
  A.stopHeartbeat();
  const tLife = Date.now();
  await A.roundTrip(); // the last sign of life
  const tDrop = Date.now();
  await A.drop(); // no close frame
  // shortly after: no offline yet, and a query still says online
  await sleep(600);
  const q = await B.request({ op: 'presence', users: [a.user.id] });
  assert.equal(q.op, 'presence', JSON.stringify(q));
  assert.deepEqual(q.presence.map((p) => [p.user_id, p.status]), [[a.user.id, 'online']], 'online right after a silent drop');
  assert.deepEqual(pushesAbout(B, a).map((f) => f.status), ['online'], 'no offline right after a silent drop');

  const f = await B.waitFor(isPushAbout(a, 'offline'), { what: 'a offline after the timeout', timeoutMs: AFTER_TIMEOUT_MS });
  const took = Date.now() - tDrop;
  assert.ok(took >= TIMEOUT_MS - 500, `offline ${took} ms after the drop: not before the ${TIMEOUT_MS} ms timeout`);
  assert.ok(took <= AFTER_TIMEOUT_MS, `offline ${took} ms after the drop (allowed ${AFTER_TIMEOUT_MS})`);
  assert.ok(f.last_active_at >= tLife - 50 && f.last_active_at <= tDrop + 50,
    `last_active_at ${f.last_active_at} is the last sign of life (between ${tLife} and ${tDrop}), not the time the timeout fired`);
  await sleep(TIMEOUT_MS);
  await B.roundTrip();
  assert.deepEqual(pushesAbout(B, a).map((x) => x.status), ['online', 'offline'], 'one push per change');
}));

test('presence: a drop and a return within the timeout -> no flap', T, () => t(async (track) => {
  const [a, b] = await Promise.all(['fla', 'flb'].map((n) => newUser(srv, n)));
  await befriend(srv, a, b);
  const B = await live(srv, b, 'B', track);
  const A = await live(srv, a, 'A', track);
  await B.waitFor(isPushAbout(a, 'online'), { what: 'a online' });
  await A.roundTrip();
  await A.drop();
  await sleep(300);
  const A2 = await live(srv, a, 'A back', track); // same session, a new socket
  // well past the timeout of the dropped socket
  await sleep(TIMEOUT_MS + ms(2500));
  await B.roundTrip();
  assert.deepEqual(pushesAbout(B, a).map((f) => f.status), ['online'], 'no offline/online flap for a quick return');
  const q = await B.request({ op: 'presence', users: [a.user.id] });
  assert.deepEqual(q.presence.map((p) => [p.user_id, p.status]), [[a.user.id, 'online']]);
  // the clean close of the returned socket is a real change
  const tClose = Date.now();
  await A2.close();
  await B.waitFor(isPushAbout(a, 'offline'), { what: 'a offline', timeoutMs: AFTER_TIMEOUT_MS });
  assert.ok(Date.now() - tClose < AT_ONCE_MS, `offline at once after the clean close (${Date.now() - tClose} ms)`);
  assert.deepEqual(pushesAbout(B, a).map((f) => f.status), ['online', 'offline']);
}));

test('presence query (WS and HTTP): the caller and friends only; channel sharers, strangers and requests omitted', T, () => t(async (track) => {
  const [a, b, c, g, d, e] = await Promise.all(['qa', 'qb', 'qc', 'qg', 'qd', 'qe'].map((n) => newUser(srv, n)));
  await befriend(srv, a, b); // friend, online
  const dm = await api(srv, 'POST', `/v1/users/${a.user.id}/messages`, { token: c.token, body: { text: 'hello', cmid: 'q-c' } });
  assert.equal(dm.status, 201, show(dm)); // c opened a direct channel to a, unasked: no friend
  const grp = await api(srv, 'POST', '/v1/groups', { token: g.token, body: { name: 'q', members: [a.user.id] } });
  assert.equal(grp.status, 201, show(grp)); // g added a to a group: no friend either
  assert.equal((await api(srv, 'PUT', `/v1/friends/${e.user.id}`, { token: a.token })).body?.state, 'outgoing'); // a request only
  const t0 = Date.now();
  const A = await live(srv, a, 'A', track);
  const B = await live(srv, b, 'B', track);
  const D = await live(srv, d, 'D', track); // stranger, online
  const E = await live(srv, e, 'E', track); // asked by a, not friends, online
  for (const x of [A, B, D, E]) await x.roundTrip();

  const all = [a, b, c, g, d, e].map((u) => u.user.id).concat([UNKNOWN_ID]);
  const expected = sortIds([a, b].map((u) => u.user.id));
  const statusOf = { [a.user.id]: 'online', [b.user.id]: 'online' };
  const check = (list, what) => {
    assert.ok(Array.isArray(list), `${what}: presence is a list`);
    const byId = [...list].sort((x, y) => (BigInt(x.user_id) < BigInt(y.user_id) ? -1 : 1));
    assert.deepEqual(byId.map((p) => p.user_id), expected, `${what}: exactly the caller and the friend`);
    for (const p of byId) {
      assert.equal(p.status, statusOf[p.user_id], `${what}: status of ${p.user_id}`);
      assert.equal(typeof p.last_active_at, 'number', `${what}: last_active_at of ${p.user_id}`);
      if (p.status === 'online') assert.ok(p.last_active_at >= t0 - 1000, `${what}: online ${p.user_id} was active lately`);
    }
  };
  const w = await A.request({ op: 'presence', users: all, rid: 'pq-1' });
  assert.equal(w.op, 'presence', JSON.stringify(w));
  assert.equal(w.rid, 'pq-1');
  check(w.presence, 'WS');
  const h = await api(srv, 'GET', `/v1/presence?users=${all.join(',')}`, { token: a.token });
  assert.equal(h.status, 200, show(h));
  check(h.body.presence, 'HTTP');

  // from the stranger's side: a is omitted, d itself is reported
  const wd = await D.request({ op: 'presence', users: [a.user.id, d.user.id] });
  assert.deepEqual(wd.presence.map((p) => [p.user_id, p.status]), [[d.user.id, 'online']], 'd sees only itself');
  const hd = await api(srv, 'GET', `/v1/presence?users=${a.user.id}`, { token: d.token });
  assert.equal(hd.status, 200, show(hd));
  assert.deepEqual(hd.body.presence, [], 'd asking about a stranger gets an empty list');
  // one unsolicited message (or adding someone to a group) does not open their presence
  for (const [u, label] of [[c, 'c (sent a a direct message)'], [g, 'g (added a to a group)']]) {
    const r = await api(srv, 'GET', `/v1/presence?users=${a.user.id}`, { token: u.token });
    assert.equal(r.status, 200, show(r));
    assert.deepEqual(r.body.presence, [], `${label} learns nothing of a's presence`);
  }
  assertHttpError(await api(srv, 'GET', `/v1/presence?users=${a.user.id}`), 401, 'unauthorized', 'presence without a token');
}));

test('presence: last_active_at is kept across a restart', T, () => withServer({ presenceTimeout: TIMEOUT_S }, async (s2) => {
  const [a, b] = await Promise.all(['ra', 'rb'].map((n) => newUser(s2, n)));
  await befriend(s2, a, b);
  await t(async (track) => {
    const B = await live(s2, b, 'B', track);
    const t0 = Date.now();
    const A = await live(s2, a, 'A', track);
    await B.waitFor(isPushAbout(a, 'online'), { what: 'a online' });
    await sleep(700);
    await A.roundTrip();
    await A.close();
    const off = await B.waitFor(isPushAbout(a, 'offline'), { what: 'a offline', timeoutMs: AFTER_TIMEOUT_MS });
    assert.ok(off.last_active_at >= t0, `last_active_at ${off.last_active_at} >= ${t0}`);
  }, s2);
  const fr = await api(s2, 'GET', '/v1/friends', { token: b.token });
  assert.equal(fr.status, 200, show(fr));
  const L = fr.body.friends[0].presence.last_active_at;
  assert.equal(fr.body.friends[0].presence.status, 'offline');
  assert.ok(typeof L === 'number' && L > 0, `last_active_at before the restart: ${L}`);

  const r = await s2.stop();
  assert.deepEqual(r, { code: 0, signal: null });
  await s2.start();

  const fr2 = await api(s2, 'GET', '/v1/friends', { token: b.token });
  assert.equal(fr2.status, 200, show(fr2));
  assert.deepEqual(pres(fr2.body.friends[0].presence), { user_id: a.user.id, status: 'offline', last_active_at: L }, 'the same after the restart');
  const hp = await api(s2, 'GET', `/v1/presence?users=${a.user.id}`, { token: b.token });
  assert.equal(hp.status, 200, show(hp));
  assert.deepEqual(hp.body.presence.map(pres), [{ user_id: a.user.id, status: 'offline', last_active_at: L }]);
  await t(async (track) => {
    const B = await live(s2, b, 'B after restart', track);
    const q = await B.request({ op: 'presence', users: [a.user.id] });
    assert.deepEqual(q.presence.map(pres), [{ user_id: a.user.id, status: 'offline', last_active_at: L }], 'WS query after the restart');
  }, s2);
}));
