// crash.test.mjs — the durability proof: SIGKILL the server while 20 senders stream messages,
// restart on the same data dir, and check that every acknowledged message survived exactly once,
// with gap-free channel seq and inbox pos, and that resending acknowledged cmids stores nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withServer, api, connectWs, fullSyncWs, ms, show } from './lib/harness.mjs';
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
