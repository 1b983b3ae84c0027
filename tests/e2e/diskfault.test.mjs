// diskfault.test.mjs — the embedded store when its disk fails with EIO (not a full disk): a
// fault-injecting file layer (tests/fault/faultfs.c, built as build/faultfs.so and loaded with
// LD_PRELOAD) makes every write and sync of a regular file fail while a flag file exists. The
// server must not crash, must answer `unavailable` (503 over HTTP) and /healthz 503 while it
// cannot write, must write again by itself once the disk works, and must keep every acknowledged
// message, also across a restart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Server, api, show, newUser, connectWs, ms, sleep, checkAcked, STORE, REPO } from './lib/harness.mjs';

const T = { timeout: ms(120000) };
const SHIM = path.join(REPO, 'build', 'faultfs.so');
const SKIP = STORE === 'postgres' && 'the fault layer is under the embedded store (PostgreSQL\'s own disk is its own)';

async function healthz(srv) {
  const r = await fetch(`${srv.url}/healthz`);
  return { status: r.status, text: await r.text() };
}

test('EIO from the disk: unavailable, no crash, /healthz 503, writing again by itself when the disk works, nothing acknowledged lost', { ...T, skip: SKIP }, async () => {
  assert.ok(fs.existsSync(SHIM), `${SHIM} is built by make (the fault layer)`);
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'iyagi-e2e-eio-'));
  const flag = path.join(dir, 'fail');
  // An ASan build wants its runtime first in the library list; the shim only interposes libc.
  const srv = new Server({
    env: { LD_PRELOAD: SHIM, IYAGI_FAULT_FLAG: flag, ASAN_OPTIONS: `${process.env.ASAN_OPTIONS || ''}:verify_asan_link_order=0` },
  });
  try {
    await srv.start();
    const [a, b] = [await newUser(srv, 'eia'), await newUser(srv, 'eib')];
    const acked = [];
    const send = async (text, cmid) => {
      const r = await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: { text, cmid } });
      if (r.status === 201) acked.push({ cmid, id: r.body.message.id, text });
      return r;
    };
    for (let i = 0; i < 50; i++) assert.equal((await send(`before ${i}`, `eio-b${i}`)).status, 201);
    const w = await connectWs(srv, { token: a.token, label: 'A' });
    const channel = (await api(srv, 'GET', '/v1/channels', { token: a.token })).body.channels[0].channel.id;

    for (let round = 0; round < 2; round++) {
      fs.writeFileSync(flag, '');
      const r = await send(`while failing ${round}`, `eio-f${round}`);
      assert.equal(r.status, 503, `a send while the disk fails: ${show(r)}`);
      assert.equal(r.body.error.code, 'unavailable');
      const f = await w.request({ op: 'send', to: b.user.id, text: 'ws while failing', cmid: `eio-ws${round}` });
      assert.equal(f.op, 'error', JSON.stringify(f));
      assert.equal(f.code, 'unavailable');
      const h = await healthz(srv);
      assert.equal(h.status, 503, 'healthz says the node cannot write');
      assert.match(h.text, /storage/);
      // Reads go on the whole time, also while the store reopens the database (a second after the
      // error, then every second while the disk still fails: read-only meanwhile).
      let reading = true, reads = 0;
      const reader = (async () => {
        while (reading) {
          const hist = await api(srv, 'GET', `/v1/channels/${channel}/messages`, { token: a.token });
          assert.equal(hist.status, 200, `reads still work: ${show(hist)}`);
          const sync = await w.request({ op: 'sync', after: 0, limit: 10 });
          assert.equal(sync.op, 'batch', JSON.stringify(sync).slice(0, 300));
          reads++;
        }
      })();
      // the first reopen comes 1 s after the error, at the next write or the storage thread's
      // 2 s tick: wait for it (slower under the sanitizers), reading all along
      for (let i = 0; i < 100 && !/read-only open/.test(srv.stderrTail()); i++) await sleep(ms(100));
      await sleep(300);
      reading = false;
      await reader;
      assert.ok(reads > 5, `reads went on (${reads})`);
      assert.ok(srv.running, 'no crash on EIO');
      assert.match(srv.stderrTail(), /read-only open/, 'a reopen was tried while the disk failed');
      assert.equal((await send(`while failing ${round}`, `eio-f${round}`)).status, 503, 'still refused while it fails');
      assert.equal((await healthz(srv)).status, 503);

      fs.rmSync(flag);
      let back = null;
      for (let i = 0; i < 100 && !back; i++) {
        await sleep(100);
        const x = await send(`while failing ${round}`, `eio-f${round}`);   // the same cmid: stored once
        if (x.status === 201) back = x;
      }
      assert.ok(back, `sends work again once the disk does: ${srv.stderrTail(1500)}`);
      assert.equal((await healthz(srv)).status, 200, 'healthy again');
      const f2 = await w.request({ op: 'send', to: b.user.id, text: 'ws while failing', cmid: `eio-ws${round}` });
      assert.equal(f2.op, 'ack', JSON.stringify(f2));
      acked.push({ cmid: `eio-ws${round}`, id: f2.id });
      for (let i = 0; i < 20; i++) assert.equal((await send(`after ${round} ${i}`, `eio-a${round}-${i}`)).status, 201);
    }
    w.terminate();

    await checkAcked(srv, a.token, channel, acked, 'before the restart');
    await srv.restart();
    await checkAcked(srv, a.token, channel, acked, 'after the restart');
  } finally {
    await srv.cleanup();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});
