// crash.test.mjs — the durability proof: SIGKILL the server while 20 senders stream messages,
// restart on the same data dir, and check that every acknowledged message survived exactly once,
// with gap-free channel seq and inbox pos, and that resending acknowledged cmids stores nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withServer, api, connectWs, fullSyncWs, newUser, ms, show } from './lib/harness.mjs';
import { setupSenders, startStreaming, awaitStreams, verifyDurable, verifyResend } from './lib/durability.mjs';

const SENDERS = 20;

test('every acknowledged message survives SIGKILL exactly once, gap-free', { timeout: ms(300000) }, (t) => withServer({}, async (srv) => {
  const { receiver, senders } = await setupSenders(srv, SENDERS, 'cr');

  const acked = await startStreaming(senders, receiver, { inflight: 8, maxPerSender: 10000, minMs: 3000, minAcks: 200, maxAcks: 60000 });
  const killed = await srv.kill(); // mid-stream: every sender still has sends in flight
  assert.equal(killed.signal, 'SIGKILL');
  await awaitStreams(senders);
  const inflightAtKill = senders.reduce((n, s) => n + s.stream.pending.size, 0);
  const totalAcks = senders.reduce((n, s) => n + s.stream.acks.size, 0);
  const errors = senders.flatMap((s) => [...s.stream.errors.values()]);
  assert.deepEqual(errors, [], 'no send was refused before the crash');
  assert.ok(acked >= 200, `the server acknowledged at least 200 messages before the kill (got ${acked})`);
  assert.ok(senders.every((s) => s.stream.acks.size > 0), 'every sender got acks');
  assert.ok(senders.every((s) => s.stream.sent.length < 10000), 'the senders were still streaming at the kill');
  assert.ok(inflightAtKill > 0, 'sends were in flight at the kill');

  await srv.start(); // same data dir
  const { total, channels } = await verifyDurable(srv, senders, receiver);
  assert.ok(total >= totalAcks, `stored ${total} >= acknowledged ${totalAcks}`);
  assert.ok(total <= totalAcks + inflightAtKill, `stored ${total} <= acknowledged ${totalAcks} + in flight ${inflightAtKill}`);
  t.diagnostic(`acknowledged ${totalAcks}, in flight at SIGKILL ${inflightAtKill}, stored after restart ${total}`);

  // resending acknowledged cmids returns the original acks and stores nothing new
  const checked = await verifyResend(srv, senders, receiver, { perSender: 3, maxSenders: 5 });
  assert.equal(checked, 15);
  const rws = await connectWs(srv, { token: receiver.token, label: 'receiver after resend' });
  try {
    assert.equal(rws.ready.pos, total, 'receiver pos unchanged by the resends');
    const tail = await fullSyncWs(rws, total, 500);
    assert.deepEqual(tail, []);
  } finally {
    rws.terminate();
  }
  for (const [s, info] of [...channels].slice(0, 5)) {
    const r = await api(srv, 'GET', `/v1/channels/${info.channel}/messages?before_seq=${info.count + 100}&limit=1`, { token: s.token });
    assert.equal(r.status, 200, show(r));
    assert.equal(r.body.messages[0].seq, info.count, `${s.prefix}: newest seq unchanged by the resends`);
  }

  // and new messages continue the sequences without a gap
  const s0 = senders[0];
  const ws = await connectWs(srv, { token: s0.token, label: 'after crash' });
  try {
    const f = await ws.request({ op: 'send', to: receiver.user.id, text: 'after the crash', cmid: 'after-crash' });
    assert.equal(f.op, 'ack', JSON.stringify(f));
    assert.equal(f.seq, channels.get(s0).count + 1);
  } finally {
    ws.terminate();
  }
  for (const s of senders) s.ws.terminate();
  const r = await srv.stop();
  assert.deepEqual(r, { code: 0, signal: null }, 'clean exit on SIGTERM after the recovery');
}));

test('acknowledged edits and deletes survive SIGKILL; each changed message shows its change exactly when its event is stored', { timeout: ms(120000) }, (t) => withServer({}, async (srv) => {
  const [a, b] = [await newUser(srv, 'cea'), await newUser(srv, 'ceb')];
  const N = 300;
  let w = await connectWs(srv, { token: a.token, label: 'A' });
  const ids = [];
  for (let i = 0; i < N; i += 50) {
    const acks = await Promise.all(Array.from({ length: 50 }, (_, k) =>
      w.request({ op: 'send', to: b.user.id, text: `m${i + k}`, cmid: `ce${i + k}` })));
    for (const f of acks) { assert.equal(f.op, 'ack', JSON.stringify(f)); ids.push(f.id); }
  }
  const channel = (await w.request({ op: 'send', to: b.user.id, text: 'last', cmid: 'ce-last' })).channel;

  // every third message deleted, the others edited, 8 in flight; SIGKILL mid-stream
  const acked = new Map();   // message id -> 'edited' | 'deleted'
  const pending = new Set();
  let next = 0;
  let stopped = false;
  const worker = async () => {
    while (!stopped && next < N) {
      const i = next++;
      const kind = i % 3 === 0 ? 'deleted' : 'edited';
      pending.add(ids[i]);
      const req = kind === 'deleted' ? { op: 'delete', id: ids[i] } : { op: 'edit', id: ids[i], text: `edit ${i}` };
      try {
        const f = await w.request(req, { timeoutMs: ms(20000) });
        if (f.op === 'ack') acked.set(ids[i], kind);
        else if (!stopped) throw new Error(JSON.stringify(f));
      } catch (e) { if (!stopped) throw e; return; }
      pending.delete(ids[i]);
    }
  };
  const workers = Array.from({ length: 8 }, worker);
  while (acked.size < 60) await new Promise((r) => setTimeout(r, 5));
  stopped = true;
  const killed = await srv.kill();
  assert.equal(killed.signal, 'SIGKILL');
  await Promise.all(workers);
  const inflight = pending.size;
  assert.ok(next < N, 'the changes were still streaming at the kill');

  await srv.start();
  const all = [];
  for (let after = 0; ;) {
    const r = await api(srv, 'GET', `/v1/channels/${channel}/messages?after_seq=${after}&limit=200`, { token: b.token });
    assert.equal(r.status, 200, show(r));
    all.push(...r.body.messages);
    if (r.body.messages.length < 200) break;
    after = all.at(-1).seq;
  }
  assert.deepEqual(all.map((m) => m.seq), all.map((_, i) => i + 1), 'seq gap-free');
  const byId = new Map(all.map((m) => [m.id, m]));
  const events = all.filter((m) => m.event);
  const eventOf = new Map(events.map((e) => [e.target, e.event]));
  assert.equal(eventOf.size, events.length, 'one event per changed message');
  for (const [id, kind] of acked) assert.equal(eventOf.get(id), kind, `the acked ${kind} of ${id} is stored`);
  assert.ok(events.length <= acked.size + inflight, `stored ${events.length} <= acked ${acked.size} + in flight ${inflight}`);
  ids.forEach((id, i) => {
    const m = byId.get(id);
    const ev = eventOf.get(id);
    if (ev === 'deleted') assert.ok(m.deleted && m.text === '', `${i}: deleted exactly when its event is stored`);
    else if (ev === 'edited') assert.ok(!m.deleted && m.text === `edit ${i}` && m.edited_at > 0, `${i}: edited exactly when its event is stored`);
    else assert.ok(!m.deleted && m.text === `m${i}` && !m.edited_at, `${i}: unchanged without an event: ${JSON.stringify(m)}`);
  });
  t.diagnostic(`changes acked ${acked.size}, in flight at SIGKILL ${inflight}, stored ${events.length}`);
  w = await connectWs(srv, { token: a.token, label: 'A after' });
  try {
    const f = await w.request({ op: 'edit', id: ids[N - 1], text: 'after the crash' });
    assert.equal(f.op, 'ack', JSON.stringify(f));
    assert.equal(f.seq, all.length + 1, 'the next change continues the sequence');
  } finally { w.terminate(); }
}));
