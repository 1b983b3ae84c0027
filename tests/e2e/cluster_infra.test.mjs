// cluster_infra.test.mjs — the cluster's infrastructure, as deploy/ configures it and
// lib/cluster.mjs starts it (issue 11): the NATS cluster (routes, a member killed and restarted
// rejoins, messages cross servers), HAProxy with deploy/haproxy.cfg.in (round-robin, /healthz
// checks taking a 503 backend out of rotation and back, a WebSocket through it), and, when
// iyagid takes --bus, smoke tests of startCluster() (3 nodes up, healthy, listed by discovery,
// reachable through HAProxy, one restarted in place) and of scripts/cluster.sh up/down (what
// `make cluster` runs). Needs Debian's nats-server and haproxy (scripts/deps.sh cluster):
// without them, or with an iyagid that has no --bus, those parts are skipped, saying why.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ms, sleep, api, newUser, connectWs, binaryPresent, IYAGID, REPO } from './lib/harness.mjs';
import {
  startNatsCluster, waitForRoutes, startHaproxy, startCluster, discovery, waitForNodes,
  natsBinary, haproxyBinary, iyagidHasBus,
} from './lib/cluster.mjs';

const NO_NATS = natsBinary() ? false : 'nats-server is not installed (apt-get install nats-server, or scripts/deps.sh cluster)';
const NO_HAPROXY = haproxyBinary() ? false : 'haproxy is not installed (apt-get install haproxy, or scripts/deps.sh cluster)';

// ---- a minimal NATS client (the text protocol: CONNECT, SUB, PUB, PING; MSG and PING in)

function natsConnect(url) {
  const u = new URL(url);
  const sock = net.connect({ host: u.hostname, port: Number(u.port) });
  const c = { got: [], pongs: [], buf: '' };
  sock.setEncoding('utf8');
  sock.on('data', (d) => {
    c.buf += d;
    for (;;) {
      const eol = c.buf.indexOf('\r\n');
      if (eol < 0) return;
      const line = c.buf.slice(0, eol);
      const m = /^MSG (\S+) (\S+) (?:\S+ )?(\d+)$/.exec(line);
      if (m) {
        const n = Number(m[3]);
        if (c.buf.length < eol + 2 + n + 2) return;
        c.got.push({ subject: m[1], data: c.buf.slice(eol + 2, eol + 2 + n) });
        c.buf = c.buf.slice(eol + 2 + n + 2);
        continue;
      }
      c.buf = c.buf.slice(eol + 2);
      if (line === 'PING') sock.write('PONG\r\n');
      else if (line === 'PONG') c.pongs.shift()?.();
      else if (line.startsWith('-ERR')) c.error = line;
    }
  });
  c.ready = new Promise((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  sock.on('error', (e) => { c.error = e.message; });
  c.flush = () => new Promise((resolve) => { c.pongs.push(resolve); sock.write('PING\r\n'); });
  c.start = async () => { await c.ready; sock.write('CONNECT {"verbose":false,"pedantic":false}\r\n'); await c.flush(); return c; };
  c.sub = (subject, sid) => { sock.write(`SUB ${subject} ${sid}\r\n`); return c.flush(); };
  c.pub = (subject, data) => sock.write(`PUB ${subject} ${Buffer.byteLength(data)}\r\n${data}\r\n`);
  c.close = () => sock.destroy();
  return c;
}

/** A message published on server `from` reaches a subscriber on server `to` (within timeoutMs). */
async function crosses(from, to, label, timeoutMs = ms(5000)) {
  const sub = await natsConnect(to.url).start();
  const pub = await natsConnect(from.url).start();
  try {
    const subject = `iyagi.test.${label}`;
    await sub.sub(subject, 1);
    // Interest reaches the other servers over the routes a moment after SUB: publish until seen.
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; !sub.got.length; i++) {
      assert.ok(Date.now() < deadline, `a message from ${from.name} never reached a subscriber on ${to.name} (${sub.error || pub.error || 'no error'})`);
      pub.pub(subject, `hello ${i} from ${from.name}`);
      await pub.flush();
      await sleep(50);
    }
    assert.equal(sub.got[0].subject, subject);
    assert.match(sub.got[0].data, new RegExp(`^hello \\d+ from ${from.name}$`));
  } finally {
    sub.close();
    pub.close();
  }
}

describe('NATS cluster (deploy/nats-cluster.conf.in)', { skip: NO_NATS }, () => {
  let nats = [];
  before(async () => { nats = await startNatsCluster(3); });
  after(async () => { await Promise.all(nats.map((x) => x.kill())); });

  test('three servers form one cluster: each routes to the two others, messages cross', async () => {
    const zs = await Promise.all(nats.map((x) => x.routez()));
    const ids = zs.map((z) => z.server_id);
    assert.equal(new Set(ids).size, 3, 'three distinct servers');
    zs.forEach((z, i) => {
      const remote = new Set(z.routes.map((r) => r.remote_id));
      const others = ids.filter((_, j) => j !== i);
      assert.deepEqual([...remote].sort(), [...others].sort(), `${nats[i].name} routes to the two others: ${JSON.stringify(z.routes)}`);
    });
    await crosses(nats[0], nats[2], 'a');
    await crosses(nats[2], nats[1], 'b');
  });

  test('a server killed (SIGKILL) and restarted on the same ports rejoins the cluster', async () => {
    const victim = nats[1];
    const oldId = victim.serverId;
    await victim.kill();
    assert.equal(victim.running, false);
    // The survivors still route to each other, and carry messages.
    await waitForRoutes(nats);
    for (const x of [nats[0], nats[2]]) {
      const z = await x.routez();
      assert.ok(!z.routes.some((r) => r.remote_id === oldId), `${x.name} dropped the route to the dead server`);
    }
    await crosses(nats[0], nats[2], 'c');
    await victim.restart();
    assert.equal(victim.running, true);
    assert.notEqual(victim.serverId, oldId, 'a new server instance');
    await waitForRoutes(nats);
    await crosses(victim, nats[0], 'd');
    await crosses(nats[2], victim, 'e');
  });
});

// ---- HAProxy in front of two plain HTTP backends

function backend(name) {
  const b = { name, health: 200, hits: 0, checks: 0 };
  b.server = http.createServer((req, res) => {
    if (req.url === '/healthz') {
      b.checks++;
      res.writeHead(b.health, { 'content-type': 'text/plain' });
      res.end(b.health === 200 ? 'ok\n' : 'draining\n');
      return;
    }
    b.hits++;
    res.writeHead(200, { 'content-type': 'application/json', 'x-backend': name });
    res.end(JSON.stringify({ backend: name, path: req.url }));
  });
  // A WebSocket endpoint like iyagid's /v1/ws: echoes, prefixed with the backend's name.
  b.wss = new WebSocketServer({ server: b.server, path: '/v1/ws' });
  b.wss.on('connection', (ws) => ws.on('message', (d) => ws.send(`${name}:${d}`)));
  b.listen = () => new Promise((resolve) => b.server.listen(0, '127.0.0.1', () => { b.port = b.server.address().port; resolve(b); }));
  b.close = () => new Promise((resolve) => { for (const c of b.wss.clients) c.terminate(); b.server.closeAllConnections?.(); b.server.close(() => resolve()); });
  return b;
}

/** which backend answers each of n requests through HAProxy, in order */
async function spread(url, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const r = await fetch(`${url}/who?i=${i}`, { signal: AbortSignal.timeout(ms(5000)) });
    const text = await r.text();
    assert.equal(r.status, 200, `GET /who through HAProxy: ${r.status} ${text}`);
    out.push(JSON.parse(text).backend);
  }
  return out;
}

/** polls until n requests in a row all go where want() says, or fails after timeoutMs */
async function until(url, n, want, what, timeoutMs = ms(10000)) {
  const deadline = Date.now() + timeoutMs;
  let got;
  for (;;) {
    got = await spread(url, n);
    if (want(got)) return got;
    assert.ok(Date.now() < deadline, `${what} within ${timeoutMs} ms; last spread ${got.join(',')}`);
    await sleep(200);
  }
}

describe('HAProxy (deploy/haproxy.cfg.in)', { skip: NO_HAPROXY }, () => {
  let a;
  let b;
  let h;
  before(async () => {
    a = await backend('A').listen();
    b = await backend('B').listen();
    h = await startHaproxy([{ name: 'n1', port: a.port }, { name: 'n2', port: b.port }]);
  });
  after(async () => {
    if (h) await h.kill();
    await Promise.all([a, b].filter(Boolean).map((x) => x.close()));
  });

  test('balances round-robin over the healthy backends, health-checking GET /healthz', async () => {
    const got = await until(h.url, 8, (g) => g.includes('A') && g.includes('B'), 'both backends in rotation');
    for (let i = 1; i < got.length; i++) assert.notEqual(got[i], got[i - 1], `round-robin alternates: ${got.join(',')}`);
    // Servers start in rotation; the checks (spread over the interval) follow within ~1 s.
    const deadline = Date.now() + ms(5000);
    while (!(a.checks > 0 && b.checks > 0) && Date.now() < deadline) await sleep(50);
    assert.ok(a.checks > 0 && b.checks > 0, `both backends are health-checked (A ${a.checks}, B ${b.checks})`);
  });

  test('a backend answering 503 on /healthz (draining) leaves rotation, and comes back at 200', async () => {
    b.health = 503;
    const t0 = Date.now();
    await until(h.url, 6, (g) => g.every((x) => x === 'A'), 'B out of rotation');
    const outMs = Date.now() - t0;
    const hitsB = b.hits;
    await spread(h.url, 6);
    assert.equal(b.hits, hitsB, 'no request reaches B while it answers 503');
    assert.match(h.logTail(), /n2 is DOWN/, 'HAProxy logs the backend going down');
    b.health = 200;
    await until(h.url, 6, (g) => g.includes('B'), 'B back in rotation');
    assert.match(h.logTail(), /n2 is UP/, 'HAProxy logs the backend coming back');
    assert.ok(outMs < ms(5000), `out of rotation within 5 s (took ${outMs} ms)`);
  });

  test('a WebSocket to /v1/ws through HAProxy works (Upgrade, then a tunnel)', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${h.port}/v1/ws`);
    try {
      await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
      const echoes = [];
      ws.on('message', (d) => echoes.push(d.toString()));
      for (let i = 0; i < 3; i++) ws.send(`ping${i}`);
      const deadline = Date.now() + ms(5000);
      while (echoes.length < 3 && Date.now() < deadline) await sleep(20);
      assert.equal(echoes.length, 3, `three echoes, got ${JSON.stringify(echoes)}`);
      const who = echoes[0].split(':')[0];
      assert.deepEqual(echoes, [0, 1, 2].map((i) => `${who}:ping${i}`), 'one backend holds the socket');
    } finally {
      ws.terminate();
    }
  });
});

// ---- iyagid nodes on the bus (needs the lead's --bus)

// No binary at all fails (like every other e2e test: "run make first"); one without --bus skips.
const NO_BUS = NO_NATS || (!binaryPresent() || iyagidHasBus() ? false : 'iyagid --help does not mention --bus: this iyagid cannot join a cluster yet');

describe('startCluster(): 3 iyagid nodes on 3 NATS servers and one PostgreSQL', { skip: NO_BUS }, () => {
  test('every node answers /healthz, discovery lists all three (through HAProxy too), a node restarts in place', { skip: NO_HAPROXY }, async () => {
    const c = await startCluster({ nodes: 3, nats: 3, haproxy: true });
    try {
      for (const node of c.nodes) {
        const r = await api(node, 'GET', '/healthz');
        assert.equal(r.status, 200, `${node.name} /healthz: ${r.status}`);
      }
      const d = await waitForNodes(c.nodes[0], 3);
      assert.deepEqual(d.nodes.map((x) => x.node).sort(), ['n1', 'n2', 'n3']);
      for (const x of d.nodes) {
        const node = c.nodes.find((n) => n.name === x.node);
        assert.equal(x.ws_url, node.wsUrl, `${x.node}'s ws_url is its --public-url's /v1/ws`);
      }
      assert.ok(c.nodes.some((n) => n.wsUrl === d.ws_url), `ws_url names a node: ${d.ws_url}`);
      for (const node of c.nodes.slice(1)) assert.equal((await waitForNodes(node, 3)).nodes.length, 3);
      const viaLb = await discovery(c.haproxy.url);
      assert.ok(c.nodes.some((n) => n.wsUrl === viaLb.ws_url), `discovery through HAProxy names a node: ${viaLb.ws_url}`);
      // Signup and login through HAProxy; the WebSocket both to the node named and through HAProxy.
      const u = await newUser(c.haproxy.url, 'lb');
      assert.ok(c.nodes.some((n) => n.wsUrl === u.ws_url), `login's ws_url names a node: ${u.ws_url}`);
      for (const url of [u.ws_url, `ws://127.0.0.1:${c.haproxy.port}/v1/ws`]) {
        const ws = await connectWs(url, { token: u.token, label: url });
        assert.equal(ws.ready.op, 'ready');
        ws.terminate();
      }
      // A node stopped (SIGTERM: it drains, leaving discovery at once) and started again comes
      // back on the same port, data dir and store.
      const n3 = c.nodes[2];
      const port = n3.port;
      const r = await n3.stop();
      assert.equal(r.code, 0, `n3 exits 0 on SIGTERM: ${JSON.stringify(r)}`);
      assert.deepEqual((await waitForNodes(c.nodes[0], 2)).nodes.map((x) => x.node).sort(), ['n1', 'n2']);
      await n3.start();
      assert.equal(n3.port, port, 'same port');
      assert.equal((await waitForNodes(c.nodes[0], 3)).nodes.length, 3);
    } catch (e) {
      throw c.annotate(e);
    } finally {
      await c.stop();
    }
  });
});

describe('scripts/cluster.sh (make cluster)', { skip: NO_BUS || NO_HAPROXY }, () => {
  test('up starts the whole cluster and writes cluster.env; down stops every process and removes DIR', async () => {
    const run = promisify(execFile);
    const script = path.join(REPO, 'scripts', 'cluster.sh');
    const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'iyagi-cluster-sh-'));
    fs.chmodSync(parent, 0o755);   // PostgreSQL runs as the postgres user, under DIR
    const dir = path.join(parent, 'c');
    const env = { ...process.env, IYAGID };
    // Its servers run in sessions of their own: should this process die first, down them.
    const down = () => { if (fs.existsSync(path.join(dir, 'cluster.env'))) execFileSync(script, ['down', dir], { env, stdio: 'ignore' }); };
    process.on('exit', down);
    let pids = [];
    try {
      let up;
      try {
        up = await run(script, ['up', dir], { env, timeout: ms(60000) });
      } catch (e) {
        // A failed up stops what it started and removes DIR by itself.
        throw new Error(`cluster.sh up failed: ${e.message}\n${e.stdout}\n${e.stderr}`);
      }
      const vars = Object.fromEntries(fs.readFileSync(path.join(dir, 'cluster.env'), 'utf8')
        .split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
      pids = Object.entries(vars).filter(([k]) => k.endsWith('_PID')).map(([, v]) => Number(v));
      assert.equal(pids.length, 3 + 3 + 1, `3 NATS, 3 nodes, HAProxy: ${JSON.stringify(vars)}`);
      assert.ok(up.stdout.includes(`web client:  ${vars.HTTP_URL}/`), `prints the web client's URL:\n${up.stdout}`);
      for (const i of [1, 2, 3]) assert.ok(up.stdout.includes(vars[`NODE${i}_URL`]), `prints node n${i}'s URL`);
      const r = await fetch(`${vars.HTTP_URL}/`);
      assert.equal(r.status, 200, 'the web client through HAProxy');
      assert.match(r.headers.get('content-type') || '', /text\/html/);
      await r.arrayBuffer();
      assert.equal((await waitForNodes(vars.HTTP_URL, 3)).nodes.length, 3);
      const d = await run(script, ['down', dir], { env, timeout: ms(60000) });
      assert.match(d.stderr, /stopped/);
      assert.equal(fs.existsSync(dir), false, 'down removes DIR');
    } finally {
      down();
      process.removeListener('exit', down);
      fs.rmSync(parent, { recursive: true, force: true });
    }
    const alive = (pid) => { try { return !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; } };
    assert.deepEqual(pids.filter(alive), [], 'no process of the cluster survives down');
  });
});
