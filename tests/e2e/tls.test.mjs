// tls.test.mjs — native TLS (--tls-cert/--tls-key): HTTPS and WSS on the server's port, driven by
// Node's https/tls and the `ws` client trusting a CA made for the test (lib/tlscerts.mjs), never
// by switching checks off. Signup, login, discovery's wss:// URLs, chat between two WSS clients,
// a 100,000-character message, an upload and its download; the failure modes: garbage, a plain
// HTTP request and a stalled handshake on the TLS port are closed (counted, logged at most once
// a second) while the server keeps serving, TLS 1.1 and CBC ciphers are refused; SIGHUP reloads
// the certificate for new connections while an old WSS connection keeps working, and a reload
// that fails keeps the old certificate; a bad certificate or key at start exits non-zero.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import WebSocket from 'ws';
import { withServer, WsClient, ms, sleep, uname, PASSWORD, IYAGID, freePort } from './lib/harness.mjs';
import { makeCa, removeCa, serverCert } from './lib/tlscerts.mjs';

const T = { timeout: ms(90000) };
let pki, first, second;
before(() => {
  pki = makeCa();
  first = serverCert(pki, { name: 'first', serial: 1001, cn: 'iyagi test one' });
  second = serverCert(pki, { name: 'second', serial: 2002, cn: 'iyagi test two' });
});
after(() => removeCa(pki));

const tlsOpts = (cert = first) => ({ tls: { cert: cert.cert, key: cert.key, ca: pki.ca } });

/** one HTTPS request (the CA trusted), Buffer or JSON body: {status, headers, buf, body} */
function request(srv, method, p, { token, body, json, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    if (token) h.authorization = `Bearer ${token}`;
    if (json !== undefined) {
      body = Buffer.from(JSON.stringify(json));
      h['content-type'] = 'application/json';
    }
    if (body) h['content-length'] = body.length;
    const req = https.request({ host: '127.0.0.1', port: srv.port, path: p, method, headers: h, ca: pki.ca, agent: false });
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        let parsed = null;
        try { parsed = JSON.parse(buf.toString('utf8')); } catch { /* bytes */ }
        resolve({ status: res.statusCode, headers: res.headers, buf, body: parsed, text: buf.toString('utf8', 0, 300) });
      });
    });
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

async function newUser(srv, base) {
  const username = uname(base);
  const s = await request(srv, 'POST', '/v1/users', { json: { username, password: PASSWORD } });
  assert.equal(s.status, 201, `signup over HTTPS: ${s.text}`);
  const l = await request(srv, 'POST', '/v1/sessions', { json: { username, password: PASSWORD } });
  assert.equal(l.status, 201, `login over HTTPS: ${l.text}`);
  return { ...l.body, username };
}

/** a WSS connection trusting the test CA, authenticated */
async function connectWss(srv, token, label) {
  const c = await new Promise((resolve, reject) => {
    const ws = new WebSocket(srv.wsUrl, { ca: pki.ca, maxPayload: 64 << 20, handshakeTimeout: ms(10000) });
    const client = new WsClient(ws, label);
    ws.once('open', () => resolve(client));
    ws.once('error', (e) => reject(new Error(`${label}: ${e.message}`)));
  });
  c.send({ op: 'auth', token });
  const f = await c.waitFor((x) => x.op === 'ready' || x.op === 'error', { what: 'ready' });
  assert.equal(f.op, 'ready', `${label}: ${JSON.stringify(f)}`);
  return c;
}

/** a TLS connection's outcome: {protocol, cipher, alpn, cert} or {error} */
function tlsProbe(port, opts = {}) {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: pki.ca, servername: 'localhost', ...opts }, () => {
      const r = { protocol: s.getProtocol(), cipher: s.getCipher().name, alpn: s.alpnProtocol, cert: s.getPeerCertificate() };
      s.end();
      resolve(r);
    });
    s.on('error', (e) => resolve({ error: `${e.code || ''} ${e.message}` }));
  });
}

/** raw bytes to the port: resolves {closed, data} when the server closes, or {closed: false} after ms */
function rawSend(port, bytes, waitMs = ms(8000)) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks = [];
    const timer = setTimeout(() => { s.destroy(); resolve({ closed: false, data: Buffer.concat(chunks) }); }, waitMs);
    s.on('connect', () => { if (bytes) s.write(bytes); });
    s.on('data', (d) => chunks.push(d));
    s.on('error', () => {});
    s.on('close', () => { clearTimeout(timer); resolve({ closed: true, data: Buffer.concat(chunks) }); });
  });
}

async function metric(srv, name) {
  const r = await request(srv, 'GET', '/metrics');
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(r.buf.toString());
  return m ? Number(m[1]) : NaN;
}

async function until(cond, what, timeoutMs = ms(10000)) {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) assert.fail(`timed out: ${what}`);
    await sleep(25);
  }
}

test('signup, login and chat over HTTPS and WSS; URLs say wss://; a 100,000-character message both ways', T, () =>
  withServer(tlsOpts(), async (srv) => {
    assert.match(srv.stderrTail(), /listening on https:\/\/127\.0\.0\.1:/);
    const a = await newUser(srv, 'tla');
    const b = await newUser(srv, 'tlb');
    assert.equal(a.ws_url, `wss://127.0.0.1:${srv.port}/v1/ws`, 'login hands out a wss:// URL');
    const d = await request(srv, 'GET', '/v1/discovery');
    assert.equal(d.status, 200);
    assert.equal(d.body.ws_url, `wss://127.0.0.1:${srv.port}/v1/ws`, 'discovery: wss://');
    for (const n of d.body.nodes || []) assert.match(n.ws_url, /^wss:\/\//, `node ${n.node}: ${n.ws_url}`);

    const A = await connectWss(srv, a.token, 'A');
    const B = await connectWss(srv, b.token, 'B');
    try {
      const ack = await A.request({ op: 'send', to: b.user.id, cmid: 'tls-1', text: 'hello over TLS 이야기' });
      assert.equal(ack.op, 'ack', JSON.stringify(ack));
      const m = await B.waitFor((f) => f.op === 'msg', { what: 'B gets the message' });
      assert.equal(m.text, 'hello over TLS 이야기');

      // 100,000 code points (about 200 KB of UTF-8): many TLS records each way.
      const big = ('이야기 chat ✓ ').repeat(10000).slice(0, 100000);
      const ack2 = await B.request({ op: 'send', to: a.user.id, cmid: 'tls-big', text: big }, { timeoutMs: ms(20000) });
      assert.equal(ack2.op, 'ack', JSON.stringify(ack2).slice(0, 300));
      const m2 = await A.waitFor((f) => f.op === 'msg' && f.cmid === 'tls-big', { what: 'the big message', timeoutMs: ms(20000) });
      assert.ok(m2.text === big, `the big message arrives intact (${m2.text.length} characters)`);
      const h = await request(srv, 'GET', `/v1/channels/${ack2.channel}/messages`, { token: a.token });
      assert.equal(h.status, 200);
      const texts = h.body.messages.map((x) => x.text);
      assert.equal(texts.length, 2, 'history over HTTPS: both messages');
      assert.ok(texts.includes(big) && texts.includes('hello over TLS 이야기'), 'history over HTTPS: both intact');
    } finally {
      A.terminate();
      B.terminate();
    }
  }));

test('an upload (POST /v1/uploads, streamed) and its download over HTTPS, byte for byte', T, () =>
  withServer(tlsOpts(), async (srv) => {
    const a = await newUser(srv, 'tlu');
    const bytes = crypto.randomBytes(6 << 20);
    const up = await request(srv, 'POST', '/v1/uploads?name=big.bin', { token: a.token, body: bytes });
    assert.equal(up.status, 201, up.text);
    const down = await request(srv, 'GET', `/v1/attachments/${up.body.attachment.id}`, { token: a.token });
    assert.equal(down.status, 200);
    assert.equal(down.buf.length, bytes.length);
    assert.ok(down.buf.equals(bytes), 'the download is the upload');
  }));

test('garbage, plain HTTP and a stalled handshake on the TLS port are closed, counted and logged at most once a second; the server keeps serving', T, () =>
  withServer({ ...tlsOpts(), extraArgs: ['--request-timeout', '2'] }, async (srv) => {
    const before0 = await metric(srv, 'iyagi_tls_failures_total');
    const plain = await rawSend(srv.port, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    assert.ok(plain.closed, 'a plain HTTP request is closed');
    assert.ok(!plain.data.toString('latin1').includes('HTTP/1.1 200'), 'and not answered in plaintext');
    const garbage = await rawSend(srv.port, crypto.randomBytes(3000));
    assert.ok(garbage.closed, 'garbage is closed');
    // A ClientHello's first bytes, then silence: the handshake has --request-timeout to finish.
    const t0 = Date.now();
    const stalled = await rawSend(srv.port, Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]), ms(10000));
    assert.ok(stalled.closed, 'a stalled handshake is closed');
    assert.ok(Date.now() - t0 >= 1500, `not before the timeout (${Date.now() - t0} ms)`);
    // A burst of 30 bad connections: every one closed, the log says so at most once a second.
    const t1 = Date.now();
    const burst = await Promise.all(Array.from({ length: 30 }, () => rawSend(srv.port, 'HELLO\r\n\r\n')));
    assert.ok(burst.every((r) => r.closed), 'every bad connection of the burst is closed');
    const secs = (Date.now() - t1) / 1000;
    const lines = srv.stderrTail(100000).split('\n').filter((l) => /TLS handshake with 127\.0\.0\.1 failed/.test(l));
    assert.ok(lines.length >= 1, 'the failure is logged');
    assert.ok(lines.length <= 3 + Math.ceil(secs), `logged at most once a second: ${lines.length} lines in ${secs} s`);
    assert.match(lines[0], /failed: (http request|wrong version number|[a-z ]+)/);
    assert.ok(await metric(srv, 'iyagi_tls_failures_total') >= before0 + 33, 'every failure counted');
    // still serving, over TLS
    assert.equal((await request(srv, 'GET', '/healthz')).status, 200);
    const u = await newUser(srv, 'tlg');
    const w = await connectWss(srv, u.token, 'after');
    assert.equal((await w.roundTrip()).op, 'hb');
    w.terminate();
  }));

test('TLS 1.2 and 1.3 with AEAD ciphers only: TLS 1.1, CBC suites and renegotiation are refused; ALPN picks http/1.1; tickets resume', T, () =>
  withServer(tlsOpts(), async (srv) => {
    const v13 = await tlsProbe(srv.port);
    assert.equal(v13.protocol, 'TLSv1.3', JSON.stringify(v13));
    const v12 = await tlsProbe(srv.port, { maxVersion: 'TLSv1.2' });
    assert.equal(v12.protocol, 'TLSv1.2', JSON.stringify(v12));
    assert.match(v12.cipher, /^ECDHE-ECDSA-(AES128-GCM|AES256-GCM|CHACHA20)/, 'TLS 1.2: ECDHE + AEAD');
    // The client allows TLS 1.1 (security level 0, so that it really offers it): the server refuses.
    const v11 = await tlsProbe(srv.port, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
    assert.ok(v11.error, `TLS 1.1 must fail, got ${JSON.stringify(v11)}`);
    assert.match(v11.error, /protocol version|unsupported protocol|alert/i, v11.error);
    const cbc = await tlsProbe(srv.port, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384' });
    assert.ok(cbc.error, `a CBC-only client must fail, got ${JSON.stringify(cbc)}`);
    const alpn = await tlsProbe(srv.port, { ALPNProtocols: ['h2', 'http/1.1'] });
    assert.equal(alpn.alpn, 'http/1.1', 'HTTP/1.1, never h2');
    // A client's renegotiation (TLS 1.2) is refused; the connection may not go on as if it were not.
    const reneg = await new Promise((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: srv.port, ca: pki.ca, servername: 'localhost', maxVersion: 'TLSv1.2' }, () => {
        const ok = s.renegotiate({}, (err) => { s.destroy(); resolve(err ? `refused: ${err.message}` : 'renegotiated'); });
        if (ok === false) { s.destroy(); resolve('refused by the client'); }
      });
      s.on('error', (e) => resolve(`refused: ${e.message}`));
    });
    assert.match(reneg, /^refused: .*no renegotiation/i, reneg);
    // Resumption with the ticket of a first connection (TLS 1.3 and 1.2).
    for (const maxVersion of ['TLSv1.3', 'TLSv1.2']) {
      const session = await new Promise((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port: srv.port, ca: pki.ca, servername: 'localhost', maxVersion });
        s.once('session', (sess) => { resolve(sess); s.end(); });
        s.on('secureConnect', () => s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'));
        s.on('data', () => {});
        s.on('error', reject);
      });
      const reused = await new Promise((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port: srv.port, ca: pki.ca, servername: 'localhost', maxVersion, session }, () => {
          resolve(s.isSessionReused());
          s.end();
        });
        s.on('error', reject);
      });
      assert.equal(reused, true, `${maxVersion}: the session is resumed with its ticket`);
    }
    assert.equal((await request(srv, 'GET', '/healthz')).status, 200, 'still serving');
  }));

test('SIGHUP reloads the certificate for new connections; an open WSS connection keeps working; a failed reload keeps the old one', T, async () => {
  // The server reads its files from paths that the test rewrites, as certbot would.
  const live = { cert: path.join(pki.dir, 'live.pem'), key: path.join(pki.dir, 'live.key') };
  const install = (c, keyOf = c) => {
    fs.copyFileSync(c.cert, `${live.cert}.tmp`);
    fs.renameSync(`${live.cert}.tmp`, live.cert);
    fs.copyFileSync(keyOf.key, `${live.key}.tmp`);
    fs.renameSync(`${live.key}.tmp`, live.key);
  };
  install(first);
  await withServer({ tls: { ...live, ca: pki.ca } }, async (srv) => {
    const a = await newUser(srv, 'tlh');
    const b = await newUser(srv, 'tli');
    const A = await connectWss(srv, a.token, 'A (old certificate)');
    try {
      assert.equal(A.ws._socket.getPeerCertificate().serialNumber, '03E9', 'A is on the first certificate (1001)');
      assert.equal((await tlsProbe(srv.port)).cert.subject.CN, 'iyagi test one');

      install(second);
      const hups = () => srv.stderrTail(100000).split('\n').filter((l) => /SIGHUP/.test(l)).length;
      const n0 = hups();
      srv.proc.kill('SIGHUP');
      await until(() => hups() > n0, 'the reload logged');
      assert.match(srv.stderrTail(2000), /SIGHUP: TLS certificate reloaded/);
      const now = await tlsProbe(srv.port);
      assert.equal(now.cert.serialNumber, '07D2', 'a new connection sees the second certificate (2002)');
      assert.equal(now.cert.subject.CN, 'iyagi test two');

      // The old connection still works, both ways.
      assert.equal(A.ws._socket.getPeerCertificate().serialNumber, '03E9');
      assert.equal((await A.roundTrip()).op, 'hb');
      const B = await connectWss(srv, b.token, 'B (new certificate)');
      try {
        assert.equal(B.ws._socket.getPeerCertificate().serialNumber, '07D2');
        const ack = await A.request({ op: 'send', to: b.user.id, cmid: 'hup-1', text: 'across a reload' });
        assert.equal(ack.op, 'ack', JSON.stringify(ack));
        assert.equal((await B.waitFor((f) => f.op === 'msg')).text, 'across a reload');
        await B.request({ op: 'send', to: a.user.id, cmid: 'hup-2', text: 'and back' });
        assert.equal((await A.waitFor((f) => f.op === 'msg')).text, 'and back');
      } finally {
        B.terminate();
      }

      // A key that is not the certificate's, then a missing certificate: logged, the second stays.
      install(first, second);
      for (const broken of ['mismatch', 'missing']) {
        if (broken === 'missing') fs.rmSync(live.cert);
        const n1 = hups();
        srv.proc.kill('SIGHUP');
        await until(() => hups() > n1, `the ${broken} reload logged`);
        assert.match(srv.stderrTail(2000), /SIGHUP: TLS certificate not reloaded, the old one stays: .*(does not match|cannot read)/);
        assert.equal((await tlsProbe(srv.port)).cert.serialNumber, '07D2', `${broken}: still the second certificate`);
      }
      assert.equal((await A.roundTrip()).op, 'hb', 'A survived it all');
      // A clean stop with a connection on the first context still open: nothing leaks (ASan build).
      const stopped = await srv.stop();
      assert.equal(stopped.code, 0, `clean exit: ${JSON.stringify(stopped)}`);
    } finally {
      A.terminate();
    }
  });
});

test('IYAGI_TLS_CERT/IYAGI_TLS_KEY from the environment; --admin-listen stays plain HTTP beside the TLS port', T, async () => {
  const adminPort = await freePort();
  await withServer({
    tls: { ca: pki.ca },
    env: { IYAGI_TLS_CERT: first.cert, IYAGI_TLS_KEY: first.key },
    extraArgs: ['--admin-listen', `127.0.0.1:${adminPort}`],
  }, async (srv) => {
    assert.equal((await tlsProbe(srv.port)).cert.serialNumber, '03E9', 'the environment\'s certificate');
    assert.match(srv.stderrTail(), new RegExp(`https://127\\.0\\.0\\.1:${srv.port}/.*http://127\\.0\\.0\\.1:${adminPort}/ \\(admin\\)`));
    const m = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
    assert.equal(m.status, 200, 'plain HTTP on the admin address');
    assert.match(await m.text(), /^iyagi_tls_failures_total \d+$/m);
    const overTls = await tlsProbe(adminPort);
    assert.ok(overTls.error, 'no TLS on the admin address');
  });
});

test('a certificate or key that cannot be used at start: exit non-zero with the reason', T, async () => {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'iyagi-e2e-'));
  const notPem = path.join(pki.dir, 'not.pem');
  fs.writeFileSync(notPem, 'this is no certificate\n');
  try {
    const port = await freePort();
    const run = (...args) => spawnSync(IYAGID, ['--listen', `127.0.0.1:${port}`, '--data', data, ...args],
      { encoding: 'utf8', timeout: ms(20000) });
    const cases = [
      [['--tls-cert', '/nonexistent/cert.pem', '--tls-key', first.key], 1, /TLS: cannot read the certificate \/nonexistent\/cert\.pem: No such file/],
      [['--tls-cert', first.cert, '--tls-key', '/nonexistent/key.pem'], 1, /TLS: cannot read the private key \/nonexistent\/key\.pem/],
      [['--tls-cert', first.cert, '--tls-key', second.key], 1, /TLS: the private key .*second\.key does not match the certificate .*first\.pem/],
      [['--tls-cert', notPem, '--tls-key', first.key], 1, /TLS: no PEM certificate in .*not\.pem/],
      [['--tls-cert', first.cert, '--tls-key', notPem], 1, /TLS: no usable PEM private key in .*not\.pem/],
      [['--tls-cert', first.cert], 2, /--tls-cert and --tls-key go together/],
    ];
    for (const [args, code, re] of cases) {
      const r = run(...args);
      assert.equal(r.status, code, `${args.join(' ')}: exit ${r.status}, stderr ${r.stderr}`);
      assert.match(r.stderr, re, args.join(' '));
      assert.doesNotMatch(r.stderr, /listening/, 'never listened');
    }
  } finally {
    fs.rmSync(data, { recursive: true, force: true });
  }
});
