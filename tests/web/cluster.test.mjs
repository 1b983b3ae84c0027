// The web client against a real cluster (issue 11: "the browser suite's reconnect test passes
// against the cluster too"): 3 NATS servers with routes, PostgreSQL, 3 iyagid nodes and HAProxy
// in front (tests/e2e/lib/cluster.mjs, the e2e suite's harness). The pages load from HAProxy;
// login and discovery send each WebSocket straight to a node. The two people sit on different
// nodes, so every message crosses NATS. Then the node of one of them goes away — SIGKILL (a
// crash) or SIGTERM (a drain: close 1012) — and the page must move to a live node through
// discovery, never back to the dead one, and lose or double nothing.
//
// reconnect.test.mjs covers the client's rules one by one against a single server playing the
// cluster (a scripted discovery, a proxied WebSocket); this file checks them end to end.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  launchBrowser, newPerson, signUp, openDirect, openChat, send, texts, waitForText, uname, api, sleep,
} from './lib/harness.mjs';
import { startCluster, discovery, waitForNodes, iyagidHasBus, natsBinary, haproxyBinary } from '../e2e/lib/cluster.mjs';

// As in the e2e cluster suites: only an explicit IYAGI_E2E_SKIP_CLUSTER=1 skips.
const SKIP = !!process.env.IYAGI_E2E_SKIP_CLUSTER && 'IYAGI_E2E_SKIP_CLUSTER is set';
if (!SKIP) {
  if (!natsBinary() || !haproxyBinary()) throw new Error('nats-server or haproxy is not installed (scripts/deps.sh test installs them)');
  if (!iyagidHasBus()) throw new Error('the iyagid under test has no --bus: rebuild it');
}

let cl, browser, front;
before(async () => {
  if (SKIP) return;
  cl = await startCluster({ nodes: 3, nats: 3, haproxy: true });
  await waitForNodes(cl.nodes[0], 3);
  front = { url: cl.haproxy.url };   // what the web harness calls "the server": the balancer
  browser = await launchBrowser();
});
after(async () => { await browser?.close(); await cl?.stop(); });

const T = { timeout: 120000, skip: SKIP };
const t = (fn) => async () => { try { await fn(); } catch (e) { throw cl.annotate(e); } };

/** the cluster node a ws:// URL points at */
const nodeOf = (url) => cl.nodes.find((n) => url.includes(`:${n.port}/`));

/** every WebSocket the page opens, as the node it went to (name) and when */
function socketsOf(page) {
  const list = [];
  page.on('websocket', (ws) => list.push({ node: nodeOf(ws.url())?.name ?? ws.url(), t: Date.now() }));
  return list;
}

/** until discovery (asked of node `via`) counts at least `n` connections on node `name` */
async function waitForConnections(name, n, via) {
  const deadline = Date.now() + 10000;
  for (;;) {
    const d = await discovery(via);
    const x = d.nodes.find((y) => y.node === name);
    if (x && x.connections >= n) return;
    if (Date.now() > deadline) throw new Error(`discovery never counted ${n} connections on ${name}: ${JSON.stringify(d)}`);
    await sleep(100);
  }
}

/** the conversation's messages as stored (asked through the balancer) */
async function stored(token, channel) {
  return (await api(front, 'GET', `/v1/channels/${channel}/messages?after_seq=0&limit=200`, { token })).data.messages;
}

/**
 * Two people in a direct chat, each page on its own node: A signs up first; B only once the
 * registry counts A's socket, so that discovery (least loaded first) sends B elsewhere.
 */
async function pair(names) {
  const A = await newPerson(browser, front);
  const wsA = socketsOf(A.page);
  const a = uname(names[0]), b = uname(names[1]);
  const sa = await signUp(A.page, a, `${names[0]} A`);
  const nodeA = wsA.at(-1).node;
  const live = cl.nodes.find((n) => n.running && n.name !== nodeA);
  await waitForConnections(nodeA, 1, live);
  const B = await newPerson(browser, front);
  const wsB = socketsOf(B.page);
  await signUp(B.page, b, `${names[1]} B`);
  assert.notEqual(wsB.at(-1).node, nodeA, `A and B on different nodes: ${JSON.stringify([wsA, wsB])}`);
  await openDirect(A.page, b);
  await send(A.page, 'hello');
  await openChat(B.page, `${names[0]} A`);
  await waitForText(B.page, 'hello');
  return { A, B, sa, wsA, wsB, nodeA: cl.nodes.find((n) => n.name === nodeA) };
}

/** A's page and B's agree on `expect`, and so does the store */
async function agree(A, B, sa, expect) {
  await sleep(300);
  const ta = await texts(A.page);
  assert.deepEqual(ta, expect, 'A shows each message once, in order');
  assert.deepEqual(await texts(B.page), expect, 'B too');
  const channel = await A.page.evaluate(() => location.hash.slice(4));
  assert.deepEqual((await stored(sa.token, channel)).map((m) => m.text), expect, 'stored once each');
  assert.deepEqual([...A.page.errors, ...B.page.errors], []);
}

test('SIGKILL of the node under a page: it moves to a live node through discovery, and what was typed meanwhile arrives once', T, t(async () => {
  const { A, B, sa, wsA, nodeA } = await pair(['nia', 'oto']);
  const before = wsA.length;
  const t0 = Date.now();
  await nodeA.kill();
  await A.page.locator('#conn[data-state="offline"]').waitFor();
  await send(A.page, 'typed on a dead node');
  // the bound: on another node and caught up within 5 s (the balancer needs ~1.5 s to
  // notice, discovery up to 10 s to drop the node; the page skips a node that failed it)
  await A.page.locator('#conn[data-state="online"]').waitFor({ timeout: 5000 });
  const moved = Date.now() - t0;
  const after = wsA.slice(before).map((x) => x.node);
  assert.ok(after.length >= 1 && !after.includes(nodeA.name), `never back to the dead node ${nodeA.name}: ${after}`);
  await waitForText(B.page, 'typed on a dead node', 10000);
  await send(B.page, 'reply');
  await waitForText(A.page, 'reply');
  await agree(A, B, sa, ['hello', 'typed on a dead node', 'reply']);
  console.error(`SIGKILL: the page was online on ${after.at(-1)} ${moved} ms after its node ${nodeA.name} died`);
  await nodeA.start();
  await waitForNodes(cl.nodes[0], 3);
  await A.context.close();
  await B.context.close();
}));

test('SIGTERM drains the node under a page: close 1012, straight to a live node within 2 s, nothing lost or doubled', T, t(async () => {
  const { A, B, sa, wsA, nodeA } = await pair(['pia', 'quinn']);
  await send(A.page, 'before the drain');
  await waitForText(B.page, 'before the drain');
  const before = wsA.length;
  const t0 = Date.now();
  const stopping = nodeA.stop();
  await send(A.page, 'during the drain');   // answered before the 1012, or sent again after it
  for (let i = 0; i < 60 && wsA.length === before; i++) await sleep(50);
  assert.ok(wsA.length > before, 'a new socket within 3 s');
  const moved = wsA[before].t - t0;
  assert.ok(moved < 2000, `reconnected ${moved} ms after SIGTERM`);
  assert.ok(!wsA.slice(before).some((x) => x.node === nodeA.name), `not to the draining node: ${JSON.stringify(wsA)}`);
  await A.page.locator('#conn[data-state="online"]').waitFor({ timeout: 5000 });
  const exit = await stopping;
  assert.equal(exit.code, 0, `the drained node exited 0: ${JSON.stringify(exit)}`);
  await A.page.locator('#conn[data-state="online"]').waitFor();
  await send(A.page, 'after the drain');
  await waitForText(B.page, 'after the drain');
  await waitForText(B.page, 'during the drain');
  await agree(A, B, sa, ['hello', 'before the drain', 'during the drain', 'after the drain']);
  console.error(`SIGTERM: a new socket on ${wsA[before].node} ${moved} ms after ${nodeA.name} was told to stop`);
  await nodeA.start();
  await A.context.close();
  await B.context.close();
}));
