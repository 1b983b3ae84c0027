// shutdown.test.mjs — SIGTERM while senders stream: the server exits 0, and after a restart every
// acknowledged message is there exactly once, gap-free.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withServer, ms } from './lib/harness.mjs';
import { setupSenders, startStreaming, awaitStreams, verifyDurable, verifyResend } from './lib/durability.mjs';

test('SIGTERM mid-stream exits 0 and loses no acknowledged message', { timeout: ms(240000) }, (t) => withServer({}, async (srv) => {
  const { receiver, senders } = await setupSenders(srv, 10, 'sd');
  const acked = await startStreaming(senders, receiver, { inflight: 8, maxPerSender: 5000, minMs: 1500, minAcks: 100, maxAcks: 30000 });
  assert.ok(acked >= 100, `at least 100 acks before the SIGTERM (got ${acked})`);

  // SIGTERM while the senders keep sending; they stop only when their sockets close
  const exit = await srv.stop(ms(30000));
  assert.deepEqual(exit, { code: 0, signal: null }, 'exit code 0 on SIGTERM');
  await awaitStreams(senders);
  const totalAcks = senders.reduce((n, s) => n + s.stream.acks.size, 0);
  for (const s of senders) {
    for (const [cmid, e] of s.stream.errors) {
      // refusing new sends while shutting down is fine; anything else is not
      if (e.op !== 'error' || e.code !== 'unavailable') assert.fail(`unexpected answer to ${cmid} during shutdown: ${JSON.stringify(e)}`);
    }
  }

  await srv.start();
  const { total } = await verifyDurable(srv, senders, receiver);
  assert.ok(total >= totalAcks, `stored ${total} >= acknowledged ${totalAcks}`);
  const refused = senders.reduce((n, s) => n + s.stream.errors.size, 0);
  const unanswered = senders.reduce((n, s) => n + s.stream.pending.size, 0);
  t.diagnostic(`acknowledged ${totalAcks}, refused (unavailable) ${refused}, unanswered ${unanswered}, stored after restart ${total}`);
  const checked = await verifyResend(srv, senders, receiver, { perSender: 3, maxSenders: 3 });
  assert.equal(checked, 9);
  const again = await srv.stop();
  assert.deepEqual(again, { code: 0, signal: null }, 'exit code 0 on the second SIGTERM');
}));
