// smoke.mjs — the installed package's server, from outside (tests/pkg/deb.test.sh).
//
//   node smoke.mjs first URL STATE   /healthz 200; two users sign up; A sends B a message
//                                    over the WebSocket, B receives it live, the HTTP history
//                                    has it; an image upload gets a thumbnail (libvips);
//                                    writes what it made to the file STATE
//   node smoke.mjs again URL STATE   after a restart or an upgrade: A logs in again and the
//                                    message is still there (the data directory was kept)
//
// Uses tests/e2e's helpers (and its npm `ws`); exits nonzero with the reason on any failure.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { api, show, newUser, login, connectWs, fullHistory, REPO } from '../e2e/lib/harness.mjs';

const [phase, url, stateFile] = process.argv.slice(2);
if (!['first', 'again'].includes(phase) || !url || !stateFile) {
  console.error('usage: node smoke.mjs first|again URL STATEFILE');
  process.exit(2);
}
const wsUrl = url.replace(/^http/, 'ws') + '/v1/ws';
const TEXT = 'annyeong 안녕 from the package';

async function first() {
  const h = await api(url, 'GET', '/healthz');
  assert.equal(h.status, 200, `/healthz: ${show(h)}`);
  const a = await newUser(url, 'pkga');
  const b = await newUser(url, 'pkgb');
  const A = await connectWs(wsUrl, { token: a.token, label: 'A' });
  const B = await connectWs(wsUrl, { token: b.token, label: 'B' });
  try {
    const ack = await A.request({ op: 'send', to: b.user.id, text: TEXT, cmid: 'pkg-1' });
    assert.equal(ack.op, 'ack', JSON.stringify(ack));
    const m = await B.waitFor((f) => f.op === 'msg', { what: 'the message, live' });
    assert.equal(m.text, TEXT);
    assert.equal(m.from, a.user.id);
    const hist = await fullHistory(url, b.token, ack.channel);
    assert.deepEqual(hist.map((x) => x.text), [TEXT], 'the history over HTTP');

    // Thumbnails: libvips (Recommends: libvips42), dlopen'ed, and its run-time
    // code generation, under the sandbox the test script runs this server in.
    const png = fs.readFileSync(path.join(REPO, 'tests', 'unit', 'media', 'photo.png'));
    const up = await api(url, 'POST', '/v1/uploads?name=photo.png', { raw: png, token: a.token, headers: { 'content-type': 'image/png' } });
    assert.equal(up.status, 201, `upload: ${show(up)}`);
    assert.equal(up.body.attachment.thumb, true, `a thumbnail: ${show(up)}`);

    fs.writeFileSync(stateFile, JSON.stringify({ username: a.username, password: a.password, channel: ack.channel }));
  } finally {
    A.terminate();
    B.terminate();
  }
}

async function again() {
  const st = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
  const h = await api(url, 'GET', '/healthz');
  assert.equal(h.status, 200, `/healthz: ${show(h)}`);
  const s = await login(url, st.username, st.password);
  const hist = await fullHistory(url, s.token, st.channel);
  assert.deepEqual(hist.map((x) => x.text), [TEXT], 'the message survived');
}

try {
  await (phase === 'first' ? first() : again());
  console.log(`smoke ${phase}: ok`);
} catch (e) {
  console.error(`smoke ${phase}: ${e.stack || e}`);
  process.exit(1);
}
