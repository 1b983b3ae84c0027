// storemem.test.mjs — the embedded store's memory is bounded by --cache-mb (issue 15): the
// block cache (which holds the index and filter blocks too) is the size asked for, memtables stay
// under half of it, bad values are refused before starting, and a store written under one cache
// size opens under another with everything in it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { IYAGID, requireBinary, withServer, api, newUser, show, ms } from './lib/harness.mjs';

const T = { timeout: ms(60000) };
const pg = process.env.IYAGI_E2E_STORE === 'postgres';

function gauge(text, name) {
  const m = text.match(new RegExp(`^${name} (\\d+)$`, 'm'));
  return m ? Number(m[1]) : null;
}

test('--cache-mb out of range is refused before starting, from the flag and the environment', T, () => {
  requireBinary();
  for (const v of ['7', '0', 'lots', '2000000']) {
    let r = spawnSync(IYAGID, ['check-config', '--cache-mb', v], { encoding: 'utf8', timeout: ms(10000) });
    assert.equal(r.status, 2, `--cache-mb ${v}: ${r.stderr}`);
    assert.match(r.stderr, /cache-mb must be an integer from 8 to/);
    r = spawnSync(IYAGID, ['check-config'], { encoding: 'utf8', timeout: ms(10000),
      env: { PATH: process.env.PATH, IYAGI_CACHE_MB: v } });
    assert.equal(r.status, 2, `IYAGI_CACHE_MB=${v}: ${r.stderr}`);
    assert.match(r.stderr, /IYAGI_CACHE_MB must be an integer from 8 to/);
  }
  const r = spawnSync(IYAGID, ['--help'], { encoding: 'utf8', timeout: ms(10000) });
  assert.match(r.stdout + r.stderr, /--cache-mb N/);
});

test('the block cache is --cache-mb, memtables stay under half of it; a store reopens under another size',
  { ...T, skip: pg ? 'an embedded-store option' : false }, async () => {
    requireBinary();
    await withServer({ extraArgs: ['--cache-mb', '16'] }, async (srv) => {
      const a = await newUser(srv, 'cma');
      const b = await newUser(srv, 'cmb');
      let channel;
      for (let i = 0; i < 20; i++) {
        const r = await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: { text: `m${i}`, cmid: `c${i}` } });
        assert.equal(r.status, 201, show(r));
        channel = r.body.message.channel;
      }
      let m = await api(srv, 'GET', '/metrics');
      assert.equal(m.status, 200);
      assert.equal(gauge(m.text, 'iyagi_rocksdb_block_cache_capacity_bytes'), 16 << 20);
      assert.ok(gauge(m.text, 'iyagi_rocksdb_block_cache_bytes') <= 16 << 20);
      assert.ok(gauge(m.text, 'iyagi_rocksdb_memtables_bytes') <= 8 << 20);

      srv.opts.extraArgs = ['--cache-mb', '8'];
      await srv.restart();
      m = await api(srv, 'GET', '/metrics');
      assert.equal(gauge(m.text, 'iyagi_rocksdb_block_cache_capacity_bytes'), 8 << 20);
      const h = await api(srv, 'GET', `/v1/channels/${channel}/messages?after_seq=0&limit=50`, { token: a.token });
      assert.equal(h.status, 200, show(h));
      assert.deepEqual(h.body.messages.map((x) => x.text), Array.from({ length: 20 }, (_, i) => `m${i}`));
      // an idempotent resend still finds its message after the reopen
      const again = await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: { text: 'm3', cmid: 'c3' } });
      assert.ok(again.status === 200 || again.status === 201, show(again));
      assert.equal(again.body.message.seq, 4);
    });
  });
