// httpdetails.test.mjs — the HTTP details clients and browsers expect, at the socket:
// 405 with Allow for a known path's other methods, HEAD wherever GET is (the same headers,
// Content-Length included, no body), 401 naming a missing or malformed Authorization header,
// the reference documents served from the binary, and CORS: off by default, and with
// --cors-origin answering preflights and marking answers for allowed origins only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { startServer, withServer, api, newUser, assertHttpError, show, ms, REPO, IYAGID } from './lib/harness.mjs';
import { record } from './lib/harness.mjs';

const T = { timeout: ms(60000) };
let srv;
let u;
before(async () => {
  srv = await startServer();
  u = await newUser(srv, 'hd');
});
after(async () => { await srv?.cleanup(); });

/** one request with node:http (any header, Origin included; no keep-alive): {status, headers, body} */
function req(server, method, p, headers = {}, body) {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port: server.port, path: p, method, headers: { connection: 'close', ...headers }, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        const ctype = res.headers['content-type'] || '';
        let parsed = null;
        try { parsed = /json/.test(ctype) && buf.length ? JSON.parse(buf.toString('utf8')) : null; } catch { parsed = undefined; }
        record({ kind: 'http', method, path: p, status: res.statusCode, ctype, body: /json/.test(ctype) ? parsed : null });
        resolve({ status: res.statusCode, headers: res.headers, body: buf, json: parsed });
      });
    });
    r.on('error', reject);
    r.setTimeout(ms(10000), () => r.destroy(new Error(`${method} ${p}: timeout`)));
    r.end(body);
  });
}
const auth = (t) => ({ authorization: `Bearer ${t}` });
const corsHeaders = (h) => Object.keys(h).filter((k) => k.startsWith('access-control-'));

test('a known path with a method it does not take: 405, Allow lists its methods, the contract\'s error body', T, async () => {
  const cases = [
    ['POST', '/v1/me', 'GET, HEAD, PATCH, DELETE'],
    ['PUT', '/v1/channels', 'GET, HEAD'],
    ['GET', '/v1/groups', 'POST'],
    ['PATCH', '/v1/channels/5/messages', 'GET, HEAD, POST'],
    ['POST', '/v1/messages/5/reactions/ok', 'PUT, DELETE'],
    ['DELETE', '/healthz', 'GET, HEAD'],
    ['POST', '/v1/openapi.json', 'GET, HEAD'],
    ['PUT', '/index.html', 'GET, HEAD'],
    ['OPTIONS', '/v1/sessions', 'POST, GET, HEAD'],
  ];
  for (const [m, p, allow] of cases) {
    const r = await req(srv, m, p, auth(u.token));
    assert.equal(r.status, 405, `${m} ${p}: ${r.status} ${r.body}`);
    assert.equal(r.headers.allow, allow, `${m} ${p}: Allow`);
    assert.equal(r.json?.error?.code, 'bad_request', `${m} ${p}: ${r.body}`);
    assert.match(r.json.error.message, new RegExp(`^${m} is not allowed here`));
  }
  // unknown paths stay 404, whatever the method; a malformed id matches no route
  for (const [m, p] of [['POST', '/v1/nothing'], ['GET', '/v1/users/abc'], ['DELETE', '/v1/channels/1/members/x'], ['PUT', '/no-such-file.js']]) {
    assertHttpError(await api(srv, m, p, { token: u.token }), 404, 'not_found', `${m} ${p}`);
  }
});

test('HEAD wherever GET is: the same status and headers, Content-Length included, and no body', T, async () => {
  const att = await api(srv, 'POST', '/v1/uploads?name=a.txt', { token: u.token, raw: 'hello attachments', headers: { 'content-type': 'text/plain' } });
  assert.equal(att.status, 201, show(att));
  const paths = [['/healthz', {}], ['/', {}], ['/index.html', {}], ['/v1/openapi.json', {}], ['/v1/asyncapi.json', {}],
    ['/v1/me', auth(u.token)], ['/v1/channels', auth(u.token)], ['/v1/discovery', {}], ['/v1/me', {}],
    [`/v1/attachments/${att.body.attachment.id}`, auth(u.token)], ['/no-such-file.js', {}], ['/metrics', {}]];
  for (const [p, h] of paths) {
    const g = await req(srv, 'GET', p, h);
    const hd = await req(srv, 'HEAD', p, h);
    assert.equal(hd.status, g.status, `HEAD ${p}`);
    assert.equal(hd.body.length, 0, `HEAD ${p} has no body`);
    assert.ok(hd.headers['content-length'] !== undefined, `HEAD ${p} has a Content-Length`);
    if (p !== '/metrics') assert.equal(hd.headers['content-length'], String(g.body.length), `HEAD ${p}: GET's Content-Length`);
    for (const k of ['content-type', 'cache-control', 'content-security-policy', 'x-content-type-options', 'content-disposition']) {
      assert.equal(hd.headers[k], g.headers[k], `HEAD ${p}: ${k}`);
    }
  }
  // the connection goes on after a HEAD: a keep-alive client's next answer is whole
  const a = await api(srv, 'HEAD', '/v1/me', { token: u.token });
  const b = await api(srv, 'GET', '/v1/me', { token: u.token });
  assert.equal(a.status, 200);
  assert.equal(a.text, '');
  assert.equal(b.body.user.id, u.user.id, show(b));
});

test('401 says whether the Authorization header is missing, malformed, or carries a dead token', T, async () => {
  const missing = await req(srv, 'GET', '/v1/me');
  assert.equal(missing.status, 401);
  assert.equal(missing.json.error.code, 'unauthorized');
  assert.match(missing.json.error.message, /Authorization header is missing/);
  for (const v of ['Basic dXNlcjpwdw==', 'Bearer', 'Bearer ', u.token]) {
    const r = await req(srv, 'GET', '/v1/channels', { authorization: v });
    assert.equal(r.status, 401, `Authorization: ${v}`);
    assert.match(r.json.error.message, /Authorization header is malformed/, `Authorization: ${v}`);
  }
  const dead = await req(srv, 'GET', '/v1/me', auth('not-a-token'));
  assert.equal(dead.status, 401);
  assert.match(dead.json.error.message, /invalid or revoked token/);
  // before the body of an upload too
  const up = await req(srv, 'POST', '/v1/uploads?name=x', { 'content-length': '5' }, 'hello');
  assert.equal(up.status, 401);
  assert.match(up.json.error.message, /Authorization header is missing/);
  // the public endpoints need none
  assert.equal((await req(srv, 'GET', '/v1/discovery')).status, 200);
  assert.equal((await req(srv, 'GET', '/v1/push/vapid')).status, 200);
});

test('GET /v1/openapi.json and /v1/asyncapi.json: the documents of docs/, as JSON, cacheable', T, async () => {
  for (const name of ['openapi.json', 'asyncapi.json']) {
    const r = await req(srv, 'GET', `/v1/${name}`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'application/json');
    assert.match(r.headers['cache-control'], /^public, max-age=\d+$/);
    assert.ok(r.body.equals(fs.readFileSync(path.join(REPO, 'docs', name))), `${name} is the committed document`);
  }
});

test('CORS is off by default: no Access-Control-* headers, a preflight gets 405', T, async () => {
  const origin = { origin: 'https://app.example' };
  const pre = await req(srv, 'OPTIONS', '/v1/me', { ...origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' });
  assert.equal(pre.status, 405);
  assert.deepEqual(corsHeaders(pre.headers), []);
  const r = await req(srv, 'GET', '/v1/me', { ...origin, ...auth(u.token) });
  assert.equal(r.status, 200);
  assert.deepEqual(corsHeaders(r.headers), []);
  assert.equal(r.headers.vary, undefined);
  assert.equal((await req(srv, 'OPTIONS', '/v1/nothing', origin)).status, 404);
});

test('--cors-origin: preflights from an allowed origin get 204 with the Access-Control headers; answers to it carry Allow-Origin; other origins get none', T, async () => {
  await withServer({ extraArgs: ['--cors-origin', 'https://app.example', '--cors-origin', 'http://localhost:3000,https://other.example'] }, async (s) => {
    const v = await newUser(s, 'hdc');
    for (const o of ['https://app.example', 'http://localhost:3000', 'https://other.example']) {
      const pre = await req(s, 'OPTIONS', '/v1/channels/5/messages', { origin: o, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' });
      assert.equal(pre.status, 204, `preflight from ${o}`);
      assert.equal(pre.headers['access-control-allow-origin'], o);
      assert.equal(pre.headers['access-control-allow-methods'], 'GET, HEAD, POST');
      assert.equal(pre.headers['access-control-allow-headers'], 'Authorization, Content-Type');
      assert.match(pre.headers['access-control-max-age'], /^\d+$/);
      assert.equal(pre.headers.vary, 'Origin');
      assert.equal(pre.headers['access-control-allow-credentials'], undefined);
      assert.equal(pre.body.length, 0);
    }
    // an actual request from an allowed origin, errors included
    const ok = await req(s, 'GET', '/v1/me', { origin: 'https://app.example', ...auth(v.token) });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['access-control-allow-origin'], 'https://app.example');
    assert.equal(ok.headers.vary, 'Origin');
    assert.equal(ok.headers['access-control-expose-headers'], 'Retry-After, Content-Disposition');
    const err = await req(s, 'GET', '/v1/me', { origin: 'https://app.example' });
    assert.equal(err.status, 401);
    assert.equal(err.headers['access-control-allow-origin'], 'https://app.example');
    // another origin, a look-alike, no origin: nothing; its preflight is an ordinary 405
    for (const o of ['https://evil.example', 'https://app.example.evil.example', 'http://app.example', undefined]) {
      const h = o ? { origin: o } : {};
      const r = await req(s, 'GET', '/v1/me', { ...h, ...auth(v.token) });
      assert.equal(r.status, 200);
      assert.equal(r.headers['access-control-allow-origin'], undefined, `origin ${o}`);
      assert.equal(r.headers.vary, 'Origin', 'the answer depends on Origin: caches must know');
      const pre = await req(s, 'OPTIONS', '/v1/me', { ...h, 'access-control-request-method': 'GET' });
      assert.equal(pre.status, 405, `preflight from ${o}`);
      assert.deepEqual(corsHeaders(pre.headers), []);
    }
    // OPTIONS without Access-Control-Request-Method is no preflight; an unknown path stays 404
    assert.equal((await req(s, 'OPTIONS', '/v1/me', { origin: 'https://app.example' })).status, 405);
    assert.equal((await req(s, 'OPTIONS', '/v1/nothing', { origin: 'https://app.example', 'access-control-request-method': 'GET' })).status, 404);
  });
});

test('--cors-origin "*": any origin, never with credentials; malformed origins are refused at start', T, async () => {
  await withServer({ extraArgs: ['--cors-origin', '*'] }, async (s) => {
    const pre = await req(s, 'OPTIONS', '/v1/sessions', { origin: 'https://anything.example', 'access-control-request-method': 'POST' });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], '*');
    assert.equal(pre.headers['access-control-allow-credentials'], undefined);
    const r = await req(s, 'GET', '/healthz', { origin: 'https://anything.example' });
    assert.equal(r.headers['access-control-allow-origin'], '*');
  });
  // from the environment too (IYAGI_CORS_ORIGIN, a comma list like the flag's)
  await withServer({ env: { IYAGI_CORS_ORIGIN: 'https://e1.example,https://e2.example' } }, async (s) => {
    for (const o of ['https://e1.example', 'https://e2.example']) {
      const r = await req(s, 'GET', '/healthz', { origin: o });
      assert.equal(r.headers['access-control-allow-origin'], o);
    }
    assert.equal((await req(s, 'GET', '/healthz', { origin: 'https://e3.example' })).headers['access-control-allow-origin'], undefined);
  });
  for (const bad of ['app.example', 'https://app.example/', 'https://app.example/path', 'ftp://x', 'https://a b']) {
    const r = spawnSync(IYAGID, ['--cors-origin', bad, '--listen', '127.0.0.1:1', '--data', '/nonexistent'], { encoding: 'utf8', timeout: ms(10000) });
    assert.equal(r.status, 2, `--cors-origin ${bad}: exit ${r.status} ${r.stderr}`);
    assert.match(r.stderr, /--cors-origin/);
  }
});
