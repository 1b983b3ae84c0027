// cluster_tokens.test.mjs — the token cache across nodes (src/chat/tokens.h, issue 15): every node
// caches the tokens it has checked, also of users it holds no socket of (HTTP only), and a session
// ended on one node is refused AT ONCE on every other node, over HTTP and WebSocket: logout,
// revoking one session, a password change, account deletion (the revocation crosses on
// iyagi.revoke, heard by every node, empties their caches; until it arrives, a node of a cluster
// still asks the store for every HTTP request and for the WebSocket auth's second read). Three iyagid nodes on one PostgreSQL and three routed NATS
// servers (lib/cluster.mjs). A node cut off from NATS checks tokens against the store, and
// refuses a token revoked elsewhere meanwhile once it is back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  api, newUser, newDevice, connectWs, ms, sleep, show, PASSWORD,
  wsAuth,
} from './lib/harness.mjs';
import { startCluster, waitForNodes, iyagidHasBus, natsBinary } from './lib/cluster.mjs';

const SKIP = !!process.env.IYAGI_E2E_SKIP_CLUSTER && 'IYAGI_E2E_SKIP_CLUSTER is set';
if (!SKIP) {
  if (!natsBinary()) throw new Error('nats-server is not installed (scripts/deps.sh test installs it)');
  if (!iyagidHasBus()) throw new Error('the iyagid under test has no --bus: rebuild it');
}
let cl = null;
const T = { timeout: ms(120000) };

before(async () => {
  if (SKIP) return;
  cl = await startCluster({ nodes: 3, nats: 3 });
  await waitForNodes(cl.nodes[0], 3);
});
after(async () => { if (cl) await cl.stop(); });

const t = (fn) => async () => {
  try { await fn(); } catch (e) { throw cl.annotate(e); }
};
const node = (i) => cl.nodes[i % cl.nodes.length];


/** token used on every node (HTTP twice, one WebSocket on `wsNodes`): cached everywhere */
async function warmEverywhere(token, what, wsNodes = [1]) {
  for (const n of cl.nodes) {
    for (let i = 0; i < 2; i++) {
      const me = await api(n, 'GET', '/v1/me', { token });
      assert.equal(me.status, 200, `${what} on ${n.opts?.name ?? n.port}: ${show(me)}`);
    }
  }
  for (const i of wsNodes) assert.equal(await wsAuth(node(i), token, `${what} ws@n${i + 1}`), 'ready');
}

/** right after the ending call returned: refused on the nodes `others`, HTTP first, then WS */
async function refusedOn(others, token, what) {
  await Promise.all(others.map(async (i) => {
    const me = await api(node(i), 'GET', '/v1/me', { token });
    assert.equal(me.status, 401, `${what}, HTTP on n${i + 1}: ${show(me)}`);
  }));
  for (const i of others) assert.equal(await wsAuth(node(i), token, `${what} ws@n${i + 1}`), 'unauthorized', `${what}, WebSocket on n${i + 1}`);
}

test('logout on one node: the token is refused at once on the others (HTTP and WebSocket), also where only HTTP used it', { ...T, skip: SKIP }, t(async () => {
  for (let round = 0; round < 5; round++) {
    const a = await newUser(node(0), `ctl${round}`);
    await warmEverywhere(a.token, `logout ${round}`, [1]);   // n3 saw it over HTTP only
    const out = await api(node(0), 'DELETE', '/v1/sessions/current', { token: a.token });
    assert.equal(out.status, 204, show(out));
    await refusedOn([1, 2], a.token, `logout ${round} on n1`);
  }
}));

test('session revocation, password change and account deletion on one node: refused at once on the others', { ...T, skip: SKIP }, t(async () => {
  // a session revoked by id on n2
  const b = await newUser(node(1), 'ctr', { device: 'phone' });
  const laptop = await newDevice(node(1), b, 'laptop');
  await warmEverywhere(laptop.token, 'revoke', [0, 2]);
  const list = await api(node(1), 'GET', '/v1/sessions', { token: b.token });
  const id = list.body.sessions.find((s) => !s.current).id;
  const r = await api(node(1), 'DELETE', `/v1/sessions/${id}`, { token: b.token });
  assert.equal(r.status, 204, show(r));
  await refusedOn([0, 2], laptop.token, 'session revoked on n2');

  // the other sessions of a password change on n3
  const c = await newUser(node(2), 'ctp', { device: 'one' });
  const two = await newDevice(node(2), c, 'two');
  await warmEverywhere(two.token, 'password', [0]);
  const pw = await api(node(2), 'PUT', '/v1/me/password', { token: c.token, body: { old_password: PASSWORD, new_password: 'a new secret 1' } });
  assert.equal(pw.status, 204, show(pw));
  await refusedOn([0, 1], two.token, 'password changed on n3');
  for (const n of cl.nodes) assert.equal((await api(n, 'GET', '/v1/me', { token: c.token })).status, 200, 'the changing session lives');

  // account deletion on n1
  const d = await newUser(node(0), 'ctd');
  const d2 = await newDevice(node(0), d, 'second');
  await warmEverywhere(d.token, 'delete', [1]);
  await warmEverywhere(d2.token, 'delete second', [2]);
  const del = await api(node(0), 'DELETE', '/v1/me', { token: d.token, body: { password: PASSWORD } });
  assert.equal(del.status, 204, show(del));
  await refusedOn([1, 2], d.token, 'account deleted on n1');
  await refusedOn([1, 2], d2.token, 'account deleted on n1 (other device)');
}));

test('a node cut off from NATS refuses, once back, a token revoked elsewhere while it was away', { ...T, skip: SKIP }, t(async () => {
  const a = await newUser(node(0), 'ctn');
  await warmEverywhere(a.token, 'cut', []);
  // every NATS server down: n2's revocation reaches nobody
  for (const n of cl.nats) await n.kill();
  await sleep(ms(3000));                       // the nodes notice (ping 2 s)
  const out = await api(node(1), 'DELETE', '/v1/sessions/current', { token: a.token });
  assert.equal(out.status, 204, show(out));
  // the store is the truth while the bus is away: refused at once on n1 and n3 too
  for (const i of [0, 2]) assert.equal((await api(node(i), 'GET', '/v1/me', { token: a.token })).status, 401, `n${i + 1} without NATS`);
  for (const n of cl.nats) await n.start();
  await sleep(ms(3000));
  for (const i of [0, 1, 2]) assert.equal((await api(node(i), 'GET', '/v1/me', { token: a.token })).status, 401, `n${i + 1} with NATS back`);
  // and the cache works again
  const b = await newUser(node(0), 'ctn2');
  await warmEverywhere(b.token, 'after the cut', [2]);
}));
