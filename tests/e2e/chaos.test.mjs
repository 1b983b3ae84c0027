// chaos.test.mjs — SIGKILL and restart, again and again, under mixed load: 1:1 senders, group
// senders, a long-polling HTTP sync reader and a push receiver for an offline group member.
// Clients behave as the contract asks: after each restart they reconnect and resend every
// unanswered send with the same cmid. At the end, every send is stored exactly once (the
// stored cmids are exactly the ones sent), every channel's seq and every inbox's pos are
// gap-free, every ack matches what is stored, and the offline member's push receiver has been
// told of the newest group message.
//
// IYAGI_CHAOS_CYCLES sets the number of kills (make test: 10; make chaos: 100).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  withServer, api, show, newUser, newUsers, connectWs, streamSender, fullHistory, fullSyncWs, gapFree, ms, sleep,
} from './lib/harness.mjs';
import { startReceiver, jsonOf } from './lib/push_receivers.mjs';

const CYCLES = Number(process.env.IYAGI_CHAOS_CYCLES) || 10;
const DIRECT_SENDERS = 6;
const GROUP_SENDERS = 3;
const GROUP_SIZE = 10;
const PER_CYCLE = 200;   // sends per sender per cycle at most (keeps 100 cycles' checks quick)

const textOf = (cmid) => `chaos ${cmid} \u{1F300}`;

test(`chaos: ${CYCLES} SIGKILL/restart cycles under mixed load; every send stored exactly once, gap-free, push caught up`, { timeout: ms(60000 + CYCLES * 15000) }, (t) => withServer({ extraArgs: ['--push-allow-private', '--push-retry-base-ms', '100'] }, async (srv) => {
  const receiver = await newUser(srv, 'chr');
  const directs = await newUsers(srv, 'chd', DIRECT_SENDERS);
  const members = await newUsers(srv, 'chg', GROUP_SIZE - 1);
  const owner = members[0];
  const g = await api(srv, 'POST', '/v1/groups', { token: owner.token, body: { name: 'chaos', members: members.slice(1).map((m) => m.user.id) } });
  assert.equal(g.status, 201, show(g));
  const group = g.body.channel.id;
  const offline = members[members.length - 1];   // never connects: pushed to
  const hook = await startReceiver({ name: 'offline-member' });
  const sub = await api(srv, 'POST', '/v1/push/subscriptions', { token: offline.token, body: { kind: 'webhook', url: hook.url('/p') } });
  assert.equal(sub.status, 201, show(sub));

  // every send: cmid -> {who, target, acked ack or null}
  const sends = new Map();
  const senders = [
    ...directs.map((u, i) => ({ u, label: `d${i}`, to: receiver.user.id })),
    ...members.slice(0, GROUP_SENDERS).map((u, i) => ({ u, label: `g${i}`, channel: group })),
  ];
  let syncs = 0;
  try {
    for (let cycle = 0; cycle <= CYCLES; cycle++) {
      const last = cycle === CYCLES;
      // (re)connect; resend what is unanswered, with the same cmid and text
      for (const s of senders) {
        s.ws = await connectWs(srv, { token: s.u.token, label: `${s.label}#${cycle}` });
        const unanswered = [...sends].filter(([, v]) => v.who === s.label && !v.ack).map(([c]) => c);
        s.resent = unanswered;
        for (const cmid of unanswered) {
          const f = { op: 'send', rid: cmid, cmid, text: textOf(cmid) };
          if (s.to) f.to = s.to; else f.channel = s.channel;
          s.ws.send(f);
        }
        s.ws.listeners.push((f) => {
          const v = f.rid !== undefined && sends.get(f.rid);
          if (!v || v.who !== s.label) return false;
          if (f.op === 'ack') v.ack = f;
          else if (f.code !== 'unavailable') v.error = f;
          return true;
        });
        if (!last) {
          s.stream = streamSender(s.ws, { to: s.to, channel: s.channel, prefix: `${s.label}-${cycle}-`, inflight: 2, max: PER_CYCLE, text: (i) => textOf(`${s.label}-${cycle}-${i}`) });
        }
      }
      if (last) break;
      // a long-polling HTTP reader of the receiver's inbox, across the kill
      const poll = (async () => {
        for (let after = 0; ;) {
          const r = await api(srv, 'GET', `/v1/sync?after=${after}&wait=2`, { token: receiver.token, timeoutMs: 5000 }).catch(() => null);
          if (!r || r.status !== 200) return;
          syncs++;
          if (r.body.messages.length) after = r.body.messages.at(-1).pos;
        }
      })();
      await sleep(100 + Math.floor(Math.random() * 500));   // sometimes mid-stream, sometimes after
      // record every cmid the streams sent, then kill mid-stream
      for (const s of senders) for (const cmid of s.stream.sent) if (!sends.has(cmid)) sends.set(cmid, { who: s.label, ack: null });
      await srv.kill();
      for (const s of senders) {
        for (const cmid of s.stream.sent) if (!sends.has(cmid)) sends.set(cmid, { who: s.label, ack: null });
        for (const [cmid, a] of s.stream.acks) sends.get(cmid).ack = a;
        for (const [cmid, e] of s.stream.errors) if (e.code !== 'unavailable') sends.get(cmid).error = e;
        s.ws.terminate();
      }
      await poll;
      await srv.start();
    }
    // the last resends: wait until every send is answered
    const deadline = Date.now() + ms(30000);
    while ([...sends.values()].some((v) => !v.ack && !v.error) && Date.now() < deadline) await sleep(50);
    const errors = [...sends].filter(([, v]) => v.error);
    assert.deepEqual(errors.map(([c, v]) => `${c}: ${JSON.stringify(v.error)}`), [], 'no send refused (other than unavailable while stopping)');
    const unanswered = [...sends].filter(([, v]) => !v.ack).map(([c]) => c);
    assert.deepEqual(unanswered, [], 'every send is acknowledged in the end');

    // every channel: exactly the sends, once each, seq 1..n, each ack as stored
    const byChannel = new Map();
    for (const [cmid, v] of sends) {
      if (!byChannel.has(v.ack.channel)) byChannel.set(v.ack.channel, new Map());
      byChannel.get(v.ack.channel).set(cmid, v.ack);
    }
    assert.equal(byChannel.size, DIRECT_SENDERS + 1, 'one channel per direct sender and the group');
    for (const [channel, acks] of byChannel) {
      const who = sends.get([...acks.keys()][0]).who;
      const token = channel === group ? owner.token : directs[Number(who.slice(1))].token;
      const hist = await fullHistory(srv, token, channel);
      const events = channel === group ? hist.filter((m) => m.event) : [];
      const msgs = hist.filter((m) => !m.event);
      assert.equal(gapFree(hist.map((m) => m.seq), `channel ${channel} seq`), null);
      assert.deepEqual(msgs.map((m) => m.cmid).sort(), [...acks.keys()].sort(), `channel ${channel}: exactly the sends, once each`);
      for (const m of msgs) {
        const a = acks.get(m.cmid);
        assert.equal(m.text, textOf(m.cmid));
        assert.deepEqual({ id: m.id, seq: m.seq }, { id: a.id, seq: a.seq }, `${m.cmid}: the ack is what is stored`);
      }
      assert.equal(events.length, 0, 'no membership events in the group');
    }

    // inboxes: the receiver's (all direct messages) and a group member's, pos 1..n
    for (const [u, expect] of [[receiver, [...sends.values()].filter((v) => v.who.startsWith('d')).length],
      [members[GROUP_SENDERS], [...sends.values()].filter((v) => v.who.startsWith('g')).length]]) {
      const ws = await connectWs(srv, { token: u.token, label: 'verify' });
      try {
        const inbox = await fullSyncWs(ws, 0, 500);
        assert.equal(gapFree(inbox.map((m) => m.pos), 'inbox pos'), null);
        assert.equal(inbox.length, expect, 'the inbox holds every message once');
        assert.equal(new Set(inbox.map((m) => m.id)).size, inbox.length);
        assert.equal(ws.ready.pos, inbox.length);
      } finally {
        ws.terminate();
      }
    }

    // push: the offline member is told of the newest group message, whatever the kills did
    const newest = [...byChannel.get(group).values()].sort((a, b) => b.seq - a.seq)[0];
    await hook.waitFor((req) => { try { return jsonOf(req).message_id === newest.id; } catch { return false; } },
      { what: 'a notification of the newest group message', timeoutMs: ms(30000) });
    t.diagnostic(`${CYCLES} kills: ${sends.size} sends (${[...senders].reduce((n, s) => n + (s.resent?.length || 0), 0)} resent at the last restart), ${syncs} long polls answered, ${hook.requests.length} push requests`);
  } finally {
    for (const s of senders) s.ws?.terminate();
    await hook.close();
  }
}));
