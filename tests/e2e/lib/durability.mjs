// durability.mjs — stream messages from many senders, then prove (after a crash or a shutdown
// and a restart) that every acknowledged message is stored exactly once with gap-free seq and pos.
import assert from 'node:assert/strict';
import { newUser, connectWs, streamSender, fullHistory, fullSyncWs, gapFree, ms, sleep, mapLimit } from './harness.mjs';

/** run fn over items with at most n at a time (the harness's mapLimit) */
export const pool = mapLimit;

/** a receiver and `count` senders, each with an authenticated socket */
export async function setupSenders(server, count, tag) {
  const receiver = await newUser(server, `${tag}rcv`);
  const senders = await pool(Array.from({ length: count }, (_, i) => i), 4, async (i) => {
    const u = await newUser(server, `${tag}s${i}`);
    u.ws = await connectWs(server, { token: u.token, label: `${tag}-sender-${i}` });
    u.prefix = `${tag}-${i}-`;
    return u;
  });
  return { receiver, senders };
}

/**
 * Start every sender streaming to the receiver (up to `inflight` unacknowledged sends each).
 * Resolves once `minMs` have passed and at least `minAcks` acks arrived, or `maxAcks` acks arrived
 * (so that a fast server does not make the senders run into maxPerSender), or `maxMs` passed.
 */
export async function startStreaming(senders, receiver, { inflight = 8, maxPerSender = 5000, minMs = 3000, minAcks = 200, maxAcks = Infinity, maxMs = ms(30000) } = {}) {
  for (const s of senders) {
    s.stream = streamSender(s.ws, {
      to: receiver.user.id, prefix: s.prefix, inflight, max: maxPerSender,
      text: (i) => `durable ${s.prefix}${i} \u{1F4E6}`,
    });
  }
  const t0 = Date.now();
  const acked = () => senders.reduce((n, s) => n + s.stream.acks.size, 0);
  while (Date.now() - t0 < maxMs) {
    if (Date.now() - t0 >= minMs && acked() >= minAcks) break;
    if (acked() >= maxAcks) break;
    if (senders.every((s) => s.stream.sent.length >= maxPerSender && s.stream.pending.size === 0)) break;
    await sleep(20);
  }
  return acked();
}

/** wait (bounded) until every stream finished: stopped with nothing in flight, or socket closed */
export async function awaitStreams(senders, timeoutMs = ms(30000)) {
  let timer;
  const all = Promise.all(senders.map((s) => s.stream.done));
  const r = await Promise.race([all, new Promise((res) => { timer = setTimeout(() => res(null), timeoutMs); })]);
  clearTimeout(timer);
  if (r === null) {
    for (const s of senders) s.ws.terminate();
    await all;
  }
}

const cmidIndex = (prefix, cmid) => Number(cmid.slice(prefix.length));

/**
 * After the restart: every ack is present once (id, cmid, seq, pos), channels and inboxes are
 * gap-free, nothing unknown was stored. Returns {total, receiverPos, channels: Map sender->info}.
 */
export async function verifyDurable(server, senders, receiver) {
  const channels = new Map();
  let total = 0;
  const allIds = new Set();
  for (const s of senders) {
    const acks = [...s.stream.acks.values()];
    const sentSet = new Set(s.stream.sent);
    const ws = await connectWs(server, { token: s.token, label: `${s.prefix} verify` });
    try {
      // the sender's inbox = its one direct channel with the receiver
      const inbox = await fullSyncWs(ws, 0, 500);
      const posErr = gapFree(inbox.map((m) => m.pos), `${s.prefix}: sender inbox pos`);
      assert.equal(posErr, null, posErr);
      assert.equal(ws.ready.pos, inbox.length, `${s.prefix}: ready.pos after restart = newest inbox pos`);
      let channel = acks[0]?.channel ?? inbox[0]?.channel;
      if (!channel) { assert.equal(acks.length, 0); continue; }
      for (const a of acks) assert.equal(a.channel, channel, `${s.prefix}: one direct channel`);

      const hist = await fullHistory(server, s.token, channel, 200);
      const seqErr = gapFree(hist.map((m) => m.seq), `${s.prefix}: channel seq`);
      assert.equal(seqErr, null, seqErr);
      assert.equal(hist.length, inbox.length, `${s.prefix}: channel and inbox hold the same messages`);
      assert.deepEqual(inbox.map((m) => m.id), hist.map((m) => m.id), `${s.prefix}: inbox order = seq order`);

      const byId = new Map();
      const byCmid = new Map();
      let prevId = 0n;
      for (const m of hist) {
        assert.equal(m.channel, channel);
        assert.equal(m.from, s.user.id, `${s.prefix}: sender of seq ${m.seq}`);
        assert.ok(sentSet.has(m.cmid), `${s.prefix}: stored cmid ${m.cmid} was sent`);
        assert.ok(!byCmid.has(m.cmid), `${s.prefix}: cmid ${m.cmid} stored twice (seq ${byCmid.get(m.cmid)?.seq} and ${m.seq})`);
        assert.ok(!byId.has(m.id), `${s.prefix}: id ${m.id} twice`);
        assert.ok(!allIds.has(m.id), `id ${m.id} in two channels`);
        assert.equal(m.text, `durable ${s.prefix}${cmidIndex(s.prefix, m.cmid)} \u{1F4E6}`, `${s.prefix}: text of ${m.cmid}`);
        assert.ok(BigInt(m.id) >= prevId, `${s.prefix}: ids grow with seq`);
        prevId = BigInt(m.id);
        byId.set(m.id, m);
        byCmid.set(m.cmid, m);
        allIds.add(m.id);
      }
      const posById = new Map(inbox.map((m) => [m.id, m.pos]));
      for (const a of acks) {
        const m = byId.get(a.id);
        assert.ok(m, `${s.prefix}: acknowledged message ${a.cmid} (id ${a.id}, seq ${a.seq}) is missing after the restart`);
        assert.equal(m.cmid, a.cmid, `${s.prefix}: id ${a.id} has cmid ${a.cmid}`);
        assert.equal(m.seq, a.seq, `${s.prefix}: seq of ${a.cmid}`);
        assert.equal(posById.get(a.id), a.pos, `${s.prefix}: inbox pos of ${a.cmid} = ack.pos`);
      }
      channels.set(s, { channel, count: hist.length, acked: acks.length });
      total += hist.length;
    } finally {
      ws.terminate();
    }
  }

  // the shared receiver's inbox: every stored message once, pos 1..total
  const rws = await connectWs(server, { token: receiver.token, label: 'receiver verify' });
  try {
    const inbox = await fullSyncWs(rws, 0, 500);
    const posErr = gapFree(inbox.map((m) => m.pos), 'receiver inbox pos');
    assert.equal(posErr, null, posErr);
    assert.equal(inbox.length, total, 'receiver inbox holds every stored message');
    assert.equal(rws.ready.pos, total, 'receiver ready.pos');
    const seen = new Set();
    const lastSeq = new Map();
    for (const m of inbox) {
      assert.ok(allIds.has(m.id), `receiver inbox: unknown id ${m.id}`);
      assert.ok(!seen.has(m.id), `receiver inbox: id ${m.id} twice`);
      seen.add(m.id);
      const prev = lastSeq.get(m.channel) ?? 0;
      assert.equal(m.seq, prev + 1, `receiver inbox: channel ${m.channel} in seq order`);
      lastSeq.set(m.channel, m.seq);
    }
    return { total, receiverPos: inbox.length, channels };
  } finally {
    rws.terminate();
  }
}

/** resend a few acknowledged cmids: the original ack comes back, nothing new is stored */
export async function verifyResend(server, senders, receiver, { perSender = 3, maxSenders = 5 } = {}) {
  let checked = 0;
  for (const s of senders.filter((x) => x.stream.acks.size > 0).slice(0, maxSenders)) {
    const acks = [...s.stream.acks.values()].sort((a, b) => a.seq - b.seq);
    const picks = [acks[0], acks[Math.floor(acks.length / 2)], acks[acks.length - 1]].slice(0, perSender);
    const ws = await connectWs(server, { token: s.token, label: `${s.prefix} resend` });
    try {
      for (const a of picks) {
        const i = cmidIndex(s.prefix, a.cmid);
        const f = await ws.request({ op: 'send', to: receiver.user.id, cmid: a.cmid, text: `durable ${s.prefix}${i} \u{1F4E6}` });
        assert.equal(f.op, 'ack', `resend of ${a.cmid}: ${JSON.stringify(f)}`);
        assert.deepEqual({ id: f.id, seq: f.seq, pos: f.pos, channel: f.channel, cmid: f.cmid },
          { id: a.id, seq: a.seq, pos: a.pos, channel: a.channel, cmid: a.cmid }, `resend of ${a.cmid} returns the original ack`);
        checked++;
      }
    } finally {
      ws.terminate();
    }
  }
  return checked;
}
