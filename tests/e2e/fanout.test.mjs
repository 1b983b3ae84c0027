// fanout.test.mjs — group fan-out through shared frames (issue 15): a message is encoded once per
// I/O thread, each socket queues its own WebSocket header and pos and references to the shared
// rest, written with vectored I/O. These tests aim at the paths where that can go wrong:
//   - a socket that stops reading: its writes go out in part, the rest waits in a uv_write whose
//     iovecs point into shared buffers (a partial write that ends inside a shared piece);
//   - a socket dropped with references still queued (the slow-reader budget), while the same
//     frames are being written to the others;
//   - frames held while a device authenticates (they are copied out of the shared buffer);
//   - the output accounting going back to zero once everything is written.
// Each frame must arrive whole (its text is checked byte for byte), in pos order, gap-free, once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, withServer, api, show, newUser, newUsers, connectWs, streamSender, fullSyncWs, gapFree, ms, sleep,
} from './lib/harness.mjs';

const T = { timeout: ms(180000) };

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.cleanup(); });

async function createGroup(server, owner, name, members) {
  const r = await api(server, 'POST', '/v1/groups', { token: owner.token, body: { name, members: members.map((u) => u.user.id) } });
  assert.equal(r.status, 201, `create group ${name}: ${show(r)}`);
  return r.body.channel;
}

/** a text that says which message it is all the way through (a misplaced byte shows) */
const bigText = (i, n) => {
  const unit = `<${i}>`;
  return `${unit}${'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(Math.ceil(n / 36)).slice(0, n)}${unit}`;
};

/** the msg frames of a channel that c received, checked: pos gap-free from `from`, texts as sent */
function checkReceived(c, channel, expected, from, what) {
  const got = c.all.filter((f) => f.op === 'msg' && f.channel === channel);
  const pos = got.map((f) => f.pos - from);
  const gap = gapFree(pos, `${what}: pos`);
  assert.equal(gap, null, gap ?? '');
  assert.equal(got.length, expected.size, `${what}: ${got.length} msg frames for ${expected.size} messages`);
  for (const f of got) {
    assert.ok(expected.has(f.cmid), `${what}: an unexpected cmid ${f.cmid}`);
    assert.equal(f.text, expected.get(f.cmid), `${what}: the text of ${f.cmid} arrived whole`);
  }
}

async function metric(server, name) {
  const m = await (await fetch(`${server.url}/metrics`)).text();
  const x = new RegExp(`^${name} (\\d+)`, 'm').exec(m);
  return x ? Number(x[1]) : NaN;
}

test('members that stop reading and resume get every group frame whole, in pos order, once; queued output goes back to 0', T, async () => {
  const users = await newUsers(srv, 'fo', 5);
  const [a, ...rest] = users;
  const group = await createGroup(srv, a, 'fanout-pause', rest);
  const sender = await connectWs(srv, { token: a.token, label: 'A' });
  const readers = [];
  try {
    for (const u of rest) readers.push(await connectWs(srv, { token: u.token, label: `R-${u.user.id}` }));
    const from = readers.map((c) => c.ready.pos);
    // two members read nothing for a while: their socket buffers fill, and what is left goes out
    // through uv_write in parts that end anywhere, inside the shared pieces too
    const paused = readers.slice(0, 2);
    for (const c of paused) c.ws._socket.pause();
    const N = 160, SIZE = 30000;   // ~4.8 MB per member: more than loopback buffers hold
    const texts = new Map();
    const st = streamSender(sender, { channel: group.id, prefix: 'fp', inflight: 8, max: N, text: (i) => bigText(i, SIZE + (i % 7) * 13) });
    await st.done;
    assert.equal(st.acks.size, N, `every send acked (${st.errors.size} errors: ${JSON.stringify([...st.errors.values()][0])})`);
    st.sent.forEach((cmid, i) => texts.set(cmid, bigText(i, SIZE + (i % 7) * 13)));
    await sleep(300);
    assert.ok(await metric(srv, 'iyagi_output_buffered_bytes') > 0, 'output waits for the paused readers');
    for (const c of paused) c.ws._socket.resume();
    for (const c of readers) await c.roundTrip({ timeoutMs: ms(60000) });
    readers.forEach((c, k) => checkReceived(c, group.id, texts, from[k], c.label));
    let queued = NaN;
    for (let i = 0; i < 40; i++) {   // accounted at each flush and completion: back to 0 at once
      queued = await metric(srv, 'iyagi_output_buffered_bytes');
      if (queued === 0) break;
      await sleep(50);
    }
    assert.equal(queued, 0, 'nothing is counted as queued once every socket has read everything');
  } finally {
    sender.terminate();
    for (const c of readers) c.terminate();
  }
});

test('devices that connect while a group streams get every message after their ready.pos, in order, once (frames held during auth)', T, async () => {
  const users = await newUsers(srv, 'fh', 3);
  const [a, b, c] = users;
  const group = await createGroup(srv, a, 'fanout-held', [b, c]);
  const sender = await connectWs(srv, { token: a.token, label: 'A' });
  // a witness device per member, there from the start: what each later device must get after
  // its ready.pos is exactly the witness's frames past that pos
  const witness = new Map([[b.user.id, await connectWs(srv, { token: b.token, label: 'Wb' })],
    [c.user.id, await connectWs(srv, { token: c.token, label: 'Wc' })]]);
  const devices = [];
  try {
    const text = (i) => bigText(i, 300 + (i % 5) * 40);
    const st = streamSender(sender, { channel: group.id, prefix: 'fh', inflight: 4, text });
    // new sockets keep arriving while the messages flow: some authenticate while messages are
    // committed, and those wait (held, copied out of the shared frame) until their ready is out
    for (let k = 0; k < 16; k++) {
      const u = k % 2 ? b : c;
      const d = await connectWs(srv, { token: u.token, label: `D${k}` });
      d.user = u.user.id;
      devices.push(d);
      await sleep(10);
    }
    await sleep(50);
    st.stop();
    await st.done;
    assert.equal(st.errors.size, 0, 'no send failed');
    const texts = new Map(st.sent.map((cmid, i) => [cmid, text(i)]));
    for (const d of [...witness.values(), ...devices]) await d.roundTrip({ timeoutMs: ms(30000) });
    for (const w of witness.values()) checkReceived(w, group.id, texts, w.ready.pos, w.label);
    let later = 0;
    for (const d of devices) {
      const w = witness.get(d.user);
      const want = w.all.filter((f) => f.op === 'msg' && f.channel === group.id && f.pos > d.ready.pos).map((f) => `${f.pos}:${f.cmid}`);
      const got = d.all.filter((f) => f.op === 'msg' && f.channel === group.id).map((f) => `${f.pos}:${f.cmid}`);
      assert.deepEqual(got, want, `${d.label} (ready.pos ${d.ready.pos}): the witness's frames after its ready.pos`);
      if (want.length) later++;
    }
    assert.ok(later >= 8, `most devices connected while messages flowed (${later} of 16)`);
  } finally {
    sender.terminate();
    for (const w of witness.values()) w.terminate();
    for (const d of devices) d.terminate();
  }
});

test('a member that never reads is dropped with shared frames still queued; the others get everything; it catches up with sync', T, () => withServer({ extraArgs: ['--max-output-buffers-mb', '2'] }, async (s2) => {
  const users = await newUsers(s2, 'fd', 4);
  const [a, stuckUser, ...others] = users;
  const group = await createGroup(s2, a, 'fanout-drop', [stuckUser, ...others]);
  const sender = await connectWs(s2, { token: a.token, label: 'A' });
  const stuck = await connectWs(s2, { token: stuckUser.token, label: 'stuck' });
  const readers = [];
  try {
    for (const u of others) readers.push(await connectWs(s2, { token: u.token, label: `R-${u.user.id}` }));
    stuck.ws._socket.pause();   // reads nothing from here on
    const N = 120, SIZE = 60000;  // ~7 MB per member, over the 2 MB budget
    const st = streamSender(sender, { channel: group.id, prefix: 'fd', inflight: 8, max: N, text: (i) => bigText(i, SIZE) });
    await st.done;
    assert.equal(st.acks.size, N, 'every send acked');
    const texts = new Map(st.sent.map((cmid, i) => [cmid, bigText(i, SIZE)]));
    for (const c of readers) await c.roundTrip({ timeoutMs: ms(60000) });
    readers.forEach((c) => checkReceived(c, group.id, texts, c.ready.pos, c.label));
    let dropped = 0;
    for (let i = 0; i < 60 && !dropped; i++) {
      dropped = await metric(s2, 'iyagi_slow_consumers_closed_total');
      if (!dropped) await sleep(100);
    }
    assert.ok(dropped >= 1, 'the reader that never reads was dropped');
    const back = await connectWs(s2, { token: stuckUser.token, label: 'stuck-again' });
    try {
      const all = (await fullSyncWs(back, 0, 50)).filter((m) => m.channel === group.id && m.cmid?.startsWith('fd'));
      assert.equal(all.length, N, 'sync has every message for the dropped device');
      for (const m of all) assert.equal(m.text, texts.get(m.cmid));
    } finally {
      back.terminate();
    }
  } finally {
    sender.terminate();
    stuck.terminate();
    for (const c of readers) c.terminate();
  }
}));
