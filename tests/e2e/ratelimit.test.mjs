// ratelimit.test.mjs — the rate limits as they are by default (the only suite that runs the
// server with --rate-limits on; the others drive hundreds of users from 127.0.0.1 with them off):
// signups and logins per address, failed logins per account with a growing back-off, messages,
// new direct chats, presence queries and typing per user. Each limit answers rate_limited (429
// with Retry-After over HTTP, retry_after_ms over WebSocket), stores nothing it refused, and lets
// the same request through once the wait is over.
//
// Users are made with the limits off, then the same data directory is served with them on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  withServer, api, show, newUser, newUsers, login, connectWs, ms, sleep, assertHttpError, fullHistory, PASSWORD,
} from './lib/harness.mjs';

const T = { timeout: ms(120000) };

/** users made with the limits off, then the server restarted with them on */
async function limited(srv, base, count) {
  const users = count ? await newUsers(srv, base, count) : [];
  srv.opts.rateLimits = 'on';
  await srv.restart();
  return users;
}

function assertRateLimited(r, what) {
  assertHttpError(r, 429, 'rate_limited', what);
  const after = Number(r.headers.get('retry-after'));
  assert.ok(Number.isInteger(after) && after >= 1, `${what}: Retry-After in whole seconds, got ${r.headers.get('retry-after')}`);
  return after;
}

test('signups per address: a burst of 10, then 429 rate_limited with Retry-After; nobody is created by a refused signup', T, () => withServer({}, async (srv) => {
  await limited(srv, 'sg', 0);
  const names = Array.from({ length: 12 }, (_, i) => `rls${process.pid % 1000}x${i}`);
  const answers = [];
  for (const username of names) answers.push(await api(srv, 'POST', '/v1/users', { body: { username, password: PASSWORD } }));
  const created = answers.filter((r) => r.status === 201).length;
  assert.equal(created, 10, `10 signups pass: ${answers.map((r) => r.status).join(' ')}`);
  for (const r of answers.slice(10)) assertRateLimited(r, 'the 11th and 12th signup');
  // the refused ones do not exist
  const u = await login(srv, names[0]);
  for (const n of names.slice(10)) {
    const r = await api(srv, 'GET', `/v1/users?username=${n}`, { token: u.token });
    assert.equal(r.status, 404, `${n} was not created: ${show(r)}`);
  }
}));

test('failed logins per account: 5 free, then a growing lock (429 even with the right password) that the wait ends; other accounts are untouched', T, () => withServer({}, async (srv) => {
  const [a, b] = await limited(srv, 'lf', 2);
  const wrong = () => api(srv, 'POST', '/v1/sessions', { body: { username: a.username, password: 'not the password' } });
  for (let i = 1; i <= 6; i++) assertHttpError(await wrong(), 401, 'unauthorized', `wrong password ${i}`);
  const right = () => api(srv, 'POST', '/v1/sessions', { body: { username: a.username, password: PASSWORD } });
  const locked = await right();
  const after = assertRateLimited(locked, 'after 6 failures, even the right password waits');
  assert.equal(after, 1, 'the first lock is 1 s');
  const other = await api(srv, 'POST', '/v1/sessions', { body: { username: b.username, password: PASSWORD } });
  assert.equal(other.status, 201, `another account logs in: ${show(other)}`);
  await sleep(1100);
  // one more failure locks for 2 s now (the back-off grows)
  assertHttpError(await wrong(), 401, 'unauthorized', 'a failure after the lock');
  assert.equal(assertRateLimited(await right(), 'the second lock'), 2, 'the second lock is 2 s');
  await sleep(2100);
  const ok = await right();
  assert.equal(ok.status, 201, `the right password after the wait: ${show(ok)}`);
  // a success forgets the failures: the next wrong one is free again
  assertHttpError(await wrong(), 401, 'unauthorized', 'a failure after a success');
  assert.equal((await right()).status, 201, 'not locked after one failure');
}));

test('logins per address: a burst of 30, then 429 with Retry-After', T, () => withServer({}, async (srv) => {
  const [a] = await limited(srv, 'la', 1);
  // All 40 at once: the address's bucket (30, refilled at 1 per 2 s) is
  // charged as each request arrives, before its password hash. One after
  // the other, 40 Argon2id logins take ~20 s under ThreadSanitizer on a
  // slow machine, time enough to refill 10 and never be refused.
  const answers = await Promise.all(Array.from({ length: 40 }, () =>
    api(srv, 'POST', '/v1/sessions', { body: { username: a.username, password: PASSWORD } })));
  const statuses = answers.map((r) => r.status);
  const passed = statuses.filter((s) => s === 201).length;
  assert.ok(passed >= 30 && passed <= 32, `the burst of 30 passes (and what refilled meanwhile): ${statuses.join(' ')}`);
  assert.equal(passed + statuses.filter((s) => s === 429).length, 40, `every other one is refused: ${statuses.join(' ')}`);
  for (const r of answers.filter((x) => x.status === 429)) assertRateLimited(r, 'past the burst');
}));

test('messages per user: past the burst a send gets rate_limited with retry_after_ms and is not stored; the same cmid later is', T, () => withServer({}, async (srv) => {
  const [a, b] = await limited(srv, 'lm', 2);
  const A = await connectWs(srv, { token: a.token, label: 'A' });
  try {
    const N = 260;
    for (let i = 0; i < N; i++) A.send({ op: 'send', to: b.user.id, text: `m${i}`, cmid: `lm-${i}`, rid: `r${i}` });
    const answers = await A.waitForN((f) => typeof f.rid === 'string' && f.rid.startsWith('r'), N, { timeoutMs: ms(20000) });
    const acks = answers.filter((f) => f.op === 'ack');
    const limitedOnes = answers.filter((f) => f.op === 'error');
    assert.ok(acks.length >= 200 && acks.length < N, `the burst (200) and what refilled pass, the rest is refused: ${acks.length} acks`);
    for (const e of limitedOnes) {
      assert.equal(e.code, 'rate_limited', JSON.stringify(e));
      assert.ok(Number.isInteger(e.retry_after_ms) && e.retry_after_ms >= 1, `retry_after_ms: ${JSON.stringify(e)}`);
    }
    const channel = acks[0].channel;
    const stored = await fullHistory(srv, a.token, channel);
    assert.equal(stored.length, acks.length, 'exactly the acknowledged messages are stored');
    // after the wait, the refused cmid goes through (once)
    const first = limitedOnes[0];
    await sleep(first.retry_after_ms + 50);
    const i = Number(first.rid.slice(1));
    const again = await A.request({ op: 'send', to: b.user.id, text: `m${i}`, cmid: `lm-${i}` });
    assert.equal(again.op, 'ack', JSON.stringify(again));
    assert.equal((await fullHistory(srv, a.token, channel)).length, acks.length + 1);
  } finally {
    A.terminate();
  }
  // over HTTP: 429 with Retry-After once the bucket is empty again
  let r;
  for (let i = 0; i < 300; i++) {
    r = await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: { text: 'h', cmid: `lh-${i}` } });
    if (r.status !== 201) break;
  }
  assertRateLimited(r, 'HTTP send past the burst');
}));

test('new direct chats per user: 30 at once, then rate_limited with nothing stored; existing chats keep working', T, () => withServer({}, async (srv) => {
  const users = await limited(srv, 'ld', 33);
  const [a, ...others] = users;
  const A = await connectWs(srv, { token: a.token, label: 'A' });
  try {
    const answers = [];
    for (const o of others.slice(0, 31)) answers.push(await A.request({ op: 'send', to: o.user.id, text: 'hello', cmid: `ld-${o.user.id}` }));
    assert.equal(answers.slice(0, 30).filter((f) => f.op === 'ack').length, 30, 'the first 30 new chats open');
    const refused = answers[30];
    assert.equal(refused.op, 'error', JSON.stringify(refused));
    assert.equal(refused.code, 'rate_limited');
    const chans = await api(srv, 'GET', '/v1/channels', { token: others[30].token });
    assert.equal(chans.status, 200, show(chans));
    assert.equal(chans.body.channels.length, 0, 'the refused chat was not created');
    // an existing direct chat is no new chat
    const more = await A.request({ op: 'send', to: others[0].user.id, text: 'again', cmid: 'ld-again' });
    assert.equal(more.op, 'ack', JSON.stringify(more));
  } finally {
    A.terminate();
  }
}));

test('presence queries and typing per user: past the burst, queries get rate_limited (429 over HTTP) and typing is dropped', T, () => withServer({}, async (srv) => {
  const [a, b] = await limited(srv, 'lp', 2);
  const A = await connectWs(srv, { token: a.token, label: 'A' });
  const sockets = [A];
  try {
    const answers = [];
    for (let i = 0; i < 25; i++) A.send({ op: 'presence', users: [b.user.id], rid: `p${i}` });
    for (let i = 0; i < 25; i++) answers.push(await A.waitFor((f) => f.rid === `p${i}`));
    assert.ok(answers.filter((f) => f.op === 'presence').length >= 20, 'the burst of 20 is answered');
    const refused = answers.filter((f) => f.op === 'error');
    assert.ok(refused.length >= 1, 'the rest is refused');
    for (const e of refused) assert.equal(e.code, 'rate_limited', JSON.stringify(e));
    assertRateLimited(await api(srv, 'GET', `/v1/presence?users=${b.user.id}`, { token: a.token }), 'HTTP presence past the burst');

    // typing: a user's 15 sockets each type once into the chat; b's socket sees at most 10 of them
    const ack = await A.request({ op: 'send', to: b.user.id, text: 'hi', cmid: 'lp-1' });
    assert.equal(ack.op, 'ack', JSON.stringify(ack));
    const B = await connectWs(srv, { token: b.token, label: 'B' });
    sockets.push(B);
    for (let i = 0; i < 14; i++) sockets.push(await connectWs(srv, { token: a.token, label: `A${i}` }));
    for (const s of sockets.filter((s) => s !== B)) s.send({ op: 'typing', channel: ack.channel });
    await sleep(500);
    await B.roundTrip();
    const seen = B.take((f) => f.op === 'typing').length;
    assert.ok(seen >= 1 && seen <= 10, `typing from one user is capped at its burst: b saw ${seen} of 15`);
  } finally {
    for (const s of sockets) s.terminate();
  }
}));

test('behind a trusted proxy (--trust-proxy) signups count per client, by the last X-Forwarded-For element; without it the header is ignored', T, async () => {
  const signupAs = (srv, username, xff) => api(srv, 'POST', '/v1/users', { body: { username, password: PASSWORD }, headers: { 'x-forwarded-for': xff } });
  const tag = `${process.pid % 1000}`;
  await withServer({ extraArgs: ['--trust-proxy', '127.0.0.1/32'] }, async (srv) => {
    await limited(srv, 'tp', 0);
    for (let i = 0; i < 12; i++) {
      const r = await signupAs(srv, `tpa${tag}x${i}`, `198.51.100.${i + 1}`);
      assert.equal(r.status, 201, `client ${i}, an address of its own: ${show(r)}`);
    }
    // what a client writes itself comes first; the proxy's element is the last one, and counts
    const statuses = [];
    for (let i = 0; i < 11; i++) statuses.push((await signupAs(srv, `tpb${tag}x${i}`, `10.9.9.${i}, 203.0.113.7`)).status);
    assert.deepEqual(statuses, [...Array(10).fill(201), 429], 'one client behind the proxy, whatever it claims before');
  });
  await withServer({}, async (srv) => {
    await limited(srv, 'tq', 0);
    const statuses = [];
    for (let i = 0; i < 11; i++) statuses.push((await signupAs(srv, `tpc${tag}x${i}`, `198.51.100.${i + 1}`)).status);
    assert.deepEqual(statuses, [...Array(10).fill(201), 429], 'no proxy trusted: X-Forwarded-For changes nothing');
  });
});
