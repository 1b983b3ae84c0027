// Clients follow (issue 11, item 6): when the socket goes, the page asks GET /v1/discovery for
// a node (not the dead URL), reconnects with jittered back-off — at once after close 1012
// "service restart" — then syncs from the highest pos it has seen and resends what was not
// acknowledged with the same cmid, so nothing is lost or doubled.
//
// One single-node server plays the cluster: Playwright answers /v1/discovery with a `nodes`
// list (naming the server as "localhost", and a dead node), and sits in the WebSocket
// (page.routeWebSocket) to close it with a chosen code or to drop an ack.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  startServer, launchBrowser, newPerson, signUp, openDirect, openChat, send, texts, waitForText, uname, api, sleep,
} from './lib/harness.mjs';

let server, browser;
before(async () => { server = await startServer(); browser = await launchBrowser(); });
after(async () => { await browser?.close(); await server?.close(); });

/** a loopback port nobody listens on: a "dead node" */
async function deadPort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/** two people in a direct chat, both pages open on it */
async function pair(names) {
  const A = await newPerson(browser, server);
  const B = await newPerson(browser, server);
  const a = uname(names[0]), b = uname(names[1]);
  const sa = await signUp(A.page, a, `${names[0]} A`);
  const sb = await signUp(B.page, b, `${names[1]} B`);
  await openDirect(A.page, b);
  await send(A.page, 'hello');
  await openChat(B.page, `${names[0]} A`);
  await waitForText(B.page, 'hello');
  return { A, B, a, b, sa, sb };
}

/** every WebSocket the page opens: {url, t} (routed or not) */
function socketsOf(page) {
  const list = [];
  page.on('websocket', (ws) => list.push({ url: ws.url(), t: Date.now() }));
  return list;
}

/** record the connection indicator's states in the page: [{state, t}] in window.__conn */
async function recordConn(page) {
  await page.evaluate(() => {
    const c = document.getElementById('conn');
    window.__conn = [{ state: c.dataset.state, t: Date.now() }];
    new MutationObserver(() => window.__conn.push({ state: c.dataset.state, t: Date.now() }))
      .observe(c, { attributes: true, attributeFilter: ['data-state'] });
  });
}

/** the conversation's messages on the server, oldest first */
async function stored(token, channel) {
  return (await api(server, 'GET', `/v1/channels/${channel}/messages?after_seq=0&limit=200`, { token })).data.messages;
}

const count = (arr, x) => arr.filter((y) => y === x).length;

test('after a restart the page asks discovery and connects where it says; a message typed meanwhile arrives once', async () => {
  const { A, B, sa } = await pair(['dana', 'eli']);
  const wsA = socketsOf(A.page);
  const localhost = `ws://localhost:${server.port}/v1/ws`;
  let asked = 0;
  // The name the page used (127.0.0.1) is gone after the restart, as a dead node's would be: were
  // it still reachable, a page whose discovery was refused while the server was down would rightly
  // go back to the URL it used last, and whether it reached the server there or through discovery
  // would depend on when the server came back (seen in CI).
  await A.page.routeWebSocket('**/v1/ws', (ws) => {
    if (ws.url() === localhost) ws.connectToServer();
    else ws.close({ code: 4002, reason: 'gone' });
  });
  await A.page.route('**/v1/discovery', async (route) => {
    asked++;
    let d;
    try { d = await (await route.fetch()).json(); } catch { await route.abort('connectionrefused'); return; }
    // the cluster's answer: another name for the same server, with the nodes list
    await route.fulfill({ json: { ...d, ws_url: localhost, node: 'n-local',
      nodes: [{ node: 'n-local', ws_url: localhost, connections: 1, capacity: 1000 }] } });
  });

  await server.stop();
  await A.page.locator('#conn[data-state="offline"]').waitFor();
  await send(A.page, 'typed while away');
  await A.page.locator('#msgs li[data-state="sending"]').waitFor();
  await server.up();
  await A.page.locator('#conn[data-state="online"]').waitFor({ timeout: 20000 });
  assert.ok(asked >= 1, 'discovery was asked after the loss');
  // The page's "websocket" event reaches this process over Playwright's connection, possibly
  // after the page already shows the state it led to (seen on a slow machine): wait for it.
  for (let i = 0; i < 50 && wsA.at(-1)?.url !== localhost; i++) await sleep(100);
  assert.equal(wsA.at(-1).url, localhost, `the page connected where discovery said: ${JSON.stringify(wsA)}`);

  await waitForText(B.page, 'typed while away', 15000);
  await A.page.locator('#msgs li[data-state="sending"]').waitFor({ state: 'detached' });
  await send(A.page, 'after');
  await waitForText(B.page, 'after');
  await sleep(300);
  const ta = await texts(A.page), tb = await texts(B.page);
  assert.deepEqual(ta, ['hello', 'typed while away', 'after']);
  assert.deepEqual(tb, ta, 'the other user received it once');
  const channel = await A.page.evaluate(() => location.hash.slice(4));
  assert.deepEqual((await stored(sa.token, channel)).map((m) => m.text), ta, 'stored once');
  assert.deepEqual([...A.page.errors, ...B.page.errors], []);
  await A.context.close();
  await B.context.close();
});

test('discovery still names a dead node: the page tries it once, then a live one from `nodes`', async () => {
  const { A, B } = await pair(['fay', 'gus']);
  const wsA = socketsOf(A.page);
  const dead = `ws://127.0.0.1:${await deadPort()}/v1/ws`;
  const live = `ws://localhost:${server.port}/v1/ws`;
  let asked = 0;
  await A.page.route('**/v1/discovery', async (route) => {
    asked++;
    // a node killed a moment ago is still listed (the registry drops it within 10 s), and it
    // even looks like the emptiest
    await route.fulfill({ json: { ws_url: dead, node: 'dead', nodes: [
      { node: 'dead', ws_url: dead, connections: 0, capacity: 1000 },
      { node: 'live', ws_url: live, connections: 500, capacity: 1000 }] } });
  });
  await server.restart();
  await A.page.locator('#conn[data-state="online"]').waitFor({ timeout: 20000 });
  const after = wsA.map((w) => w.url);
  // The live node restarts here, so for a moment every node listed fails: the page may then
  // reach the live server through its own host name, and may try the dead node once more.
  const livePort = `:${server.port}/v1/ws`;
  assert.ok(after.at(-1).endsWith(livePort), `ends on the live node: ${JSON.stringify(after)}`);
  assert.ok(count(after, dead) <= 2, `the dead node was not tried again and again: ${JSON.stringify(after)}`);
  assert.ok(asked >= 2, 'discovery was asked again after the dead node failed');
  await send(A.page, 'on the live node');
  await waitForText(B.page, 'on the live node');
  assert.deepEqual([...A.page.errors, ...B.page.errors], []);
  await A.context.close();
  await B.context.close();
});

test('close 1012 "service restart": straight back through discovery, no back-off; other closes wait', async () => {
  const { A, B } = await pair(['hana', 'ivo']);
  const routes = [];
  const opened = [];
  await A.page.routeWebSocket('**/v1/ws', (ws) => {
    opened.push(Date.now());
    ws.connectToServer();
    routes.push(ws);
  });
  const asked = [];
  A.page.on('request', (r) => { if (r.url().endsWith('/v1/discovery')) asked.push(Date.now()); });
  // the route applies to new sockets: move the page onto one
  await A.page.reload();
  await A.page.locator('#conn[data-state="online"]').waitFor();
  await openChat(A.page, 'ivo B');
  await recordConn(A.page);

  for (const round of [1, 2]) {
    const n = opened.length;
    const t0 = Date.now();
    await routes.at(-1).close({ code: 1012, reason: 'service restart' });
    await A.page.waitForFunction((k) => window.__conn.filter((x) => x.state === 'online').length > k, round);
    const states = await A.page.evaluate(() => window.__conn.map((x) => x.state));
    assert.equal(opened.length, n + 1, 'one new socket');
    // no back-off: the page never showed "Offline — retrying in…" (it does at once after any
    // other loss), and it was back well within the shortest back-off's order of magnitude
    assert.ok(!states.includes('offline'), `never waited: ${states}`);
    const gap = opened.at(-1) - t0;
    assert.ok(gap < 1000, `reconnected ${gap} ms after 1012`);
    assert.ok(asked.some((t) => t >= t0 && t <= opened.at(-1)), 'asked discovery first');
  }

  // any other close (here 1001 "going away") backs off: 250 ms ± 30 % at least
  const t1 = Date.now();
  const n = opened.length;
  await routes.at(-1).close({ code: 1001, reason: 'going away' });
  await A.page.locator('#conn[data-state="online"]').waitFor();
  assert.equal(opened.length, n + 1);
  assert.ok(opened.at(-1) - t1 >= 150, `waited ${opened.at(-1) - t1} ms after 1001`);
  assert.ok((await A.page.evaluate(() => window.__conn.map((x) => x.state))).includes('offline'));

  await send(A.page, 'still here');
  await waitForText(B.page, 'still here');
  assert.deepEqual([...A.page.errors, ...B.page.errors], []);
  await A.context.close();
  await B.context.close();
});

test('the ack is lost with the socket: the send goes again with the same cmid and is stored once', async () => {
  const { A, B, sa } = await pair(['jin', 'kai']);
  const routes = [];
  const sends = [];   // {cmid, text} of every send frame the page wrote
  let dropAck = false;
  await A.page.routeWebSocket('**/v1/ws', (ws) => {
    const srv = ws.connectToServer();
    routes.push(ws);
    ws.onMessage((m) => {
      try { const f = JSON.parse(m); if (f.op === 'send') sends.push({ cmid: f.cmid, text: f.text }); } catch { /* not JSON */ }
      srv.send(m);
    });
    srv.onMessage((m) => {
      let f = null;
      try { f = JSON.parse(m); } catch { /* not JSON */ }
      if (dropAck && f && f.op === 'ack') {
        // stored and acknowledged by the server, but the page never hears it: the node dies
        dropAck = false;
        ws.close({ code: 1011, reason: 'gone' });
        return;
      }
      ws.send(m);
    });
  });
  await A.page.reload();
  await A.page.locator('#conn[data-state="online"]').waitFor();
  await openChat(A.page, 'kai B');
  dropAck = true;
  await send(A.page, 'ack lost');
  await waitForText(B.page, 'ack lost');          // stored: B has it
  await A.page.locator('#conn[data-state="online"]').waitFor({ timeout: 15000 });
  await waitForText(A.page, 'ack lost');
  await A.page.locator('#msgs li[data-state="sending"]').waitFor({ state: 'detached' });
  const mine = sends.filter((s) => s.text === 'ack lost');
  assert.ok(mine.length >= 2, `sent again after the reconnect: ${JSON.stringify(mine)}`);
  assert.equal(new Set(mine.map((s) => s.cmid)).size, 1, 'with the same cmid');

  await send(A.page, 'next');
  await waitForText(B.page, 'next');
  await sleep(300);
  const ta = await texts(A.page), tb = await texts(B.page);
  assert.deepEqual(ta, ['hello', 'ack lost', 'next']);
  assert.deepEqual(tb, ta);
  const channel = await A.page.evaluate(() => location.hash.slice(4));
  assert.deepEqual((await stored(sa.token, channel)).map((m) => m.text), ta);
  assert.deepEqual([...A.page.errors, ...B.page.errors], []);
  await A.context.close();
  await B.context.close();
});

test('the server\'s own SIGTERM: with 1012 (draining) the page goes back at once and loses nothing', async (t) => {
  const { A, B, sa } = await pair(['lia', 'moe']);
  // what does this server send on SIGTERM? A probe socket of A's own session tells
  await A.page.evaluate((token) => {
    window.__probe = null;
    const ws = new WebSocket(`ws://${location.host}/v1/ws`);
    ws.onopen = () => ws.send(JSON.stringify({ op: 'auth', token }));
    ws.onclose = (ev) => { window.__probe = { code: ev.code, reason: ev.reason, t: Date.now() }; };
  }, sa.token);
  await sleep(300);
  const asked = [];
  A.page.on('request', (r) => { if (r.url().endsWith('/v1/discovery')) asked.push(Date.now()); });
  await recordConn(A.page);
  await server.stop();
  await A.page.waitForFunction(() => window.__probe);
  const probe = await A.page.evaluate(() => window.__probe);
  if (probe.code !== 1012) {
    await server.up();
    await A.context.close();
    await B.context.close();
    t.skip(`this server closes with ${probe.code} ("${probe.reason}") on SIGTERM, not 1012: draining is not there yet`);
    return;
  }
  await A.page.locator('#conn[data-state="offline"]').waitFor();
  // straight from online to connecting (no back-off first); the node is gone for good, so
  // the attempt fails and only then does the page wait
  const states = await A.page.evaluate(() => window.__conn.map((x) => x.state));
  assert.equal(states[states.indexOf('online') + 1], 'connecting', `no back-off after 1012: ${states}`);
  const first = asked.find((x) => x >= probe.t - 50);
  assert.ok(first !== undefined && first - probe.t < 1000, `asked discovery ${first - probe.t} ms after the 1012`);
  await send(A.page, 'sent while draining');
  await server.up();
  await A.page.locator('#conn[data-state="online"]').waitFor({ timeout: 20000 });
  await waitForText(B.page, 'sent while draining', 15000);
  await sleep(300);
  const ta = await texts(A.page);
  assert.equal(count(ta, 'sent while draining'), 1);
  assert.deepEqual(await texts(B.page), ta);
  const channel = await A.page.evaluate(() => location.hash.slice(4));
  assert.deepEqual((await stored(sa.token, channel)).map((m) => m.text), ta);
  await A.context.close();
  await B.context.close();
});
