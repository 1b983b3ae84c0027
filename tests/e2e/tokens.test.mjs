// tokens.test.mjs — the token cache (src/chat/tokens.h, issue 15): a token the server has seen is
// checked without a storage round trip, and every way a session ends refuses its token AT ONCE,
// over HTTP and WebSocket, although the token was cached: logout, revoking one session, a password
// change (the other sessions), account deletion. Each case runs with the cache on (the default)
// and off (--token-cache 0), so both paths keep the contract. A crowd of sockets authenticating
// with a token while it is logged out: none of them stays open. Unknown tokens are refused and
// never fill the cache (the valid ones still work after thousands of guesses).
// The cross-node cases (a token revoked on node 1 refused at once on node 2) are in
// cluster_tokens.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  withServer, api, show, newUser, newDevice, openWs, connectWs, ms, PASSWORD,
  wsAuth,
} from './lib/harness.mjs';

const T = { timeout: ms(120000) };
const MODES = [['cache on', []], ['cache off', ['--token-cache', '0']]];


/** the token cache's series of /metrics, by name */
async function metrics(srv) {
  const r = await api(srv, 'GET', '/metrics');
  assert.equal(r.status, 200);
  const out = {};
  for (const [, name, v] of r.text.matchAll(/^(iyagi_token_cache_[a-z_]+) ([0-9.e+]+)$/gm)) out[name] = Number(v);
  return out;
}

/** uses token over HTTP and WebSocket (so that it is cached when the cache is on) */
async function warm(srv, token, what) {
  for (let i = 0; i < 2; i++) {
    const me = await api(srv, 'GET', '/v1/me', { token });
    assert.equal(me.status, 200, `${what}: ${show(me)}`);
    assert.equal(await wsAuth(srv, token, `${what} warm ${i}`), 'ready');
  }
}

/** the token is dead everywhere, right after the call that ended its session returned */
async function refused(srv, token, what) {
  const me = await api(srv, 'GET', '/v1/me', { token });
  assert.equal(me.status, 401, `${what}: HTTP ${show(me)}`);
  assert.equal(await wsAuth(srv, token, `${what} ws`), 'unauthorized', `${what}: WebSocket auth`);
}

for (const [mode, extraArgs] of MODES) {
  test(`${mode}: logout, session revocation, password change and account deletion refuse the token at once over HTTP and WebSocket`, T, async () => {
    await withServer({ extraArgs }, async (srv) => {
      // logout
      const a = await newUser(srv, 'tka');
      await warm(srv, a.token, 'logout');
      const open = await connectWs(srv, { token: a.token, label: 'a open' });
      const out = await api(srv, 'DELETE', '/v1/sessions/current', { token: a.token });
      assert.equal(out.status, 204, show(out));
      await refused(srv, a.token, 'after logout');
      assert.equal((await open.waitClose()).code, 1008, 'the open socket of the session closed');

      // one session revoked by id
      const b = await newUser(srv, 'tkb', { device: 'phone' });
      const laptop = await newDevice(srv, b, 'laptop');
      await warm(srv, laptop.token, 'revoke');
      const list = await api(srv, 'GET', '/v1/sessions', { token: b.token });
      const id = list.body.sessions.find((s) => !s.current).id;
      assert.equal((await api(srv, 'DELETE', `/v1/sessions/${id}`, { token: b.token })).status, 204);
      await refused(srv, laptop.token, 'after session revocation');
      await warm(srv, b.token, 'the revoking session lives');

      // password change: the other sessions end, this one goes on
      const c = await newUser(srv, 'tkc', { device: 'one' });
      const two = await newDevice(srv, c, 'two');
      await warm(srv, two.token, 'password');
      const pw = await api(srv, 'PUT', '/v1/me/password', { token: c.token, body: { old_password: PASSWORD, new_password: 'a new secret 1' } });
      assert.equal(pw.status, 204, show(pw));
      await refused(srv, two.token, 'after password change');
      await warm(srv, c.token, 'the changing session lives');

      // account deletion: every session
      const d = await newUser(srv, 'tkd');
      const d2 = await newDevice(srv, d, 'second');
      await warm(srv, d.token, 'delete');
      await warm(srv, d2.token, 'delete second');
      const del = await api(srv, 'DELETE', '/v1/me', { token: d.token, body: { password: PASSWORD } });
      assert.equal(del.status, 204, show(del));
      await refused(srv, d.token, 'after account deletion');
      await refused(srv, d2.token, 'after account deletion (other device)');
    });
  });
}

test('a crowd authenticating with a cached token while it is logged out: every socket is closed, none ready after the logout', T, async () => {
  await withServer({}, async (srv) => {
    const a = await newUser(srv, 'tkr');
    await warm(srv, a.token, 'race');
    const N = 40;
    const socks = await Promise.all(Array.from({ length: N }, (_, i) => openWs(srv, { label: `r${i}` })));
    for (const s of socks) s.send({ op: 'auth', token: a.token });
    const out = await api(srv, 'DELETE', '/v1/sessions/current', { token: a.token });
    assert.equal(out.status, 204, show(out));
    const loggedOut = Date.now();
    const results = await Promise.all(socks.map(async (s) => {
      const closed = await s.waitClose({ timeoutMs: ms(10000) });
      const ready = s.all.find((f) => f.op === 'ready');
      return { code: closed.code, ready };
    }));
    for (const [i, r] of results.entries()) assert.equal(r.code, 1008, `socket ${i} closed 1008 (revoked or refused)`);
    await refused(srv, a.token, 'after the crowd');
    assert.ok(Date.now() - loggedOut < ms(10000));
  });
});

test('unknown tokens are refused and cached nowhere (the cache holds the valid ones only, by its own gauge); valid tokens still work after thousands of guesses', T, async () => {
  await withServer({}, async (srv) => {
    const users = await Promise.all(Array.from({ length: 8 }, (_, i) => newUser(srv, `tkg${i}`)));
    for (const u of users) await warm(srv, u.token, u.username);
    const guess = () => crypto.randomBytes(32).toString('base64url');
    for (let round = 0; round < 20; round++) {
      const rs = await Promise.all(Array.from({ length: 100 }, () => api(srv, 'GET', '/v1/me', { token: guess() })));
      for (const r of rs) assert.equal(r.status, 401, show(r));
    }
    assert.equal(await wsAuth(srv, guess(), 'guess'), 'unauthorized');
    const m = await metrics(srv);
    assert.equal(m.iyagi_token_cache_entries, users.length, 'only the valid tokens are held');
    assert.ok(m.iyagi_token_cache_misses_total >= 2000, `every guess missed (${m.iyagi_token_cache_misses_total})`);
    assert.ok(m.iyagi_token_cache_hits_total >= users.length * 3, `the valid ones hit (${m.iyagi_token_cache_hits_total})`);
    for (const u of users) {
      const me = await api(srv, 'GET', '/v1/me', { token: u.token });
      assert.equal(me.status, 200, `${u.username} after the guesses: ${show(me)}`);
    }
  });
});

test('past the cache\'s capacity tokens still work (the evicted ones from the store), and eviction never resurrects a revoked one', T, async () => {
  await withServer({ extraArgs: ['--token-cache', '64'] }, async (srv) => {
    const users = await Promise.all(Array.from({ length: 8 }, (_, i) => newUser(srv, `tkc${i}`)));
    const many = await Promise.all(Array.from({ length: 100 }, (_, i) => newUser(srv, `tke${i}`)));
    for (const u of [...users, ...many]) {
      const me = await api(srv, 'GET', '/v1/me', { token: u.token });
      assert.equal(me.status, 200, `${u.username} past the capacity: ${show(me)}`);
    }
    // and eviction never resurrects a revoked one
    for (const u of [...users, ...many]) assert.equal(await wsAuth(srv, u.token, `${u.username} ws`), 'ready');
    const m = await metrics(srv);
    assert.ok(m.iyagi_token_cache_entries <= 64, `bounded: ${m.iyagi_token_cache_entries} entries`);
    const gone = many[0];
    assert.equal((await api(srv, 'DELETE', '/v1/sessions/current', { token: gone.token })).status, 204);
    await refused(srv, gone.token, 'revoked, with the cache full');
  });
});
