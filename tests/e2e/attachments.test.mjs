// attachments.test.mjs — uploads and downloads (contract "Message features", Attachments):
// POST /v1/uploads streams the body to a file (never held in memory), the type is sniffed from
// the bytes, images get a thumbnail; GET /v1/attachments/{id} streams it back with
// Content-Disposition and nosniff, to those who may see it. Failure modes: a 26 MB upload is
// refused with too_large and nothing half-stored, a file claiming to be an image that is not, no
// token, another user's unsent upload, a connection that goes away mid-upload.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import crypto from 'node:crypto';
import {
  startServer, show, newUser, ms, sleep, assertHttpError, REPO, UNKNOWN_ID,
} from './lib/harness.mjs';

const T = { timeout: ms(120000) };
const MEDIA = path.join(REPO, 'tests', 'unit', 'media');
let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.cleanup(); });

/** one HTTP request with a Buffer body or a body streamed by `write(req)`; the whole answer */
function request(method, p, { token, body, headers = {}, write } = {}) {
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    if (token) h.authorization = `Bearer ${token}`;
    if (body) h['content-length'] = body.length;
    const req = http.request({ host: '127.0.0.1', port: srv.port, path: p, method, headers: h, agent: false });
    let settled = false;
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        settled = true;
        const buf = Buffer.concat(chunks);
        let json = null;
        try { json = JSON.parse(buf.toString('utf8')); } catch { /* bytes */ }
        resolve({ status: res.statusCode, headers: res.headers, buf, body: json, text: buf.toString('utf8').slice(0, 300) });
      });
    });
    req.on('error', (e) => setTimeout(() => { if (!settled) reject(e); }, 2000));
    if (write) write(req);
    else { if (body) req.write(body); req.end(); }
  });
}
const upload = (u, name, body, headers) => request('POST', `/v1/uploads?name=${encodeURIComponent(name)}`, { token: u.token, body, headers });
const blobDir = () => path.join(srv.dataDir, 'blobs');
const tmpFiles = () => fs.readdirSync(path.join(blobDir(), 'tmp'));
const blobFiles = () => fs.readdirSync(blobDir()).filter((f) => f !== 'tmp');
const rssKb = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${srv.proc.pid}/status`, 'utf8'))[1]);

async function until(cond, what, timeoutMs = ms(10000)) {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) assert.fail(`timed out: ${what}`);
    await sleep(25);
  }
}

test('an image: sniffed, stored, thumbnailed, and fetched back byte for byte with safe headers', T, async () => {
  const a = await newUser(srv, 'aa');
  const png = fs.readFileSync(path.join(MEDIA, 'photo.png'));
  const r = await upload(a, '../../etc/사진 "1".png', png, { 'content-type': 'text/html' });
  assert.equal(r.status, 201, r.text);
  const at = r.body.attachment;
  assert.match(at.id, /^[0-9]+$/);
  assert.equal(at.type, 'image/png', 'the bytes decide, not the Content-Type');
  assert.equal(at.size, png.length);
  assert.equal(at.name, '사진 1.png', 'no directories, no quotes');
  assert.equal(at.thumb, true, 'libvips made a thumbnail (Debian libvips42)');

  const g = await request('GET', `/v1/attachments/${at.id}`, { token: a.token });
  assert.equal(g.status, 200);
  assert.ok(g.buf.equals(png), 'the same bytes');
  assert.equal(g.headers['content-type'], 'image/png');
  assert.equal(g.headers['content-length'], String(png.length));
  assert.equal(g.headers['x-content-type-options'], 'nosniff');
  assert.equal(g.headers['content-disposition'], "inline; filename=\"__ 1.png\"; filename*=UTF-8''%EC%82%AC%EC%A7%84%201.png");
  assert.match(g.headers['content-security-policy'], /sandbox/);

  const th = await request('GET', `/v1/attachments/${at.id}/thumb`, { token: a.token });
  assert.equal(th.status, 200);
  assert.equal(th.headers['content-type'], 'image/jpeg');
  assert.deepEqual([...th.buf.subarray(0, 3)], [0xff, 0xd8, 0xff], 'a JPEG');
  assert.ok(th.buf.length < png.length * 4);
});

test('a file that claims to be an image is not one; text, unknown bytes; no thumbnail', T, async () => {
  const a = await newUser(srv, 'ab');
  const fake = Buffer.from('<!doctype html><script>alert(1)</script>');
  let r = await upload(a, 'cat.png', fake, { 'content-type': 'image/png' });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.body.attachment.type, 'text/plain', 'HTML is never served as HTML');
  assert.equal(r.body.attachment.thumb, undefined);
  const g = await request('GET', `/v1/attachments/${r.body.attachment.id}`, { token: a.token });
  assert.equal(g.headers['content-type'], 'text/plain; charset=utf-8');
  assert.match(g.headers['content-disposition'], /^attachment; filename="cat\.png"/, 'downloaded, not shown');
  assertHttpError(await request('GET', `/v1/attachments/${r.body.attachment.id}/thumb`, { token: a.token }), 404, 'not_found', 'no thumbnail');
  const bin = crypto.randomBytes(5000);
  r = await upload(a, '', bin);
  assert.equal(r.status, 201, r.text);
  assert.equal(r.body.attachment.type, 'application/octet-stream');
  assert.equal(r.body.attachment.name, 'file', 'an empty name');
  const b = await request('GET', `/v1/attachments/${r.body.attachment.id}`, { token: a.token });
  assert.ok(b.buf.equals(bin));
});

test('over --max-upload (25 MB): 413 too_large at once, or as the chunks come; nothing half-stored', T, async () => {
  const a = await newUser(srv, 'ac');
  const before = blobFiles().length;
  const big = Buffer.alloc(26 << 20, 7);
  const r = await upload(a, 'big.bin', big);
  assertHttpError(r, 413, 'too_large', '26 MB with a Content-Length');
  // chunked: refused when the 25 MB are passed
  const c = await request('POST', '/v1/uploads?name=big.bin', {
    token: a.token,
    headers: { 'transfer-encoding': 'chunked' },
    write: (req) => {
      let sent = 0;
      const piece = Buffer.alloc(1 << 20, 1);
      const more = () => {
        while (sent < 30) {
          sent++;
          if (!req.write(piece)) { req.once('drain', more); return; }
        }
        req.end();
      };
      req.on('error', () => {});
      more();
    },
  });
  assertHttpError(c, 413, 'too_large', '26+ MB chunked');
  await until(() => tmpFiles().length === 0, 'the partial file removed');
  assert.equal(blobFiles().length, before, 'no blob kept');
  // exactly 25 MB is fine, and the server never holds it in memory
  const rss0 = rssKb();
  const ok = Buffer.alloc(25 << 20, 3);
  const r2 = await upload(a, 'ok.bin', ok);
  assert.equal(r2.status, 201, r2.text);
  assert.equal(r2.body.attachment.size, 25 << 20);
  const grew = rssKb() - rss0;
  assert.ok(grew < 16 * 1024, `server RSS grew ${grew} KB for a 25 MB upload`);
  const g = await request('GET', `/v1/attachments/${r2.body.attachment.id}`, { token: a.token });
  assert.equal(g.buf.length, 25 << 20);
  assert.ok(g.buf.equals(ok));
});

test('who may fetch: no token, a bad token, someone else before it is sent, unknown ids; bad uploads', T, async () => {
  const [a, b] = [await newUser(srv, 'ad'), await newUser(srv, 'ae')];
  const r = await upload(a, 'a.txt', Buffer.from('mine'));
  assert.equal(r.status, 201, r.text);
  const id = r.body.attachment.id;
  assertHttpError(await request('POST', '/v1/uploads?name=x', { body: Buffer.from('x') }), 401, 'unauthorized', 'upload without a token');
  assertHttpError(await request('POST', '/v1/uploads?name=x', { token: 'nope', body: Buffer.from('x') }), 401, 'unauthorized', 'upload with a bad token');
  assertHttpError(await request('POST', '/v1/uploads?name=x', { token: a.token }), 400, 'bad_request', 'an empty upload');
  assertHttpError(await request('POST', '/v1/uploads?name=%zz', { token: a.token, body: Buffer.from('x') }), 400, 'bad_request', 'a malformed name');
  assertHttpError(await request('GET', `/v1/attachments/${id}`), 401, 'unauthorized', 'fetch without a token');
  assertHttpError(await request('GET', `/v1/attachments/${id}`, { token: b.token }), 403, 'forbidden', 'another user, before it was sent');
  assertHttpError(await request('GET', `/v1/attachments/${UNKNOWN_ID}`, { token: a.token }), 404, 'not_found', 'no such attachment');
  assertHttpError(await request('GET', '/v1/attachments/abc', { token: a.token }), 404, 'not_found', 'not an id');
  assert.equal(tmpFiles().length, 0);
});

test('a connection that goes away mid-upload leaves nothing; a slow one still lands', T, async () => {
  const a = await newUser(srv, 'af');
  const before = blobFiles().length;
  await new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port: srv.port, path: '/v1/uploads?name=cut.bin', method: 'POST',
      headers: { authorization: `Bearer ${a.token}`, 'content-length': 10 << 20 }, agent: false });
    req.on('error', () => resolve());
    req.write(Buffer.alloc(3 << 20, 5), () => setTimeout(() => { req.destroy(); resolve(); }, 200));
  });
  await until(() => tmpFiles().length === 0, 'the partial file removed after the disconnect');
  assert.equal(blobFiles().length, before);
  const slow = await request('POST', '/v1/uploads?name=slow.txt', {
    token: a.token,
    headers: { 'content-length': 30 },
    write: (req) => {
      let i = 0;
      const tick = () => { req.write('x'.repeat(10)); if (++i < 3) setTimeout(tick, 150); else req.end(); };
      tick();
    },
  });
  assert.equal(slow.status, 201, slow.text);
  assert.equal(slow.body.attachment.size, 30);
  const g = await request('GET', `/v1/attachments/${slow.body.attachment.id}`, { token: a.token });
  assert.equal(g.buf.toString(), 'x'.repeat(30));
  assert.equal(g.headers['content-type'], 'text/plain; charset=utf-8');
  assert.ok(show);
});

test('sent with a message: members see and fetch it, a stranger or a removed member may not; once only; a delete takes it away', T, async () => {
  const { connectWs } = await import('./lib/harness.mjs');
  const [a, b, c, x] = [await newUser(srv, 'ag'), await newUser(srv, 'ah'), await newUser(srv, 'ai'), await newUser(srv, 'aj')];
  const png = fs.readFileSync(path.join(MEDIA, 'photo.png'));
  const up1 = (await upload(a, 'photo.png', png)).body.attachment;
  const up2 = (await upload(a, 'notes.txt', Buffer.from('meeting notes'))).body.attachment;
  const g = await request('POST', '/v1/groups', { token: a.token, body: Buffer.from(JSON.stringify({ name: 'trip', members: [b.user.id, c.user.id] })), headers: { 'content-type': 'application/json' } });
  assert.equal(g.status, 201, g.text);
  const ch = g.body.channel.id;
  const wb = await connectWs(srv, { token: b.token, label: 'B' });
  try {
    // HTTP: a caption and two files; the answer and B's socket show them
    const json = (o) => ({ body: Buffer.from(JSON.stringify(o)), headers: { 'content-type': 'application/json' } });
    const r = await request('POST', `/v1/channels/${ch}/messages`, { token: a.token, ...json({ text: 'from the trip', attachments: [up1.id, up2.id] }) });
    assert.equal(r.status, 201, r.text);
    const m = r.body.message;
    assert.deepEqual(m.attachments.map((t) => [t.id, t.name, t.type, t.size]),
      [[up1.id, 'photo.png', 'image/png', png.length], [up2.id, 'notes.txt', 'text/plain', 13]]);
    assert.equal(m.attachments[0].thumb, true);
    const f = await wb.waitFor((fr) => fr.op === 'msg' && fr.id === m.id, { what: 'the msg frame' });
    assert.equal(f.attachments.length, 2);
    // members fetch it; a stranger may not
    for (const u of [b, c]) {
      const d = await request('GET', `/v1/attachments/${up1.id}`, { token: u.token });
      assert.equal(d.status, 200);
      assert.ok(d.buf.equals(png));
    }
    assertHttpError(await request('GET', `/v1/attachments/${up1.id}`, { token: x.token }), 403, 'forbidden', 'a stranger');
    // once only; another's upload; too many; bad ids; nothing stored for any of them
    const up3 = (await upload(x, 'x.txt', Buffer.from('x'))).body.attachment;
    for (const [body, what] of [
      [{ text: 'again', attachments: [up1.id] }, 'sent already'],
      [{ text: 'theirs', attachments: [up3.id] }, 'someone else\'s upload'],
      [{ text: 'many', attachments: Array(11).fill(up1.id) }, 'eleven'],
      [{ text: 'bad', attachments: ['nope'] }, 'not an id'],
      [{ text: 'bad', attachments: [] }, 'an empty list'],
      [{ attachments: [UNKNOWN_ID] }, 'no such upload'],
    ]) assertHttpError(await request('POST', `/v1/channels/${ch}/messages`, { token: a.token, ...json(body) }), 400, 'bad_request', what);
    const h = await request('GET', `/v1/channels/${ch}/messages?limit=50`, { token: b.token });
    assert.equal(h.body.messages.length, 1, 'nothing else stored');
    // WebSocket: a file without a caption
    const up4 = (await upload(b, 'b.bin', Buffer.from([1, 2, 3]))).body.attachment;
    const ack = await wb.request({ op: 'send', channel: ch, attachments: [up4.id], cmid: 'w1' });
    assert.equal(ack.op, 'ack', JSON.stringify(ack));
    let hist = (await request('GET', `/v1/channels/${ch}/messages?limit=50`, { token: c.token })).body.messages;
    const wm = hist.find((mm) => mm.id === ack.id);
    assert.equal(wm.text, '');
    assert.equal(wm.attachments[0].name, 'b.bin');
    const e = await wb.request({ op: 'send', channel: ch, attachments: [up4.id], cmid: 'w2' });
    assert.equal(e.op, 'error');
    assert.equal(e.code, 'bad_request');
    // removed from the group: no more fetching
    const rm = await request('DELETE', `/v1/channels/${ch}/members/${c.user.id}`, { token: a.token });
    assert.ok(rm.status === 204 || rm.status === 200, rm.text);
    assertHttpError(await request('GET', `/v1/attachments/${up1.id}`, { token: c.token }), 403, 'forbidden', 'a removed member');
    // deleted: the message shows no attachments any more
    const del = await request('DELETE', `/v1/messages/${m.id}`, { token: a.token });
    assert.equal(del.status, 204, del.text);
    hist = (await request('GET', `/v1/channels/${ch}/messages?limit=50`, { token: b.token })).body.messages;
    const dm = hist.find((mm) => mm.id === m.id);
    assert.equal(dm.deleted, true);
    assert.equal(dm.attachments, undefined);
    assertHttpError(await request('GET', `/v1/attachments/${up1.id}`, { token: b.token }), 404, 'not_found', 'a deleted message\'s file');
    assertHttpError(await request('GET', `/v1/attachments/${up2.id}/thumb`, { token: b.token }), 404, 'not_found', 'and its thumbnail');
  } finally {
    await wb.close();
  }
});
