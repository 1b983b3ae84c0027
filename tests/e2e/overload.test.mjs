// overload.test.mjs — load shedding: past --max-backlog queued sends, new sends are refused with
// `unavailable` (nothing stored), every other send is acknowledged and stored exactly once, the
// connection stays usable, and a refused cmid sent again later is stored.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withServer, newUser, connectWs, fullSyncWs, ms, rid } from './lib/harness.mjs';

test('a deep storage queue refuses new sends with unavailable and loses nothing it accepted', { timeout: ms(120000) }, () =>
  withServer({ extraArgs: ['--max-backlog', '2'] }, async (srv) => {
    const a = await newUser(srv, 'ov');
    const b = await newUser(srv, 'ow');
    const A = await connectWs(srv, { token: a.token, label: 'A' });
    try {
      // Many sends in one burst: the I/O thread queues them faster than a commit (one sync) ends.
      const N = 400;
      const answers = new Map();
      const done = new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${answers.size} of ${N} answered`)), ms(60000));
        A.listeners.push((f) => {
          if ((f.op === 'ack' || f.op === 'error') && f.rid?.startsWith('ov-')) {
            answers.set(f.rid, f);
            if (answers.size === N) { clearTimeout(timer); resolve(); }
            return true;
          }
          return false;
        });
      });
      for (let i = 0; i < N; i++) A.send({ op: 'send', to: b.user.id, text: `burst ${i}`, cmid: `c${i}`, rid: `ov-${i}` });
      await done;

      const acked = [...answers.values()].filter((f) => f.op === 'ack');
      const refused = [...answers.values()].filter((f) => f.op === 'error');
      for (const f of refused) assert.equal(f.code, 'unavailable', `refusal: ${JSON.stringify(f)}`);
      assert.ok(refused.length > 0, `some sends refused with --max-backlog 2 (acked ${acked.length})`);
      assert.ok(acked.length > 0, 'some sends accepted');

      // Exactly the acknowledged messages are stored, once each, gap-free.
      const messages = await fullSyncWs(A, 0);
      const stored = messages.map((m) => m.cmid).sort();
      assert.deepEqual(stored, acked.map((f) => f.cmid).sort(), 'stored = acknowledged');
      assert.deepEqual(messages.map((m) => m.seq), messages.map((_, i) => i + 1), 'seq gap-free');

      // The connection still works, and a refused cmid goes through when sent again.
      const again = refused[0].rid.replace('ov-', '');
      const ack = await A.request({ op: 'send', to: b.user.id, text: `burst ${again}`, cmid: `c${again}`, rid: rid() });
      assert.equal(ack.op, 'ack', JSON.stringify(ack));
      assert.equal(ack.seq, acked.length + 1);

      // The refusals are counted.
      const m = await (await fetch(`${srv.url}/metrics`)).text();
      const shed = Number(/^iyagi_sends_shed_total (\d+)$/m.exec(m)?.[1]);
      assert.equal(shed, refused.length, 'iyagi_sends_shed_total');
    } finally {
      A.close();
    }
  }));

test('a storage queue whose oldest job waited past --max-queue-ms refuses new sends, and loses nothing it accepted', { timeout: ms(180000) }, () =>
  // --max-queue-ms 1: overload measured in time (the head of the queue waited over 1 ms while
  // 512 or more sends wait), not in count (--max-backlog is far away).
  withServer({ extraArgs: ['--max-backlog', '1000000', '--max-queue-ms', '1', '--rate-limits', 'off'] }, async (srv) => {
    const b = await newUser(srv, 'qb');
    const senders = [];
    for (let i = 0; i < 24; i++) {
      const u = await newUser(srv, `q${i}`);
      senders.push({ u, ws: await connectWs(srv, { token: u.token, label: `Q${i}` }), acked: [], refused: [] });
    }
    try {
      // Bursts from 24 sockets at once (each pauses its input at 128 in flight) until the queue
      // has been deep and old enough to refuse some; a fast machine may need more than one.
      const N = 200;
      let refusedAll = 0;
      for (let round = 0; round < 6 && refusedAll === 0; round++) {
        await Promise.all(senders.map((s, si) => new Promise((resolve, reject) => {
          let answered = 0;
          const timer = setTimeout(() => reject(new Error(`sender ${si}: only ${answered} of ${N} answered`)), ms(60000));
          s.ws.listeners.push((f) => {
            if ((f.op === 'ack' || f.op === 'error') && f.rid?.startsWith(`r${round}-`)) {
              (f.op === 'ack' ? s.acked : s.refused).push(f);
              if (++answered === N) { clearTimeout(timer); resolve(); }
              return true;
            }
            return false;
          });
          for (let i = 0; i < N; i++)
            s.ws.send({ op: 'send', to: b.user.id, text: `q ${round} ${i}`, cmid: `c${round}.${i}`, rid: `r${round}-${i}` });
        })));
        refusedAll = senders.reduce((n, s) => n + s.refused.length, 0);
      }
      assert.ok(refusedAll > 0, 'some sends refused with --max-queue-ms 1');
      for (const s of senders) {
        for (const f of s.refused) {
          assert.equal(f.code, 'unavailable', `refusal: ${JSON.stringify(f)}`);
          assert.match(f.message, /server busy/);
        }
        // Exactly the acknowledged messages are stored, once each, gap-free.
        const messages = await fullSyncWs(s.ws, 0);
        assert.deepEqual(messages.map((m) => m.cmid).sort(), s.acked.map((f) => f.cmid).sort(), 'stored = acknowledged');
        assert.deepEqual(messages.map((m) => m.seq), messages.map((_, i) => i + 1), 'seq gap-free');
      }
      const m = await (await fetch(`${srv.url}/metrics`)).text();
      assert.equal(Number(/^iyagi_sends_shed_total (\d+)$/m.exec(m)?.[1]), refusedAll, 'iyagi_sends_shed_total');
    } finally {
      for (const s of senders) s.ws.close();
    }
  }));
