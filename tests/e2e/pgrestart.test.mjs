// pgrestart.test.mjs — the PostgreSQL store under faults (IYAGI_E2E_STORE=postgres only): the
// database stopped, and SIGKILLed, while senders stream. Every request gets its answer or
// `unavailable` within 5 s, nothing hangs, WebSockets stay open, the node recovers by itself
// when the database is back, and every acknowledged message is there exactly once, gap-free.
// Senders behave like real clients: an `unavailable` send is retried with the same cmid.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { withServer, api, ms, sleep, show, STORE, startPg, stopPg, pgCreateDb, pgScript } from './lib/harness.mjs';
import { setupSenders, verifyDurable, verifyResend } from './lib/durability.mjs';

const SKIP = STORE !== 'postgres' && 'runs with IYAGI_E2E_STORE=postgres';
const PER_SENDER = 400;

/**
 * Sends cmids prefix0..prefix{n-1} to `to`, `inflight` at a time; an error frame with code
 * unavailable resends the same cmid after a pause. Records the ack of each cmid and the longest
 * time any request waited for its answer (ack or error).
 */
function retryingSender(client, { to, prefix, n, inflight = 4, text }) {
  const st = { acks: new Map(), errors: new Map(), sent: [], pending: new Set(), unavailable: 0, otherErrors: [], maxWaitMs: 0 };
  const sentAt = new Map();
  let next = 0;
  let resolveDone;
  st.done = new Promise((r) => { resolveDone = r; });
  const send = (cmid, i) => {
    sentAt.set(cmid, Date.now());
    st.pending.add(cmid);
    client.send({ op: 'send', rid: cmid, cmid, to, text: text(i) });
  };
  const pump = () => {
    while (client.isOpen && st.pending.size < inflight && next < n) {
      const cmid = `${prefix}${next}`;
      st.sent.push(cmid);
      send(cmid, next++);
    }
    if (st.pending.size === 0 && next >= n && resolveDone) resolveDone(st);
  };
  client.keepAll = false;
  client.listeners.push((f) => {
    if (f.rid === undefined || !st.pending.has(f.rid)) return false;
    const waited = Date.now() - sentAt.get(f.rid);
    if (waited > st.maxWaitMs) st.maxWaitMs = waited;
    if (f.op === 'ack') {
      st.pending.delete(f.rid);
      st.acks.set(f.rid, f);
      pump();
    } else if (f.code === 'unavailable') {
      st.unavailable++;
      const i = Number(f.rid.slice(prefix.length));
      setTimeout(() => { if (client.isOpen) send(f.rid, i); }, 200); // stays pending: same cmid again
    } else {
      st.pending.delete(f.rid);
      st.otherErrors.push(f);
      pump();
    }
    return true;
  });
  client.closed.then(() => { if (resolveDone) resolveDone(st); });
  pump();
  return st;
}

function postmasterPid(dir) {
  return Number(fs.readFileSync(path.join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
}

/** An HTTP request while the database is away: answered within 5 s, 503 unavailable. */
async function checkUnavailable(srv, token) {
  const t0 = Date.now();
  const r = await api(srv, 'GET', '/v1/me', { token, timeoutMs: ms(10000) });
  const took = Date.now() - t0;
  assert.ok(took < ms(5500), `GET /v1/me without the database answered in ${took} ms`);
  assert.equal(r.status, 503, show(r));
  assert.equal(r.body.error.code, 'unavailable');
}

test('PostgreSQL stopped and SIGKILLed under load: answers or unavailable within 5 s, recovery, nothing acked lost', { skip: SKIP, timeout: ms(240000) }, async (t) => {
  const pgDir = await startPg();
  try {
    const storeUrl = await pgCreateDb(pgDir);
    await withServer({ storeUrl }, async (srv) => {
      const { receiver, senders } = await setupSenders(srv, 10, 'pg');
      for (const s of senders) {
        s.stream = retryingSender(s.ws, { to: receiver.user.id, prefix: s.prefix, n: PER_SENDER,
          text: (i) => `durable ${s.prefix}${i} \u{1F4E6}` });
      }
      const acked = () => senders.reduce((n, s) => n + s.stream.acks.size, 0);
      const waitAcks = async (k, what) => {
        const t0 = Date.now();
        while (acked() < k) {
          assert.ok(Date.now() - t0 < ms(60000), `${what}: ${acked()} acks, wanted ${k}`);
          await sleep(20);
        }
      };

      // 1. A clean stop (pg_ctl -m fast) mid-stream, then start again.
      await waitAcks(300, 'before the stop');
      pgScript('down', pgDir);
      await checkUnavailable(srv, receiver.token);
      await sleep(2000);
      const duringStop = acked();
      assert.ok(senders.every((s) => s.ws.isOpen), 'the WebSockets stay open while the database is down');
      pgScript('up', pgDir);
      await waitAcks(duringStop + 300, 'after the restart');

      // 2. SIGKILL of the postmaster mid-stream (crash recovery on the next start).
      process.kill(postmasterPid(pgDir), 'SIGKILL');
      await sleep(500);
      await checkUnavailable(srv, receiver.token);
      await sleep(1500);
      pgScript('up', pgDir);

      // Every sender finishes all of its messages: the node recovered by itself.
      let timer;
      const done = await Promise.race([Promise.all(senders.map((s) => s.stream.done)),
        new Promise((res) => { timer = setTimeout(() => res(null), ms(90000)); })]);
      clearTimeout(timer);
      assert.ok(done, `every sender finished (acks ${acked()} of ${senders.length * PER_SENDER})`);
      const unavailable = senders.reduce((n, s) => n + s.stream.unavailable, 0);
      const maxWait = Math.max(...senders.map((s) => s.stream.maxWaitMs));
      assert.deepEqual(senders.flatMap((s) => s.stream.otherErrors), [], 'no error but unavailable');
      assert.ok(unavailable > 0, 'sends during the outages were answered unavailable');
      assert.ok(maxWait < ms(5500), `every send was answered within 5 s (longest ${maxWait} ms)`);
      assert.equal(acked(), senders.length * PER_SENDER, 'every message acknowledged in the end');
      t.diagnostic(`acks ${acked()}, unavailable answers ${unavailable}, longest wait ${maxWait} ms`);

      const { total } = await verifyDurable(srv, senders, receiver);
      assert.equal(total, senders.length * PER_SENDER, 'stored exactly once each');
      assert.equal(await verifyResend(srv, senders, receiver, { perSender: 3, maxSenders: 3 }), 9);
    });
  } finally {
    stopPg(pgDir);
  }
});

test('a --store that cannot be reached, or is no URL, stops the start with one clear line', { timeout: ms(60000) }, async () => {
  const { spawnSync } = await import('node:child_process');
  const { IYAGID } = await import('./lib/harness.mjs');
  const r = spawnSync(IYAGID, ['--listen', '127.0.0.1:0', '--data', '/tmp/iyagi-e2e-nostore', '--store',
    'postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2'], { encoding: 'utf8', timeout: ms(20000) });
  assert.notEqual(r.status, 0, 'exit status');
  assert.match(r.stderr, /postgres|PostgreSQL|database/i, r.stderr);
  assert.ok(r.stderr.trim().split('\n').length <= 3, `a short message: ${r.stderr}`);
  const bad = spawnSync(IYAGID, ['--store', 'mysql://x'], { encoding: 'utf8', timeout: ms(10000) });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--store takes a postgresql:\/\/ URL/);
});
