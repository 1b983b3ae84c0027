// diskfull.test.mjs — the embedded store on a small disk (a 192 MB tmpfs: needs root, as CI runs):
// below --min-free-mb writes are refused with `unavailable` (503 over HTTP, login included) and
// /healthz says why with 503; nothing crashes, with small or 30 KB messages; when space returns
// the server writes again by itself; every acknowledged message is there, also after a restart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Server, api, show, newUser, connectWs, ms, sleep, checkAcked, PASSWORD, STORE } from './lib/harness.mjs';

const T = { timeout: ms(180000) };
const ROOT = process.getuid && process.getuid() === 0;
const SKIP = (!ROOT && 'needs root to mount a small tmpfs (CI runs as root)')
  || (STORE === 'postgres' && 'the reserve is the embedded store\'s (PostgreSQL minds its own disk)');

async function withTmpfs(sizeMb, fn) {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'iyagi-e2e-disk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m,mode=0700`, 'tmpfs', dir]);
  try {
    return await fn(dir);
  } finally {
    try { execFileSync('umount', [dir]); } catch { execFileSync('umount', ['-l', dir]); }
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

const freeMb = (dir) => { const s = fs.statfsSync(dir); return (s.bavail * s.bsize) / (1 << 20); };

// what takes the disk, for a failure's message: the largest files of the data directory
// (walked by hand: Node 18's recursive readdir takes the admin socket for a directory)
function usage(dir) {
  const files = [];
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const f = path.join(d, e.name);
      if (e.isDirectory()) walk(f);
      else if (e.isFile()) files.push([path.relative(dir, f), fs.statSync(f).size]);
    }
  };
  walk(dir);
  return files.sort((x, y) => y[1] - x[1]).slice(0, 12)
    .map(([f, n]) => `${f} ${(n / (1 << 20)).toFixed(1)} MB`).join(', ');
}

async function runningCompactions(srv) {
  const m = await (await fetch(`${srv.url}/metrics`)).text();
  return Number(/^iyagi_rocksdb_running_compactions (\d+)/m.exec(m)[1]);
}

async function healthz(srv) {
  const r = await fetch(`${srv.url}/healthz`);
  return { status: r.status, text: await r.text() };
}

test('a disk below the reserve: unavailable (never a crash), /healthz 503 with the reason, recovery by itself when space returns, nothing acknowledged lost', { ...T, skip: SKIP }, () => withTmpfs(192, async (mnt) => {
  const srv = new Server({ extraArgs: ['--min-free-mb', '64'] });
  srv.dataDir = path.join(mnt, 'data');
  try {
    await srv.start();
    const [a, b] = [await newUser(srv, 'dfa'), await newUser(srv, 'dfb')];
    const acked = [];
    const send = async (text, cmid) => {
      const r = await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: { text, cmid } });
      if (r.status === 201) acked.push({ cmid, id: r.body.message.id, text });
      return r;
    };
    for (let i = 0; i < 20; i++) assert.equal((await send(`before ${i}`, `df-b${i}`)).status, 201);
    assert.equal((await healthz(srv)).status, 200);

    // fill the disk to 40 MB free: below the 64 MB reserve
    const filler = path.join(mnt, 'filler');
    fs.writeFileSync(filler, Buffer.alloc(Math.max(0, Math.floor((freeMb(mnt) - 40) * (1 << 20)))));
    await sleep(400);   // the store looks at the disk at most every 250 ms
    const small = await send('while full', 'df-full-1');
    assert.equal(small.status, 503, `a send while the disk is full: ${show(small)}`);
    assert.equal(small.body.error.code, 'unavailable');
    const big = await send('x'.repeat(30000), 'df-full-2');
    assert.equal(big.status, 503, show(big));
    const w = await connectWs(srv, { token: a.token, label: 'A' });
    const f = await w.request({ op: 'send', to: b.user.id, text: 'ws while full', cmid: 'df-full-3' });
    assert.equal(f.op, 'error', JSON.stringify(f));
    assert.equal(f.code, 'unavailable');
    const h = await healthz(srv);
    assert.equal(h.status, 503, 'healthz says the node cannot write');
    assert.match(h.text, /storage: \d+ MB free, below the reserve of 64 MB/);
    const login = await api(srv, 'POST', '/v1/sessions', { body: { username: a.username, password: PASSWORD } });
    assert.equal(login.status, 503, `login while full is 503, not 500: ${show(login)}`);
    const signup = await api(srv, 'POST', '/v1/users', { body: { username: `dfc${process.pid % 1000}`, password: PASSWORD } });
    assert.equal(signup.status, 503, `signup while full: ${show(signup)}`);
    const channel = (await api(srv, 'GET', '/v1/channels', { token: a.token })).body.channels[0].channel.id;
    const hist = await api(srv, 'GET', `/v1/channels/${channel}/messages`, { token: a.token });
    assert.equal(hist.status, 200, 'reads still work');
    assert.match(srv.stderrTail(), /below the reserve of 64 MB: refusing writes/);

    // space returns: writing again within a second, by itself
    fs.rmSync(filler);
    let back = null;
    for (let i = 0; i < 40 && !back; i++) {
      await sleep(100);
      const r = await send('space is back', 'df-full-1');   // the same cmid: stored once
      if (r.status === 201) back = r;
    }
    assert.ok(back, 'sends work again once space returns');
    assert.equal((await healthz(srv)).status, 200, 'healthy again');
    assert.match(srv.stderrTail(), /store: writing again/);
    const f2 = await w.request({ op: 'send', to: b.user.id, text: 'ws while full', cmid: 'df-full-3' });
    assert.equal(f2.op, 'ack', JSON.stringify(f2));
    acked.push({ cmid: 'df-full-3', id: f2.id, text: 'ws while full' });
    w.terminate();

    // 30 KB messages until the disk fills up again on its own: refused in time, never a crash
    let refusedAt = -1;
    // (until it fills: 8,000 x 30 KB is far more than the 192 MB disk holds)
    for (let i = 0; i < 8000 && refusedAt < 0; i++) {
      const r = await send(`${i} ${crypto.randomBytes(22500).toString('base64')}`, `df-big-${i}`);   // 30 KB that do not compress
      if (r.status === 503) refusedAt = i;
      else assert.equal(r.status, 201, show(r));
    }
    assert.ok(refusedAt > 0, `30 KB messages are refused once the reserve is reached (after ${refusedAt})`);
    assert.ok(srv.running, 'the server is still running');
    // A compaction briefly holds its inputs and its output (tens of MB here): the reserve is
    // there for that. Once compactions are done (and the indexer has stopped short of the
    // reserve too), what is left must be the reserve, less at most a round of writes.
    for (let i = 0; i < 100 && await runningCompactions(srv) > 0; i++) await sleep(100);
    const left = freeMb(mnt);
    if (!(left > 48)) assert.fail(`the reserve held: ${left.toFixed(1)} MB free; ${usage(srv.dataDir)}`);
    assert.ok(!/a write failed/.test(srv.stderrTail(20000)), 'RocksDB itself never hit the wall');

    // every acknowledged message is stored, once; also after a restart
    await checkAcked(srv, a.token, channel, acked, 'before the restart');
    await srv.restart();
    await checkAcked(srv, a.token, channel, acked, 'after the restart');
  } finally {
    await srv.cleanup();
  }
}));

test('no reserve (--min-free-mb 0): RocksDB itself hits ENOSPC: unavailable, no crash, /healthz 503, writing again once space returns, nothing acknowledged lost', { ...T, skip: SKIP }, () => withTmpfs(128, async (mnt) => {
  const srv = new Server({ extraArgs: ['--min-free-mb', '0'] });
  srv.dataDir = path.join(mnt, 'data');
  try {
    await srv.start();
    const [a, b] = [await newUser(srv, 'dna'), await newUser(srv, 'dnb')];
    const filler = path.join(mnt, 'filler');
    fs.writeFileSync(filler, Buffer.alloc(24 << 20));
    const acked = [];
    const send = async (text, cmid) => {
      const r = await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: { text, cmid } });
      if (r.status === 201) acked.push({ cmid, id: r.body.message.id, text });
      return r;
    };
    let refusedAt = -1;
    for (let i = 0; i < 8000 && refusedAt < 0; i++) {
      const r = await send(`${i} ${crypto.randomBytes(22500).toString('base64')}`, `dn-${i}`);
      if (r.status === 503) refusedAt = i;
      else assert.equal(r.status, 201, show(r));
    }
    assert.ok(refusedAt > 0, `refused once the disk is full (after ${refusedAt})`);
    await sleep(500);
    assert.ok(srv.running, 'the server is still running after ENOSPC');
    const h = await healthz(srv);
    assert.equal(h.status, 503, `healthz while writes fail: ${h.text}`);
    const again = await send('still full', 'dn-full');
    assert.equal(again.status, 503, show(again));
    const channel = (await api(srv, 'GET', '/v1/channels', { token: a.token })).body.channels[0].channel.id;
    assert.equal((await api(srv, 'GET', `/v1/channels/${channel}/messages`, { token: a.token })).status, 200, 'reads still work');

    fs.rmSync(filler);
    let back = null;
    for (let i = 0; i < 100 && !back; i++) {
      await sleep(100);
      const r = await send('space is back', 'dn-full');
      if (r.status === 201) back = r;
    }
    assert.ok(back, `sends work again once space returns: ${srv.stderrTail(2000)}`);
    assert.equal((await healthz(srv)).status, 200, 'healthy again');

    await checkAcked(srv, a.token, channel, acked, 'before the restart');
    await srv.restart();
    await checkAcked(srv, a.token, channel, acked, 'after the restart');
  } finally {
    await srv.cleanup();
  }
}));
