// transport.test.mjs — RFC 6455 as a real client drives it (ping/pong, a message fragmented by
// the client with a ping between the fragments, the close handshake, binary frames), the
// WebSocket timeouts (--idle-timeout, a first frame that is not auth) and service discovery
// with --public-url.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withServer, api, rawHttp, newUser, openWs, connectWs, ms, sleep, rid, withSockets } from './lib/harness.mjs';

const T = { timeout: ms(60000) };

test('ping gets a pong with the same payload; a fragmented message with a ping inside is one message', T, () =>
  withServer({}, (srv) => withSockets(srv, async (track) => {
    const a = await newUser(srv, 'tp');
    const b = await newUser(srv, 'tq');
    const A = track(await connectWs(srv, { token: a.token, label: 'A' }));

    const payload = Buffer.from('are you there? 이야기');
    const pong = new Promise((resolve) => A.ws.once('pong', resolve));
    A.ws.ping(payload);
    assert.deepEqual(await pong, payload, 'pong echoes the ping payload');

    // One text message in three fragments, a ping between the second and the third.
    const r = rid();
    const json = JSON.stringify({ op: 'send', to: b.user.id, text: 'fragmented 😀 message', cmid: 'frag-1', rid: r });
    const cut1 = 10, cut2 = json.length - 12;
    const acked = A.waitFor((f) => f.rid === r, { what: 'the ack of the fragmented send' });
    A.ws.send(json.slice(0, cut1), { fin: false });
    A.ws.send(json.slice(cut1, cut2), { fin: false });
    A.ws.ping(Buffer.from('between'));
    A.ws.send(json.slice(cut2), { fin: true });
    const ack = await acked;
    assert.equal(ack.op, 'ack', JSON.stringify(ack));
    assert.equal(ack.seq, 1);
    const page = await api(srv, 'GET', `/v1/channels/${ack.channel}/messages`, { token: b.token });
    assert.equal(page.status, 200);
    assert.deepEqual(page.body.messages.map((m) => m.text), ['fragmented 😀 message']);
  })));

test('close handshake: the server echoes the client\'s close code; a binary frame is closed with 1003', T, () =>
  withServer({}, (srv) => withSockets(srv, async (track) => {
    const a = await newUser(srv, 'tc');
    const A = track(await connectWs(srv, { token: a.token, label: 'A' }));
    const closed = await A.close(4000);
    assert.equal(closed.code, 4000, 'the close code comes back');

    const B = track(await connectWs(srv, { token: a.token, label: 'B' }));
    B.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    const c = await B.closed;
    assert.equal(c.code, 1003, 'binary frames are refused');
  })));

test('--idle-timeout closes a silent socket with 1001 while a heartbeating one stays open', T, () =>
  withServer({ extraArgs: ['--idle-timeout', '2'] }, (srv) => withSockets(srv, async (track) => {
    const a = await newUser(srv, 'ti');
    const silent = track(await connectWs(srv, { token: a.token, label: 'silent' }));
    const beating = track(await connectWs(srv, { token: a.token, label: 'beating' }));
    const timer = setInterval(() => beating.send({ op: 'hb' }), 400);
    try {
      const c = await Promise.race([silent.closed, sleep(ms(8000)).then(() => null)]);
      assert.ok(c, 'the silent socket was closed');
      assert.equal(c.code, 1001);
      await sleep(ms(1500));
      assert.equal(beating.closeInfo, null, 'the heartbeating socket is still open');
      const hb = await beating.request({ op: 'hb', rid: rid() });
      assert.equal(hb.op, 'hb');
    } finally {
      clearInterval(timer);
    }
  })));

test('a first frame that is not auth is refused and the socket closed with 1008', T, () =>
  withServer({}, (srv) => withSockets(srv, async (track) => {
    const c = track(await openWs(srv, { label: 'anon' }));
    c.send({ op: 'hb', rid: 'first' });
    const e = await c.waitFor((f) => f.op === 'error', { what: 'the error' });
    assert.equal(e.code, 'unauthorized');
    assert.equal(e.rid, 'first');
    assert.equal((await c.closed).code, 1008);
  })));

test('discovery: --public-url is what clients are sent to; without it, the Host they used', T, async () => {
  await withServer({ extraArgs: ['--public-url', 'https://chat.example.com/'] }, async (srv) => {
    const d = await api(srv, 'GET', '/v1/discovery');
    assert.equal(d.status, 200);
    assert.equal(d.body.ws_url, 'wss://chat.example.com/v1/ws');
    assert.equal(typeof d.body.node, 'string');
    const u = await newUser(srv, 'td');
    assert.equal(u.ws_url, 'wss://chat.example.com/v1/ws', 'login hands out the same');
  });
  await withServer({}, async (srv) => {
    // fetch() may not set Host; node's http client may.
    const d = await rawHttp(srv, 'GET', '/v1/discovery', { headers: { host: 'alias.test:9999' } });
    assert.equal(d.status, 200, d.text);
    assert.equal(JSON.parse(d.text).ws_url, 'ws://alias.test:9999/v1/ws');
  });
});
