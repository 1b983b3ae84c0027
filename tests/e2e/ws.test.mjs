// ws.test.mjs — the WebSocket protocol: auth, ready, fan-out to devices, catch-up with sync,
// history, idempotent sends (also across a restart), size limits, protocol violations, logout.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, withServer, api, show, newUser, newDevice, openWs, connectWs, fullHistory, gapFree, ms, sleep, withSockets, isId,
} from './lib/harness.mjs';

// every test stops by itself: its waits are bounded, and so is the test
const T = { timeout: ms(120000) };

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.cleanup(); });

const t = (fn, server = srv) => withSockets(server, fn);

test('auth with a bad token is refused', T, () => t(async (track) => {
  const c = track(await openWs(srv, { label: 'badtoken' }));
  c.send({ op: 'auth', token: 'definitely-not-a-token', rid: 'a1' });
  const outcome = await c.nextOrClose((f) => f.op === 'error' || f.op === 'ready', { what: 'auth answer' });
  if (outcome.frame) {
    assert.equal(outcome.frame.op, 'error', `bad token must not get ready: ${JSON.stringify(outcome.frame)}`);
    assert.equal(outcome.frame.code, 'unauthorized');
  } else {
    assert.equal(outcome.close.code, 1008, 'closed with 1008 without an error frame');
  }
  // whatever came first, the socket must not be usable for anything but a new auth: if it is
  // still open, it must not answer a send as an authenticated user
  if (c.isOpen) {
    c.send({ op: 'send', to: '1', text: 'x', cmid: 'x', rid: 's1' });
    const next = await c.nextOrClose((f) => f.rid === 's1', { what: 'answer to send' });
    if (next.frame) {
      assert.equal(next.frame.op, 'error');
      assert.equal(next.frame.code, 'unauthorized');
    } else {
      assert.equal(next.close.code, 1008);
    }
  } else {
    const { code } = await c.waitClose();
    assert.equal(code, 1008);
  }
}));

test('no auth within --auth-timeout closes with 1008', T, () => withServer({ authTimeout: 1 }, async (s2) => {
  const c = await openWs(s2, { label: 'silent' });
  try {
    const t0 = Date.now();
    const { code } = await c.waitClose({ timeoutMs: ms(15000) });
    assert.equal(code, 1008);
    assert.ok(Date.now() - t0 >= 500, 'not closed before the timeout');
    // a socket that authenticates in time stays open past the timeout
    const u = await newUser(s2, 'intime');
    const ok = await connectWs(s2, { token: u.token, label: 'in-time' });
    try {
      await sleep(1500);
      const hb = await ok.request({ op: 'hb' });
      assert.equal(hb.op, 'hb');
    } finally {
      ok.terminate();
    }
  } finally {
    c.terminate();
  }
}));

test('ready carries user, device and the inbox pos', T, () => t(async (track) => {
  const a = await newUser(srv, 'readya', { device: 'phone' });
  const b = await newUser(srv, 'readyb');
  const c1 = track(await connectWs(srv, { token: a.token, label: 'a' }));
  assert.equal(c1.ready.op, 'ready');
  assert.equal(c1.ready.user.id, a.user.id);
  assert.equal(c1.ready.user.username, a.username);
  assert.equal(c1.ready.device, 'phone');
  assert.equal(c1.ready.pos, 0);
  for (let i = 0; i < 3; i++) {
    const r = await api(srv, 'POST', `/v1/users/${a.user.id}/messages`, { token: b.token, body: { text: `r${i}`, cmid: `r${i}` } });
    assert.equal(r.status, 201, show(r));
  }
  const c2 = track(await connectWs(srv, { token: a.token, label: 'a again' }));
  assert.equal(c2.ready.pos, 3);
  assert.equal(c2.ready.device, 'phone');
}));

test('1:1 send: ack to the sending device only, msg to every other device, with each user\'s pos', T, () => t(async (track) => {
  const a = await newUser(srv, 'fana', { device: 'a1' });
  const a2 = await newDevice(srv, a, 'a2');
  const b = await newUser(srv, 'fanb', { device: 'b1' });
  const b2 = await newDevice(srv, b, 'b2');
  const c = await newUser(srv, 'fanc');
  // give b an inbox entry first so that a's and b's positions differ
  const pre = await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: c.token, body: { text: 'from c', cmid: 'c0' } });
  assert.equal(pre.status, 201, show(pre));

  const A1 = track(await connectWs(srv, { token: a.token, label: 'A1' }));
  const A2 = track(await connectWs(srv, { token: a2.token, label: 'A2' }));
  const B1 = track(await connectWs(srv, { token: b.token, label: 'B1' }));
  const B2 = track(await connectWs(srv, { token: b2.token, label: 'B2' }));
  assert.equal(A1.ready.device, 'a1');
  assert.equal(A2.ready.device, 'a2');
  assert.equal(B1.ready.pos, 1);
  assert.equal(B2.ready.pos, 1);
  assert.equal(A1.ready.pos, 0);

  const sent = [];
  for (let i = 0; i < 3; i++) {
    const ack = await A1.request({ op: 'send', to: b.user.id, text: `hi ${i} \u00e9\u4e2d`, cmid: `fan-${i}` });
    assert.equal(ack.op, 'ack', JSON.stringify(ack));
    assert.equal(ack.cmid, `fan-${i}`);
    assert.ok(isId(ack.id), `ack.id: ${JSON.stringify(ack)}`);
    assert.ok(isId(ack.channel), `ack.channel: ${JSON.stringify(ack)}`);
    assert.equal(ack.seq, i + 1);
    assert.equal(ack.pos, i + 1, 'ack.pos is the sender\'s inbox pos');
    assert.equal(typeof ack.ts, 'number');
    sent.push(ack);
  }
  const check = async (client, pos0, who) => {
    const msgs = await client.waitForN((f) => f.op === 'msg', 3, { what: `${who} msg` });
    msgs.forEach((m, i) => {
      assert.equal(m.id, sent[i].id, `${who} msg ${i} id`);
      assert.equal(m.channel, sent[i].channel);
      assert.equal(m.seq, i + 1, `${who} msg ${i} seq (in order)`);
      assert.equal(m.pos, pos0 + i + 1, `${who} msg ${i} pos is ${who}'s inbox pos`);
      assert.equal(m.from, a.user.id);
      assert.equal(m.text, `hi ${i} \u00e9\u4e2d`);
      assert.equal(m.cmid, `fan-${i}`);
      assert.equal(m.ts, sent[i].ts);
    });
  };
  await check(B1, 1, 'B1');
  await check(B2, 1, 'B2');
  await check(A2, 0, 'A2');
  // everything sent before the hb answer has arrived: the sender got acks only, others no acks
  for (const cl of [A1, A2, B1, B2]) await cl.roundTrip();
  assert.deepEqual(A1.all.filter((f) => f.op === 'msg'), [], 'the sending device gets no msg');
  for (const cl of [A2, B1, B2]) assert.deepEqual(cl.all.filter((f) => f.op === 'ack'), [], `${cl.label} gets no ack`);
  for (const cl of [A2, B1, B2]) assert.equal(cl.all.filter((f) => f.op === 'msg').length, 3, `${cl.label}: exactly 3 msg`);
  // c is not in this channel and was not connected; c's inbox holds only its own message
  const sc = await api(srv, 'GET', '/v1/sync?after=0', { token: c.token });
  assert.deepEqual(sc.body.messages.map((m) => m.text), ['from c']);
}));

test('offline device catches up with sync paging: exactly the missed messages, consecutive pos', T, () => t(async (track) => {
  const a = await newUser(srv, 'offa');
  const b = await newUser(srv, 'offb', { device: 'b1' });
  const b2 = await newDevice(srv, b, 'b2');
  const A = track(await connectWs(srv, { token: a.token, label: 'A' }));
  let B2 = track(await connectWs(srv, { token: b2.token, label: 'B2' }));
  const first = await A.request({ op: 'send', to: b.user.id, text: 'before', cmid: 'off-0' });
  assert.equal(first.op, 'ack');
  const seen = await B2.waitFor((f) => f.op === 'msg', { what: 'first msg' });
  const lastPos = seen.pos;
  assert.equal(lastPos, 1);
  await B2.close();

  const acks = [];
  for (let i = 1; i <= 30; i++) {
    const ack = await A.request({ op: 'send', to: b.user.id, text: `missed ${i}`, cmid: `off-${i}` });
    assert.equal(ack.op, 'ack', JSON.stringify(ack));
    acks.push(ack);
  }

  B2 = track(await connectWs(srv, { token: b2.token, label: 'B2 again' }));
  assert.equal(B2.ready.pos, lastPos + 30, 'ready.pos is the newest inbox pos');
  const got = [];
  let after = lastPos;
  let pages = 0;
  for (;;) {
    const batch = await B2.request({ op: 'sync', after, limit: 7 });
    assert.equal(batch.op, 'batch', JSON.stringify(batch));
    pages++;
    assert.ok(pages <= 5, 'at most 5 pages of 7');
    const expectMore = got.length + batch.messages.length < 30;
    assert.equal(batch.messages.length, expectMore ? 7 : 30 - got.length, `page ${pages} size`);
    assert.equal(batch.more, expectMore, `page ${pages} more`);
    if (batch.messages.length) assert.equal(batch.pos, batch.messages[batch.messages.length - 1].pos, 'batch.pos is the last pos returned');
    got.push(...batch.messages);
    if (!batch.more) break;
    after = batch.messages[batch.messages.length - 1].pos;
  }
  assert.equal(pages, 5);
  assert.deepEqual(got.map((m) => m.pos), Array.from({ length: 30 }, (_, i) => lastPos + 1 + i), 'consecutive pos');
  assert.deepEqual(got.map((m) => m.id), acks.map((x) => x.id));
  assert.deepEqual(got.map((m) => m.seq), acks.map((x) => x.seq));
  assert.deepEqual(got.map((m) => m.text), acks.map((_, i) => `missed ${i + 1}`));
  assert.deepEqual(got.map((m) => m.cmid), acks.map((_, i) => `off-${i + 1}`));
  // nothing after the end
  const end = await B2.request({ op: 'sync', after: lastPos + 30, limit: 7 });
  assert.deepEqual(end.messages, []);
  assert.equal(end.more, false);
  // live messages after ready continue the sequence with no gap
  const live = await A.request({ op: 'send', to: b.user.id, text: 'live', cmid: 'off-live' });
  const m = await B2.waitFor((f) => f.op === 'msg', { what: 'live msg' });
  assert.equal(m.id, live.id);
  assert.equal(m.pos, lastPos + 31);
}));

test('history over ws both ways; another user\'s channel is forbidden', T, () => t(async (track) => {
  const a = await newUser(srv, 'wha');
  const b = await newUser(srv, 'whb');
  const c = await newUser(srv, 'whc');
  const A = track(await connectWs(srv, { token: a.token, label: 'A' }));
  const C = track(await connectWs(srv, { token: c.token, label: 'C' }));
  const acks = [];
  for (let i = 1; i <= 6; i++) acks.push(await A.request({ op: 'send', to: b.user.id, text: `w${i}`, cmid: `w${i}` }));
  const channel = acks[0].channel;
  const seqs = (f) => { assert.equal(f.op, 'batch', JSON.stringify(f)); return f.messages.map((m) => m.seq); };
  assert.deepEqual(seqs(await A.request({ op: 'history', channel, before_seq: 7, limit: 4 })), [6, 5, 4, 3]);
  assert.deepEqual(seqs(await A.request({ op: 'history', channel, before_seq: 3, limit: 4 })), [2, 1]);
  assert.deepEqual(seqs(await A.request({ op: 'history', channel, after_seq: 0, limit: 4 })), [1, 2, 3, 4]);
  assert.deepEqual(seqs(await A.request({ op: 'history', channel, after_seq: 4, limit: 4 })), [5, 6]);
  const full = await A.request({ op: 'history', channel, after_seq: 0, limit: 200 });
  assert.deepEqual(full.messages.map((m) => m.id), acks.map((x) => x.id));
  assert.deepEqual(full.messages.map((m) => m.text), ['w1', 'w2', 'w3', 'w4', 'w5', 'w6']);

  const forb = await C.request({ op: 'history', channel, after_seq: 0, limit: 10 });
  assert.equal(forb.op, 'error', JSON.stringify(forb));
  assert.equal(forb.code, 'forbidden');
  const forbSend = await C.request({ op: 'send', channel, text: 'intrude', cmid: 'intrude' });
  assert.equal(forbSend.op, 'error', JSON.stringify(forbSend));
  assert.equal(forbSend.code, 'forbidden');
  // C's connection still works
  await C.roundTrip();
}));

test('idempotent resend: same cmid -> identical ack, stored once, also after a restart', T, () => withServer({}, async (s2) => {
  const a = await newUser(s2, 'idema');
  const b = await newUser(s2, 'idemb');
  let A = await connectWs(s2, { token: a.token, label: 'A' });
  try {
    const f1 = await A.request({ op: 'send', to: b.user.id, text: 'only once', cmid: 'same-cmid' });
    assert.equal(f1.op, 'ack', JSON.stringify(f1));
    const f2 = await A.request({ op: 'send', to: b.user.id, text: 'only once', cmid: 'same-cmid' });
    assert.equal(f2.op, 'ack', JSON.stringify(f2));
    const pick = (x) => ({ cmid: x.cmid, id: x.id, channel: x.channel, seq: x.seq, pos: x.pos, ts: x.ts });
    assert.deepEqual(pick(f2), pick(f1));
    // another message in between, then the first cmid again
    const other = await A.request({ op: 'send', to: b.user.id, text: 'second', cmid: 'other-cmid' });
    assert.equal(other.seq, 2);
    const f3 = await A.request({ op: 'send', to: b.user.id, text: 'only once', cmid: 'same-cmid' });
    assert.deepEqual(pick(f3), pick(f1));

    const hist = await fullHistory(s2, a.token, f1.channel);
    assert.deepEqual(hist.map((m) => [m.seq, m.cmid, m.text]), [[1, 'same-cmid', 'only once'], [2, 'other-cmid', 'second']]);
    const sb = await api(s2, 'GET', '/v1/sync?after=0', { token: b.token });
    assert.deepEqual(sb.body.messages.map((m) => m.pos), [1, 2]);

    A.terminate();
    const r = await s2.stop();
    assert.deepEqual(r, { code: 0, signal: null }, 'clean exit on SIGTERM');
    await s2.start();

    A = await connectWs(s2, { token: a.token, label: 'A after restart' }); // sessions survive restarts
    const f4 = await A.request({ op: 'send', to: b.user.id, text: 'only once', cmid: 'same-cmid' });
    assert.equal(f4.op, 'ack', JSON.stringify(f4));
    assert.deepEqual(pick(f4), pick(f1), 'same ack after a restart');
    const hist2 = await fullHistory(s2, a.token, f1.channel);
    assert.equal(hist2.length, 2, 'nothing new stored');
    // a new cmid continues the sequences
    const next = await A.request({ op: 'send', to: b.user.id, text: 'third', cmid: 'third-cmid' });
    assert.equal(next.seq, 3);
    assert.equal(next.pos, 3);
    assert.ok(BigInt(next.id) > BigInt(other.id), 'ids keep increasing across restarts');
  } finally {
    A.terminate();
  }
}));

test('100,000 code points of U+1F600 pass intact; 100,001 are too_large; the socket stays usable', T, () => t(async (track) => {
  const a = await newUser(srv, 'biga');
  const b = await newUser(srv, 'bigb');
  const A = track(await connectWs(srv, { token: a.token, label: 'A' }));
  const B = track(await connectWs(srv, { token: b.token, label: 'B' }));
  const text = '\u{1F600}'.repeat(100000);
  assert.equal([...text].length, 100000);
  const ack = await A.request({ op: 'send', to: b.user.id, text, cmid: 'big-ok' }, { timeoutMs: ms(30000) });
  assert.equal(ack.op, 'ack', JSON.stringify(ack).slice(0, 300));
  const m = await B.waitFor((f) => f.op === 'msg' && f.cmid === 'big-ok', { timeoutMs: ms(30000), what: 'the big msg' });
  assert.equal([...m.text].length, 100000, 'code points received');
  assert.ok(m.text === text, 'identical text received');
  assert.equal(Buffer.byteLength(m.text), 400000);

  const over = await A.request({ op: 'send', to: b.user.id, text: text + '\u{1F600}', cmid: 'big-over' }, { timeoutMs: ms(30000) });
  assert.equal(over.op, 'error', JSON.stringify(over).slice(0, 300));
  assert.equal(over.code, 'too_large');
  // 100,001 one-byte code points too
  const overAscii = await A.request({ op: 'send', to: b.user.id, text: 'a'.repeat(100001), cmid: 'big-over-ascii' });
  assert.equal(overAscii.op, 'error', JSON.stringify(overAscii).slice(0, 300));
  assert.equal(overAscii.code, 'too_large');

  const after = await A.request({ op: 'send', to: b.user.id, text: 'small', cmid: 'after-big' });
  assert.equal(after.op, 'ack', JSON.stringify(after));
  assert.equal(after.seq, 2, 'the refused messages took no seq');
  const hist = await fullHistory(srv, a.token, ack.channel);
  assert.deepEqual(hist.map((x) => x.cmid), ['big-ok', 'after-big']);
  assert.ok(hist[0].text === text, 'history returns the big text intact');
}));

test('malformed JSON and unknown ops are bad_request; the connection keeps working; hb -> hb', T, () => t(async (track) => {
  const a = await newUser(srv, 'mala');
  const b = await newUser(srv, 'malb');
  const A = track(await connectWs(srv, { token: a.token, label: 'A' }));

  const hb = await A.request({ op: 'hb', rid: 'hb-1' });
  assert.equal(hb.op, 'hb');
  assert.equal(hb.rid, 'hb-1');

  await A.sendRaw('{"op":"send", "to": ');
  const e1 = await A.waitFor((f) => f.op === 'error', { what: 'error for malformed JSON' });
  assert.equal(e1.code, 'bad_request');
  assert.equal(typeof e1.message, 'string');

  await A.sendRaw('[1,2,3]');
  const e1b = await A.waitFor((f) => f.op === 'error', { what: 'error for a JSON array' });
  assert.equal(e1b.code, 'bad_request');

  const e2 = await A.request({ op: 'no-such-op', rid: 'unk-1' });
  assert.equal(e2.op, 'error');
  assert.equal(e2.code, 'bad_request');
  assert.equal(e2.rid, 'unk-1');

  const e3 = await A.request({ op: 'send', to: b.user.id, cmid: 'no-text' });
  assert.equal(e3.op, 'error');
  assert.equal(e3.code, 'bad_request', 'send without text');

  const ack = await A.request({ op: 'send', to: b.user.id, text: 'still fine', cmid: 'still-fine' });
  assert.equal(ack.op, 'ack', JSON.stringify(ack));
  assert.equal(ack.seq, 1);
  assert.equal(A.isOpen, true);
}));

test('invalid UTF-8 in a text frame closes with 1007', T, () => t(async (track) => {
  const a = await newUser(srv, 'utfa');
  const A = track(await connectWs(srv, { token: a.token, label: 'A' }));
  await A.sendRaw(Buffer.concat([Buffer.from('{"op":"hb","rid":"'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')]), { binary: false });
  const { code } = await A.waitClose();
  assert.equal(code, 1007);
}));

test('a frame over the size limit closes with 1009', T, () => t(async (track) => {
  const a = await newUser(srv, 'hugea');
  const b = await newUser(srv, 'hugeb');
  const A = track(await connectWs(srv, { token: a.token, label: 'A' }));
  A.send({ op: 'send', to: b.user.id, cmid: 'huge', text: 'x'.repeat(3 * 1024 * 1024) });
  const { code } = await A.waitClose({ timeoutMs: ms(20000) });
  assert.equal(code, 1009);
  // nothing stored, server fine
  const s = await api(srv, 'GET', '/v1/sync?after=0', { token: b.token });
  assert.equal(s.status, 200, show(s));
  assert.deepEqual(s.body.messages, []);
}));

test('logout closes that session\'s sockets with 1008, the other session stays, the token dies', T, () => t(async (track) => {
  const a = await newUser(srv, 'outa', { device: 'd1' });
  const a2 = await newDevice(srv, a, 'd2');
  const S1a = track(await connectWs(srv, { token: a.token, label: 'S1a' }));
  const S1b = track(await connectWs(srv, { token: a.token, label: 'S1b' }));
  const S2 = track(await connectWs(srv, { token: a2.token, label: 'S2' }));

  const r = await api(srv, 'DELETE', '/v1/sessions/current', { token: a.token });
  assert.equal(r.status, 204, show(r));
  const [c1, c2] = await Promise.all([S1a.waitClose(), S1b.waitClose()]);
  assert.equal(c1.code, 1008);
  assert.equal(c2.code, 1008);

  const hb = await S2.request({ op: 'hb' });
  assert.equal(hb.op, 'hb');
  assert.equal(S2.isOpen, true);

  const me = await api(srv, 'GET', '/v1/me', { token: a.token });
  assert.equal(me.status, 401, show(me));
  assert.equal(me.body?.error?.code, 'unauthorized');
  const me2 = await api(srv, 'GET', '/v1/me', { token: a2.token });
  assert.equal(me2.status, 200, show(me2));
  // the dead token cannot open a socket either
  const c = track(await openWs(srv, { label: 'dead token' }));
  c.send({ op: 'auth', token: a.token });
  const outcome = await c.nextOrClose((f) => f.op === 'error' || f.op === 'ready', { what: 'auth answer' });
  if (outcome.frame) assert.equal(outcome.frame.code, 'unauthorized', JSON.stringify(outcome.frame));
  else assert.equal(outcome.close.code, 1008);
  // a second logout with the dead token is 401
  const again = await api(srv, 'DELETE', '/v1/sessions/current', { token: a.token });
  assert.equal(again.status, 401, show(again));
}));
