// hardening.test.mjs — the server against clients and surroundings that do not play along
// (issue 12): a shutdown that no client can hold up, one server per port, log lines that user
// strings cannot forge, a private data directory, the web client's security headers, and the
// smaller input checks (a malformed first frame, an empty group name, a seq past 2^53).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import {
  withServer, api, rawHttp, show, newUser, login, openWs, connectWs, ms, sleep, assertHttpError, IYAGID, fullSyncWs,
} from './lib/harness.mjs';

const T = { timeout: ms(120000) };

/** a raw TCP client that upgrades to WebSocket by hand, then reads nothing and never closes */
function stubbornWebSocket(srv) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: srv.port, allowHalfOpen: true });
    s.once('error', reject);
    s.once('connect', () => {
      s.write(`GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:${srv.port}\r\nUpgrade: websocket\r\n` +
        'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
      s.once('data', (d) => {
        assert.match(d.toString('latin1'), /^HTTP\/1\.1 101 /, 'the upgrade is answered');
        s.pause();           // from now on: read nothing, close nothing
        resolve(s);
      });
    });
  });
}

test('SIGTERM finishes within --shutdown-timeout whatever the clients do: one that never closes its socket, one that never reads, a half-sent request', T, () => withServer({ extraArgs: ['--shutdown-timeout', '4'] }, async (srv) => {
  const held = [];
  try {
    held.push(await stubbornWebSocket(srv));
    held.push(await stubbornWebSocket(srv));
    // an authenticated socket whose client stops reading (its TCP window fills: nothing is read)
    const u = await newUser(srv, 'shd');
    const w = await connectWs(srv, { token: u.token, label: 'W' });
    w.ws._socket.pause();
    held.push(w.ws._socket);
    // a request head that never ends
    const h = net.connect({ host: '127.0.0.1', port: srv.port, allowHalfOpen: true });
    await new Promise((r) => h.once('connect', r));
    h.write('POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"user');
    held.push(h);
    await sleep(200);

    const t0 = Date.now();
    const exit = await srv.stop(ms(20000));
    const took = Date.now() - t0;
    assert.deepEqual(exit, { code: 0, signal: null }, 'a clean exit: nothing was left to the deadline\'s hard stop');
    assert.ok(took < ms(4000), `exited ${took} ms after SIGTERM, within --shutdown-timeout 4 s`);
    assert.match(srv.stderrTail(), /stopped cleanly/);
  } finally {
    for (const s of held) s.destroy();
  }
}));

test('a second iyagid on a port already served refuses to start, with the reason; the first keeps all the traffic', T, () => withServer({}, async (srv) => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'iyagi-e2e-second-'));
  try {
    const second = spawn(IYAGID, ['--listen', `127.0.0.1:${srv.port}`, '--data', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    second.stderr.on('data', (d) => { err += d; });
    second.stdout.on('data', (d) => { err += d; });
    const code = await new Promise((resolve) => {
      const timer = setTimeout(() => { second.kill('SIGKILL'); resolve('still running'); }, ms(10000));
      second.on('close', (c) => { clearTimeout(timer); resolve(c); });
    });
    assert.notEqual(code, 0, `the second server must not run (exit ${code}); its log:\n${err}`);
    assert.notEqual(code, 'still running', `the second server must exit at start; its log:\n${err}`);
    assert.match(err, /cannot listen on 127\.0\.0\.1:\d+: Address already in use/, 'it says why');
    // every new connection still reaches the first server, which has the account
    const u = await newUser(srv, 'one');
    for (let i = 0; i < 20; i++) {
      const r = await api(srv, 'GET', '/v1/channels', { token: u.token });
      assert.equal(r.status, 200, `request ${i} reaches the server that knows the token: ${show(r)}`);
    }
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}));

test('user-chosen strings cannot forge log lines or send escape sequences to a terminal', T, () => withServer({}, async (srv) => {
  const u = await newUser(srv, 'logx');
  const device = 'phone\n2026-01-01T00:00:00.000Z login: user 1, device admin\u001b[2J\r\\';
  const s = await login(srv, u.user.username, undefined, device);
  assert.ok(s.token, 'the login works');
  await sleep(100);
  const log = srv.stderrTail(20000);
  assert.ok(!log.includes('\n2026-01-01T00:00:00.000Z login: user 1'), 'no forged line');
  assert.ok(!/[\u0000-\u0008\u000b-\u001f\u007f]/.test(log), 'no control byte other than the newlines ending lines');
  assert.ok(log.includes('device phone\\x0a2026-01-01T00:00:00.000Z login: user 1, device admin\\x1b[2J\\x0d\\\\'),
    `the device name is logged escaped; log tail:\n${log.slice(-1500)}`);
}));

test('the data directory is private: 0700, files 0600, also when it existed before with open modes', T, async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'iyagi-e2e-modes-'));
  await fsp.chmod(dir, 0o755);
  await fsp.writeFile(path.join(dir, 'left-over'), 'x', { mode: 0o644 });
  await fsp.chmod(path.join(dir, 'left-over'), 0o644);
  const { Server } = await import('./lib/harness.mjs');
  const srv = new Server({});
  srv.dataDir = dir;
  try {
    await srv.start();
    await newUser(srv, 'modes');   // something written
    const open = [];
    const walk = (p) => {
      const st = fs.lstatSync(p);
      if ((st.mode & 0o077) !== 0) open.push(`${p} ${(st.mode & 0o777).toString(8)}`);
      if (st.isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e));
    };
    walk(dir);
    assert.deepEqual(open, [], 'nothing in the data directory is open to group or others');
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
  } finally {
    await srv.cleanup();
  }
});

test('security headers: the web client with a strict CSP (no inline script), no framing; nosniff everywhere', T, () => withServer({}, async (srv) => {
  for (const p of ['/', '/app.js', '/app.css']) {
    const r = await fetch(srv.url + p);
    await r.arrayBuffer();
    assert.equal(r.status, 200, p);
    const csp = r.headers.get('content-security-policy') || '';
    assert.match(csp, /(^|;)\s*default-src 'none'/, `${p}: default-src 'none' (${csp})`);
    assert.match(csp, /(^|;)\s*script-src 'self'(;|$)/, `${p}: scripts from our origin only, nothing inline (${csp})`);
    assert.ok(!/unsafe-inline|unsafe-eval/.test(csp), `${p}: no unsafe-* (${csp})`);
    assert.match(csp, /(^|;)\s*frame-ancestors 'none'/, `${p}: not framed (${csp})`);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff', p);
    assert.equal(r.headers.get('x-frame-options'), 'DENY', p);
    assert.equal(r.headers.get('referrer-policy'), 'no-referrer', p);
  }
  // the page itself has no inline script or style for the policy to block
  const html = await (await fetch(srv.url + '/')).text();
  assert.ok(!/<script(?![^>]*\bsrc=)[^>]*>/i.test(html), 'no inline <script>');
  assert.ok(!/<style\b|\sstyle=|\son[a-z]+=/i.test(html), 'no inline style or event handler attributes');
  for (const p of ['/healthz', '/v1/discovery', '/v1/nothing-here']) {
    const r = await fetch(srv.url + p);
    await r.arrayBuffer();
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff', `${p}: nosniff`);
  }
}));

test('smaller input checks: a malformed first frame closes with 1008; an empty group name and a seq past 2^53 are bad_request', T, () => withServer({}, async (srv) => {
  for (const first of ['{not json', '[1,2,3]', '{"op":"auth"}']) {
    const w = await openWs(srv, { label: 'first' });
    w.ws.send(first);
    const e = await w.waitFor((f) => f.op === 'error', { what: 'an error for the bad first frame' });
    assert.equal(e.code, first.startsWith('{"op"') ? 'bad_request' : 'bad_request', JSON.stringify(e));
    const c = await w.closed;
    assert.equal(c.code, 1008, `${first}: closed with 1008, got ${JSON.stringify(c)}`);
  }
  const [a, b] = [await newUser(srv, 'sma'), await newUser(srv, 'smb')];
  assertHttpError(await api(srv, 'POST', '/v1/groups', { token: a.token, body: { name: '', members: [b.user.id] } }), 400, 'bad_request', 'empty group name');
  const g = await api(srv, 'POST', '/v1/groups', { token: a.token, body: { name: 'g', members: [b.user.id] } });
  assert.equal(g.status, 201, show(g));
  const ch = g.body.channel.id;
  for (const q of ['before_seq=18446744073709551616', 'before_seq=18446744073709551615', 'after_seq=9007199254740993', 'before_seq=99999999999999999999999']) {
    assertHttpError(await api(srv, 'GET', `/v1/channels/${ch}/messages?${q}`, { token: a.token }), 400, 'bad_request', q);
  }
  assertHttpError(await api(srv, 'GET', '/v1/sync?after=18446744073709551616', { token: a.token }), 400, 'bad_request', 'sync after 2^64');
  const ok = await api(srv, 'GET', `/v1/channels/${ch}/messages?before_seq=9007199254740992`, { token: a.token });
  assert.equal(ok.status, 200, `2^53 itself is fine: ${show(ok)}`);
  const w = await connectWs(srv, { token: a.token, label: 'A' });
  // 2^64 does not even parse as a JSON integer here: the frame is bad_request as a whole (no rid
  // can be read from it); 2^53 + 1 parses and is refused by range
  w.send({ op: 'history', channel: ch, before_seq: 2 ** 64, rid: 'big' });
  const h = await w.waitFor((f) => f.op === 'error');
  assert.equal(h.code, 'bad_request', JSON.stringify(h));
  await w.sendRaw(`{"op":"history","channel":"${ch}","before_seq":9007199254740993,"rid":"r53"}`);
  const h53 = await w.waitFor((f) => f.rid === 'r53');
  assert.equal(h53.op, 'error', JSON.stringify(h53));
  assert.equal(h53.code, 'bad_request');
  assert.equal((await w.request({ op: 'history', channel: ch, before_seq: 2 ** 53 })).op, 'batch', '2^53 itself is fine');
  w.terminate();
}));

// ---------------------------------------------------------------- connections and requests

/** a raw TCP connection; resolves once connected. `.ended` resolves with what it received when the server closes it */
function rawConn(srv) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: srv.port });
    let got = '';
    s.on('data', (d) => { got += d.toString('latin1'); });
    s.gone = false;
    s.ended = new Promise((r) => s.on('close', () => { s.gone = true; r(got); }));
    s.on('error', () => {});
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

// A sanitizer's allocator keeps freed memory in quarantine: RSS bounds hold for the release build only.
const SANITIZED = /asan|tsan/i.test(IYAGID);
const rssKb = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);

test('slow requests: a head or a body that trickles is cut at its deadline (408); legitimate requests meanwhile go through at once', T, () => withServer({ extraArgs: ['--request-timeout', '2', '--min-body-rate', '16384'] }, async (srv) => {
  const u = await newUser(srv, 'slow');
  const slowHead = await rawConn(srv);
  const slowBody = await rawConn(srv);
  const t0 = Date.now();
  let stop = false;
  const headText = `GET /healthz HTTP/1.1\r\nX-Slow: ${'a'.repeat(1000)}`;
  const trickle = async () => {
    slowBody.write('POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 20000\r\n\r\n{');
    for (let i = 0; !stop && i < 400; i++) {
      if (!slowHead.destroyed) slowHead.write(headText[i]);   // a byte every 100 ms
      if (!slowBody.destroyed) slowBody.write('x'.repeat(100));   // 100 bytes every 100 ms: 1 KB/s
      await sleep(100);
    }
  };
  const feeding = trickle();
  // meanwhile the server serves everyone else at once
  for (let i = 0; i < 10; i++) {
    const r = await api(srv, 'GET', '/v1/me', { token: u.token });
    assert.equal(r.status, 200, show(r));
    assert.ok(r.ms < 1000, `a legitimate request is not held up (${r.ms} ms)`);
  }
  const head = await slowHead.ended;
  const headAt = Date.now() - t0;
  const body = await slowBody.ended;
  const bodyAt = Date.now() - t0;
  stop = true;
  await feeding;
  assert.match(head, /^HTTP\/1\.1 408 /, `the trickling head gets 408: ${JSON.stringify(head.slice(0, 80))}`);
  assert.ok(headAt >= 1900 && headAt < ms(4500), `the head's deadline is --request-timeout 2 s (closed after ${headAt} ms)`);
  assert.match(body, /^HTTP\/1\.1 408 /, `the trickling body gets 408: ${JSON.stringify(body.slice(0, 80))}`);
  // 2 s + 20,000 bytes at 16,384 B/s = 3.2 s: a body at 1 KB/s does not make it
  assert.ok(bodyAt >= 3000 && bodyAt < ms(6000), `the body's deadline grows with its length (closed after ${bodyAt} ms)`);
  const m = await (await fetch(`${srv.url}/metrics`)).text();
  assert.match(m, /^iyagi_request_timeouts_total [2-9]/m, 'counted');
}));

/** reads one HTTP/1.1 answer (with a Content-Length) from a raw socket: {status, body, at} */
function readAnswer(s, timeoutMs = ms(15000)) {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const done = (err, v) => { clearTimeout(timer); s.off('data', onData); s.off('close', onClose); err ? reject(err) : resolve(v); };
    const onData = (d) => {
      got = Buffer.concat([got, d]);
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = got.subarray(0, end).toString('latin1');
      const len = Number(/^content-length:\s*(\d+)/im.exec(head)?.[1] ?? 0);
      if (got.length < end + 4 + len) return;
      done(null, { status: Number(head.split(' ')[1]), body: got.subarray(end + 4, end + 4 + len).toString('utf8'), at: Date.now() });
    };
    const onClose = () => done(new Error(`the server closed the connection before answering (got ${JSON.stringify(got.toString('latin1').slice(0, 80))})`));
    const timer = setTimeout(() => done(new Error('no answer in time')), timeoutMs);
    s.on('data', onData);
    s.once('close', onClose);
  });
}

test('keep-alive: an idle connection goes after --keepalive-timeout counted from its last answer; a long poll longer than that keeps its connection for the next request', T, () => withServer({ extraArgs: ['--keepalive-timeout', '2'] }, async (srv) => {
  const u = await newUser(srv, 'keep');
  const s = await rawConn(srv);
  const get = (p) => s.write(`GET ${p} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${u.token}\r\n\r\n`);
  const t0 = Date.now();
  get('/v1/sync?after=0&wait=3');
  const poll = await readAnswer(s);
  assert.equal(poll.status, 200, `the long poll: ${poll.status} ${poll.body}`);
  assert.deepEqual(JSON.parse(poll.body).messages, [], 'nothing arrived');
  assert.ok(poll.at - t0 >= 2900, `held for its wait of 3 s, past the 2 s keep-alive (${poll.at - t0} ms)`);
  // the sweep runs every 250 ms: a connection counted idle from its request (3 s ago) would be gone by now
  await sleep(800);
  assert.equal(s.gone, false, 'the connection is still open after the long answer');
  get('/v1/me');
  const me = await readAnswer(s);
  assert.equal(me.status, 200, `the next request on the same connection: ${me.status} ${me.body}`);
  assert.equal(JSON.parse(me.body).user.username, u.username);
  // and idle, it goes after the keep-alive time
  await s.ended;
  const idle = Date.now() - me.at;
  assert.ok(idle >= 1900 && idle < ms(4500), `closed ${idle} ms after its last answer (--keepalive-timeout 2)`);
}));

test('unfinished request bodies share a memory budget: past it big ones get 503, small requests still pass, RSS stays bounded', T, () => withServer({ extraArgs: ['--max-request-buffers-mb', '4'] }, async (srv) => {
  const u = await newUser(srv, 'budget');
  const before = rssKb(srv.proc.pid);
  const held = [];
  const answers = [];
  try {
    for (let i = 0; i < 40; i++) {
      const s = await rawConn(srv);
      held.push(s);
      s.write('POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1200000\r\n\r\n');
      s.write(Buffer.alloc(500000, 0x20));   // 0.5 MB each, never finished: 20 MB asked for in all
      answers.push(s.ended);
    }
    await sleep(500);
    const r = await api(srv, 'GET', '/v1/me', { token: u.token });
    assert.equal(r.status, 200, `a small request passes: ${show(r)}`);
    const grown = rssKb(srv.proc.pid) - before;
    for (const s of held) s.end();
    const got = await Promise.all(answers);
    const refused = got.filter((g) => /^HTTP\/1\.1 503 /.test(g)).length;
    assert.ok(refused >= 20, `most of the 40 half-sent bodies are refused with 503 (${refused})`);
    if (!SANITIZED) assert.ok(grown < 40 * 1024, `RSS grew ${grown} KB for 20 MB of half-sent bodies against a 4 MB budget`);
    const m = await (await fetch(`${srv.url}/metrics`)).text();
    assert.match(m, /^iyagi_request_over_budget_total [1-9]/m);
  } finally {
    for (const s of held) s.destroy();
  }
}));

test('connection caps: per address (refused at accept, back when one closes) and sockets per account', T, () => withServer({ rateLimits: 'on', extraArgs: ['--max-conns-per-address', '20', '--max-sockets-per-user', '3'] }, async (srv) => {
  const u = await newUser(srv, 'caps');
  const held = [];
  try {
    for (let i = 0; i < 25; i++) held.push(await rawConn(srv));
    await sleep(300);
    const open = held.filter((s) => !s.gone);
    // (this process's own keep-alive HTTP connections count too)
    assert.ok(open.length <= 20 && open.length >= 16, `at most 20 connections from one address stay open: ${open.length} of 25`);
    open[0].destroy();
    await sleep(200);
    const again = await rawConn(srv);
    held.push(again);
    await sleep(300);
    assert.ok(!again.gone, 'one closed, one more may come');
    for (const s of held.splice(0)) s.destroy();
    await sleep(200);

    const sockets = [];
    for (let i = 0; i < 3; i++) sockets.push(await connectWs(srv, { token: u.token, label: `S${i}` }));
    const fourth = await openWs(srv, { label: 'S4' });
    fourth.send({ op: 'auth', token: u.token, rid: 'a4' });
    const e = await fourth.waitFor((f) => f.op === 'error');
    assert.equal(e.code, 'rate_limited', JSON.stringify(e));
    assert.equal((await fourth.closed).code, 1008, 'the 4th socket of one account is closed');
    await sockets.pop().close();
    await sleep(200);
    sockets.push(await connectWs(srv, { token: u.token, label: 'S3b' }));
    for (const s of sockets) s.terminate();
  } finally {
    for (const s of held) s.destroy();
  }
}));

test('--max-connections: past it new connections are refused at accept and counted; the held ones keep working', T, () => withServer({ extraArgs: ['--max-connections', '12'] }, async (srv) => {
  const u = await newUser(srv, 'maxc');
  const w = await connectWs(srv, { token: u.token, label: 'W' });
  const held = [];
  try {
    for (let i = 0; i < 15; i++) held.push(await rawConn(srv));
    await sleep(300);
    const open = held.filter((s) => !s.gone).length;
    assert.ok(open <= 11 && open >= 8, `12 connections at most, the WebSocket and this process's HTTP ones included: ${open} of 15 raw ones open`);
    assert.equal((await w.request({ op: 'hb' })).op, 'hb', 'the held WebSocket still works');
    for (const s of held.splice(0)) s.destroy();
    await sleep(200);
    const m = await (await fetch(`${srv.url}/metrics`)).text();
    assert.match(m, /^iyagi_connections_refused_total [1-9]/m);
  } finally {
    for (const s of held) s.destroy();
    w.terminate();
  }
}));

test('output shares a memory budget: sockets that never read are dropped once it is tight, everyone else is served, nothing is lost', T, () => withServer({ extraArgs: ['--max-output-buffers-mb', '4'] }, async (srv) => {
  const [a, b] = [await newUser(srv, 'outa'), await newUser(srv, 'outb')];
  const stuck = [];
  for (let i = 0; i < 8; i++) {
    const s = await connectWs(srv, { token: b.token, label: `B${i}` });
    s.ws._socket.pause();   // reads nothing from here on
    stuck.push(s);
  }
  const before = rssKb(srv.proc.pid);
  const text = 'z'.repeat(100000);
  for (let i = 0; i < 80; i++) {
    const r = await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: { text, cmid: `out-${i}` } });
    assert.equal(r.status, 201, show(r));
  }
  await sleep(1600);   // a queue is "slow" once it has waited a second; the sweep runs every 250 ms
  const grown = rssKb(srv.proc.pid) - before;
  const m = await (await fetch(`${srv.url}/metrics`)).text();
  const dropped = Number(/^iyagi_slow_consumers_closed_total (\d+)/m.exec(m)[1]);
  const queued = Number(/^iyagi_output_buffered_bytes (\d+)/m.exec(m)[1]);
  assert.ok(dropped >= 1, `slow readers were dropped (${dropped})`);
  assert.ok(queued <= 4 * (1 << 20) + 8 * 300000, `output held stays near the budget: ${queued} bytes`);
  if (!SANITIZED) assert.ok(grown < 64 * 1024, `RSS grew ${grown} KB for 8 sockets x 8 MB of undelivered messages`);
  // a reader that reads gets everything: nothing was lost by dropping the others
  const fresh = await connectWs(srv, { token: b.token, label: 'B-fresh' });
  const all = await fullSyncWs(fresh, 0, 50);
  assert.equal(all.length, 80);
  fresh.terminate();
  for (const s of stuck) s.terminate();
}));
