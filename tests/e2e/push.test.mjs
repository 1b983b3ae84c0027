// push.test.mjs — push notifications: subscriptions (validation, SSRF refusal, delete), webhook
// delivery (exact body, HMAC signature, stable notification id, retries with backoff), who gets a
// push (offline members only, never the sender), Web Push (RFC 8291 decryption and RFC 8292 VAPID,
// checked here with node:crypto the way a browser and a push service would), 404/410 removing the
// subscription, durability across SIGKILL, collapsing a burst, and the push metrics.
//
// Server decisions tested here beyond shared/PROTOCOL.md:
//   POST /v1/push/subscriptions {kind:"webhook", url} -> 201 {subscription:{id, kind, url},
//   secret:<64 hex>}; {kind:"webpush", endpoint, keys:{p256dh, auth}} -> 201 {subscription:{id,
//   kind, endpoint}} (no secret). Bad input -> 400 bad_request; url longer than 2048 -> 400
//   too_large; loopback/private/link-local hosts -> 400 bad_request unless --push-allow-private.
//   DELETE /v1/push/subscriptions/{id} -> 204; another user's or unknown -> 404.
//   GET /v1/push/vapid (no auth) -> {public_key}.
//   A member with no connected WebSocket when a message is stored (never the sender) gets one
//   notification per subscription. Webhook: POST, application/json, body exactly {user_id,
//   channel, message_id, from, preview, from_name, group (a group's)} (preview: first 100 code
//   points; from_name: the sender's display name), X-Iyagi-Signature:
//   sha256=<hex HMAC-SHA256(secret, body)>, X-Iyagi-Notification-Id stable across retries; non-2xx
//   retried with exponential backoff (--push-retry-base-ms, --push-give-up). Web Push: TTL,
//   Content-Encoding aes128gcm, Authorization vapid t=,k=, body encrypts {id, user_id, channel,
//   message_id, from, preview}; 404/410 deletes the subscription. A pending notification for
//   (subscription, channel) is updated by newer messages (collapse). Notifications are committed
//   with the message. Metrics iyagi_push_{queued,sent,retried,dead}_total and
//   iyagi_push_latency_seconds histogram.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  withServer, api, show, newUser, newDevice, connectWs, ms, sleep, freePort, assertHttpError, UNKNOWN_ID,
} from './lib/harness.mjs';
import {
  startReceiver, jsonOf, checkWebhookSignature, browserKeys, decryptAes128gcm, verifyVapid,
  p256PublicKey, fromB64u, b64u, decryptRfc8291Vector, RFC8291_VECTOR, metricSum,
} from './lib/push_receivers.mjs';

const T = { timeout: ms(120000) };

/** the flags every push test runs with: receivers live on 127.0.0.1; retries every ~100 ms */
const PUSH_ARGS = ['--push-allow-private', '--push-retry-base-ms', '100'];
/** how long "nothing more arrives" is watched for */
const QUIET_MS = ms(1500);

/**
 * A server with push flags (or opts), receivers and sockets that are always cleaned up; failures
 * carry the server's stderr (withServer) and the receivers' requests.
 */
async function scenario(opts, fn) {
  return withServer({ extraArgs: PUSH_ARGS, ...opts }, async (srv) => {
    const receivers = [];
    const sockets = [];
    const env = {
      srv,
      async receiver(o = {}) { const r = await startReceiver(o); receivers.push(r); return r; },
      track(c) { sockets.push(c); return c; },
    };
    try {
      return await fn(env);
    } catch (e) {
      if (e && typeof e === 'object' && receivers.length) {
        try { e.message += `\n--- receivers ---\n${receivers.map((r) => `${r.name}: ${r.describe(10)}`).join('\n')}`; } catch { /* frozen */ }
      }
      throw e;
    } finally {
      for (const c of sockets) c.terminate();
      await Promise.all(receivers.map((r) => r.close().catch(() => {})));
    }
  });
}

async function subscribeWebhook(srv, u, url) {
  const r = await api(srv, 'POST', '/v1/push/subscriptions', { token: u.token, body: { kind: 'webhook', url } });
  assert.equal(r.status, 201, `subscribe webhook ${url}: ${show(r)}`);
  const s = r.body?.subscription;
  assert.ok(s && typeof s === 'object', `subscribe webhook: body {subscription}, got ${show(r)}`);
  assert.ok(typeof s.id === 'string' && /^[0-9]+$/.test(s.id), `subscription.id is a string of digits, got ${show(r)}`);
  assert.equal(s.kind, 'webhook', `subscription.kind, got ${show(r)}`);
  assert.equal(s.url, url, `subscription.url, got ${show(r)}`);
  assert.match(String(r.body.secret), /^[0-9a-f]{64}$/, `secret is 64 lowercase hex chars, got ${show(r)}`);
  return { id: s.id, secret: r.body.secret, url };
}

async function subscribeWebpush(srv, u, endpoint, keys) {
  const r = await api(srv, 'POST', '/v1/push/subscriptions', { token: u.token, body: { kind: 'webpush', endpoint, keys } });
  assert.equal(r.status, 201, `subscribe webpush ${endpoint}: ${show(r)}`);
  const s = r.body?.subscription;
  assert.ok(s && typeof s === 'object', `subscribe webpush: body {subscription}, got ${show(r)}`);
  assert.ok(typeof s.id === 'string' && /^[0-9]+$/.test(s.id), `subscription.id is a string of digits, got ${show(r)}`);
  assert.equal(s.kind, 'webpush', `subscription.kind, got ${show(r)}`);
  assert.equal(s.endpoint, endpoint, `subscription.endpoint, got ${show(r)}`);
  assert.equal(r.body.secret, undefined, `a webpush subscription has no secret, got ${show(r)}`);
  return { id: s.id, endpoint };
}

async function sendTo(srv, from, to, text, cmid) {
  const r = await api(srv, 'POST', `/v1/users/${to.user.id}/messages`, { token: from.token, body: { text, cmid } });
  assert.equal(r.status, 201, `send ${cmid}: ${show(r)}`);
  return r.body.message;
}

async function sendIn(srv, from, channelId, text, cmid) {
  const r = await api(srv, 'POST', `/v1/channels/${channelId}/messages`, { token: from.token, body: { text, cmid } });
  assert.equal(r.status, 201, `send ${cmid}: ${show(r)}`);
  return r.body.message;
}

const preview = (text) => Array.from(text).slice(0, 100).join('');

/** the exact webhook body for recipient u and message m */
const hookBody = (u, m) => ({ user_id: u.user.id, channel: m.channel, message_id: m.id, from: m.from, preview: preview(m.text) });

/** webhook request predicates */
const about = (m) => (req) => { try { return jsonOf(req).message_id === m.id; } catch { return false; } };
const ok2xx = (req) => typeof req.status === 'number' && req.status >= 200 && req.status < 300;

/** asserts one webhook request: method, content type, signature, notification id, exact body */
function checkHook(req, sub, expected, what) {
  assert.equal(req.method, 'POST', `${what}: method`);
  assert.match(String(req.headers['content-type']), /^application\/json\s*(;|$)/i, `${what}: Content-Type`);
  const sigErr = checkWebhookSignature(sub.secret, req);
  assert.equal(sigErr, null, `${what}: ${sigErr}`);
  const nid = req.headers['x-iyagi-notification-id'];
  assert.ok(typeof nid === 'string' && nid.length > 0, `${what}: X-Iyagi-Notification-Id present, got ${JSON.stringify(nid)}`);
  const { from_name: fromName, group, ...body } = jsonOf(req);
  assert.ok(typeof fromName === 'string' && fromName.length > 0, `${what}: from_name, the sender's name: ${JSON.stringify(fromName)}`);
  assert.ok(group === undefined || (typeof group === 'string' && group.length > 0), `${what}: group, a group's name: ${JSON.stringify(group)}`);
  assert.deepStrictEqual(body, expected, `${what}: body is exactly {user_id, channel, message_id, from, preview, from_name[, group]}`);
  return nid;
}

/** a text whose first 100 code points differ from its first 100 UTF-16 units and 100 bytes */
const longText = (tag) => `${tag} 안녕하세요 ${'😀'.repeat(60)}${'x'.repeat(60)}`;

// ---------------------------------------------------------------- the receivers' own crypto

test('receiver self-check: the RFC 8291 Appendix A message decrypts to its plaintext', () => {
  assert.equal(decryptRfc8291Vector(), RFC8291_VECTOR.plaintext);
});

// ---------------------------------------------------------------- subscriptions

test('subscriptions: validation (400 bad_request / too_large), 201 shapes, DELETE 204 and 404 (another user\'s, unknown), GET /v1/push/vapid', T, () => scenario({}, async ({ srv }) => {
  const [u, x] = await Promise.all([newUser(srv, 'psv'), newUser(srv, 'psx')]);
  const port = await freePort(); // nothing is ever sent: no message is stored in this test
  const url = `http://127.0.0.1:${port}/hook`;
  const bk = browserKeys();
  const post = (body, token = u.token) => api(srv, 'POST', '/v1/push/subscriptions', { token, body });

  assertHttpError(await api(srv, 'POST', '/v1/push/subscriptions', { body: { kind: 'webhook', url } }), 401, 'unauthorized', 'no token');

  const bad = [
    [{ kind: 'sms', url }, 'unknown kind'],
    [{ url }, 'no kind'],
    [{ kind: 'webhook' }, 'webhook without url'],
    [{ kind: 'webhook', url: `ftp://127.0.0.1:${port}/hook` }, 'ftp url'],
    [{ kind: 'webhook', url: 'not a url' }, 'not a url'],
    [{ kind: 'webhook', url: 42 }, 'url not a string'],
    [{ kind: 'webpush', endpoint: url }, 'webpush without keys'],
    [{ kind: 'webpush', endpoint: url, keys: { auth: bk.keys.auth } }, 'webpush without p256dh'],
    [{ kind: 'webpush', endpoint: url, keys: { p256dh: bk.keys.p256dh } }, 'webpush without auth'],
    [{ kind: 'webpush', keys: bk.keys }, 'webpush without endpoint'],
    [{ kind: 'webpush', endpoint: `ftp://127.0.0.1:${port}/wp`, keys: bk.keys }, 'webpush ftp endpoint'],
    [{ kind: 'webpush', endpoint: url, keys: { ...bk.keys, p256dh: b64u(bk.ecdh.getPublicKey(null, 'compressed')) } }, 'p256dh compressed (33 bytes)'],
    [{ kind: 'webpush', endpoint: url, keys: { ...bk.keys, p256dh: b64u(Buffer.concat([Buffer.from([4]), Buffer.alloc(64, 0x11)])) } }, 'p256dh 65 bytes not on the curve'],
    [{ kind: 'webpush', endpoint: url, keys: { ...bk.keys, p256dh: b64u(Buffer.concat([bk.ecdh.getPublicKey(), Buffer.from([0])])) } }, 'p256dh 66 bytes'],
    [{ kind: 'webpush', endpoint: url, keys: { ...bk.keys, p256dh: `${bk.keys.p256dh.slice(0, 40)}!${bk.keys.p256dh.slice(41)}` } }, 'p256dh not base64url'],
    [{ kind: 'webpush', endpoint: url, keys: { ...bk.keys, auth: b64u(crypto.randomBytes(15)) } }, 'auth 15 bytes'],
    [{ kind: 'webpush', endpoint: url, keys: { ...bk.keys, auth: b64u(crypto.randomBytes(17)) } }, 'auth 17 bytes'],
  ];
  for (const [body, why] of bad) assertHttpError(await post(body), 400, 'bad_request', why);
  assertHttpError(await api(srv, 'POST', '/v1/push/subscriptions', { token: u.token, raw: '{"kind":"webhook",' }), 400, 'bad_request', 'body not JSON');

  // url length: 2048 is fine, 2049 is too_large
  const base = `http://127.0.0.1:${port}/`;
  const at2048 = base + 'a'.repeat(2048 - base.length);
  assert.equal(at2048.length, 2048);
  const longOk = await subscribeWebhook(srv, u, at2048);
  assertHttpError(await post({ kind: 'webhook', url: `${at2048}b` }), 400, 'too_large', 'url of 2049 chars');
  assertHttpError(await post({ kind: 'webpush', endpoint: `${at2048}b`, keys: bk.keys }), 400, 'too_large', 'endpoint of 2049 chars');

  // valid ones
  const h1 = await subscribeWebhook(srv, u, url);
  const h2 = await subscribeWebhook(srv, u, `${url}2`);
  assert.notEqual(h1.secret, h2.secret, 'every webhook subscription gets its own secret');
  const w1 = await subscribeWebpush(srv, u, `http://127.0.0.1:${port}/wp/1`, bk.keys);
  assert.equal(new Set([longOk.id, h1.id, h2.id, w1.id]).size, 4, 'subscription ids are distinct');

  // delete
  const del = (id, token) => api(srv, 'DELETE', `/v1/push/subscriptions/${id}`, { token });
  assertHttpError(await del(h1.id, undefined), 401, 'unauthorized', 'DELETE without token');
  assertHttpError(await del(h1.id, x.token), 404, 'not_found', 'DELETE of another user\'s webhook subscription');
  assertHttpError(await del(w1.id, x.token), 404, 'not_found', 'DELETE of another user\'s webpush subscription');
  assertHttpError(await del(UNKNOWN_ID, u.token), 404, 'not_found', 'DELETE of an unknown id');
  assertHttpError(await del('abc', u.token), 404, 'not_found', 'DELETE of a non-numeric id');
  for (const s of [h1, w1, h2, longOk]) {
    const r = await del(s.id, u.token);
    assert.equal(r.status, 204, `DELETE own subscription ${s.id} (x's attempt must not have removed it): ${show(r)}`);
  }
  assertHttpError(await del(h1.id, u.token), 404, 'not_found', 'DELETE of an already deleted subscription');

  // the VAPID public key: no auth, the uncompressed P-256 point in base64url, stable
  const v = await api(srv, 'GET', '/v1/push/vapid');
  assert.equal(v.status, 200, `GET /v1/push/vapid without a token: ${show(v)}`);
  assert.equal(typeof v.body?.public_key, 'string', show(v));
  const raw = fromB64u(v.body.public_key, 'public_key');
  assert.equal(raw.length, 65, `public_key is 65 bytes, got ${raw.length}`);
  assert.equal(raw[0], 0x04, 'public_key is an uncompressed point (0x04 …)');
  assert.doesNotThrow(() => p256PublicKey(raw), 'public_key is a point on P-256');
  const v2 = await api(srv, 'GET', '/v1/push/vapid', { token: u.token });
  assert.equal(v2.body?.public_key, v.body.public_key, 'the VAPID key is the same on every call');
}));

test('SSRF: without --push-allow-private, loopback / private / link-local endpoints are refused with 400 bad_request', T, async () => {
  const sink = await startReceiver({ name: 'ssrf-sink' }); // a real loopback port, that must see nothing
  try {
    const loopback = sink.url('/x');
    await withServer({}, async (srv) => {
      const u = await newUser(srv, 'ssrf');
      const bk = browserKeys();
      const refused = [
        [{ kind: 'webhook', url: loopback }, 'webhook 127.0.0.1'],
        [{ kind: 'webhook', url: 'http://10.0.0.1/x' }, 'webhook 10.0.0.1'],
        [{ kind: 'webhook', url: `http://localhost:${sink.port}/x` }, 'webhook localhost (resolves to loopback)'],
        [{ kind: 'webhook', url: 'http://192.168.1.10/x' }, 'webhook 192.168.1.10'],
        [{ kind: 'webhook', url: 'http://172.16.0.1/x' }, 'webhook 172.16.0.1'],
        [{ kind: 'webhook', url: 'http://169.254.169.254/latest/meta-data' }, 'webhook 169.254.169.254 (link-local)'],
        [{ kind: 'webhook', url: `http://[::1]:${sink.port}/x` }, 'webhook [::1]'],
        [{ kind: 'webpush', endpoint: sink.url('/wp'), keys: bk.keys }, 'webpush 127.0.0.1'],
        [{ kind: 'webpush', endpoint: 'https://10.0.0.1/wp', keys: bk.keys }, 'webpush 10.0.0.1'],
      ];
      for (const [body, why] of refused) {
        assertHttpError(await api(srv, 'POST', '/v1/push/subscriptions', { token: u.token, body }), 400, 'bad_request', why);
      }
    });
    // control: the same loopback URL is accepted when the flag is given
    await withServer({ extraArgs: ['--push-allow-private'] }, async (srv) => {
      const u = await newUser(srv, 'ssrfok');
      await subscribeWebhook(srv, u, loopback);
    });
    assert.equal(sink.requests.length, 0, `the server contacted the loopback endpoint: ${sink.describe()}`);
  } finally {
    await sink.close();
  }
});

// ---------------------------------------------------------------- who gets a push

test('webhook: an offline member gets one signed notification with the exact body; a member with a socket gets none', T, () => scenario({}, async ({ srv, receiver, track }) => {
  const [a, b, c] = await Promise.all(['pga', 'pgb', 'pgc'].map((n) => newUser(srv, n)));
  const g = await api(srv, 'POST', '/v1/groups', { token: a.token, body: { name: 'pushers', members: [b.user.id, c.user.id] } });
  assert.equal(g.status, 201, show(g));
  const ch = g.body.channel.id;
  const rb = await receiver({ name: 'B-hook' });
  const rc = await receiver({ name: 'C-hook' });
  const sb = await subscribeWebhook(srv, b, rb.url('/b'));
  const sc = await subscribeWebhook(srv, c, rc.url('/c'));

  const B = track(await connectWs(srv, { token: b.token, label: 'B' }));
  const m1 = await sendIn(srv, a, ch, longText('first'), 'pg-1');
  await B.waitFor((f) => f.op === 'msg' && f.id === m1.id, { what: 'msg m1 on B' }); // B really is connected
  const [h1] = await rc.waitFor(about(m1), { what: 'C notified of m1' });
  const nid1 = checkHook(h1, sc, hookBody(c, m1), 'C, m1');
  assert.equal(h1.path, '/c');
  assert.deepEqual([jsonOf(h1).from_name, jsonOf(h1).group], [a.user.display_name || a.username, 'pushers'], 'who and which group, for the title');
  await sleep(QUIET_MS);
  assert.equal(rc.requests.length, 1, `C (answered 200) gets exactly one request for m1: ${rc.describe()}`);
  assert.equal(rb.requests.length, 0, `B has a connected socket: no push, got ${rb.describe()}`);

  // once B's socket is gone, B is pushed too (so the silence above was not a broken receiver)
  await B.close();
  await sleep(ms(500));
  const m2 = await sendIn(srv, a, ch, 'second', 'pg-2');
  const [hb] = await rb.waitFor(about(m2), { what: 'B notified of m2' });
  checkHook(hb, sb, hookBody(b, m2), 'B, m2');
  const [hc2] = await rc.waitFor(about(m2), { what: 'C notified of m2' });
  const nid2 = checkHook(hc2, sc, hookBody(c, m2), 'C, m2');
  assert.notEqual(nid2, nid1, 'two notifications have two different X-Iyagi-Notification-Id');
  await sleep(QUIET_MS);
  assert.equal(rb.requests.length, 1, `B: exactly one request (m2), ${rb.describe()}`);
  assert.equal(rc.requests.length, 2, `C: exactly two requests (m1, m2), ${rc.describe()}`);
}));

test('mute: a member who muted a channel gets no push for it (the others do) but for a mention, sees muted: true in its list, and is pushed again once it unmutes', T, () => scenario({}, async ({ srv, receiver }) => {
  const [a, b, c] = await Promise.all(['pma', 'pmb', 'pmc'].map((n) => newUser(srv, n)));
  const g = await api(srv, 'POST', '/v1/groups', { token: a.token, body: { name: 'muters', members: [b.user.id, c.user.id] } });
  assert.equal(g.status, 201, show(g));
  const ch = g.body.channel.id;
  const rb = await receiver({ name: 'B-hook' });
  const rc = await receiver({ name: 'C-hook' });
  await subscribeWebhook(srv, b, rb.url('/b'));
  await subscribeWebhook(srv, c, rc.url('/c'));
  assertHttpError(await api(srv, 'PUT', `/v1/channels/${UNKNOWN_ID}/mute`, { token: c.token }), 404, 'not_found', 'unknown channel');
  const stranger = await newUser(srv, 'pmd');
  assertHttpError(await api(srv, 'PUT', `/v1/channels/${ch}/mute`, { token: stranger.token }), 403, 'forbidden', 'not a member');
  assert.equal((await api(srv, 'PUT', `/v1/channels/${ch}/mute`, { token: c.token })).status, 204);
  const list = await api(srv, 'GET', '/v1/channels', { token: c.token });
  assert.equal(list.body.channels.find((x) => x.channel.id === ch).muted, true);
  assert.equal((await api(srv, 'GET', '/v1/channels', { token: b.token })).body.channels.find((x) => x.channel.id === ch).muted, false);

  const m1 = await sendIn(srv, a, ch, 'while muted', 'pm-1');
  await rb.waitFor(about(m1), { what: 'B notified of m1' });
  await sleep(QUIET_MS);
  assert.equal(rc.requests.length, 0, `C muted the channel: no push, got ${rc.describe()}`);
  // ... except for a message that mentions C
  const m1b = await sendIn(srv, a, ch, `@${c.username} this one is for you`, 'pm-1b');
  await rc.waitFor(about(m1b), { what: 'C notified of the mention although muted' });
  assert.equal(rc.requests.length, 1, rc.describe());

  assert.equal((await api(srv, 'DELETE', `/v1/channels/${ch}/mute`, { token: c.token })).status, 204);
  assert.equal((await api(srv, 'GET', '/v1/channels', { token: c.token })).body.channels.find((x) => x.channel.id === ch).muted, false);
  const m2 = await sendIn(srv, a, ch, 'unmuted', 'pm-2');
  await rc.waitFor(about(m2), { what: 'C notified of m2' });
}));

test('webhook: the sender never gets a push for its own message (even to another device of its own)', T, () => scenario({}, async ({ srv, receiver }) => {
  const [a, b] = await Promise.all([newUser(srv, 'psa'), newUser(srv, 'psb')]);
  const a2 = await newDevice(srv, a, 'a-phone'); // A's subscription lives on another device
  const ra = await receiver({ name: 'A-hook' });
  const rb = await receiver({ name: 'B-hook' });
  const sa = await subscribeWebhook(srv, a2, ra.url('/a'));
  const sb = await subscribeWebhook(srv, b, rb.url('/b'));

  // nobody has a socket; A sends over HTTP
  const m1 = await sendTo(srv, a, b, 'from a', 'ps-1');
  const [hb] = await rb.waitFor(about(m1), { what: 'B notified of m1' });
  checkHook(hb, sb, hookBody(b, m1), 'B, m1');
  await sleep(QUIET_MS);
  assert.equal(ra.requests.length, 0, `A sent m1: A gets no push for it, got ${ra.describe()}`);

  // the other way round: A's receiver works, and B gets nothing for its own message
  const m2 = await sendTo(srv, b, a, 'from b', 'ps-2');
  const [ha] = await ra.waitFor(about(m2), { what: 'A notified of m2' });
  checkHook(ha, sa, hookBody(a, m2), 'A, m2');
  await sleep(QUIET_MS);
  assert.equal(ra.requests.length, 1, `A: exactly one request (m2), ${ra.describe()}`);
  assert.equal(rb.requests.length, 1, `B: exactly one request (m1), none for its own m2, ${rb.describe()}`);
}));

test('logout ends the session\'s subscriptions: a logged-out device gets no more previews; the other device\'s stays', T, () => scenario({}, async ({ srv, receiver }) => {
  const [a, b] = await Promise.all([newUser(srv, 'pla'), newUser(srv, 'plb')]);
  const b2 = await newDevice(srv, b, 'b-laptop');
  const rPhone = await receiver({ name: 'B-phone' });
  const rLaptop = await receiver({ name: 'B-laptop' });
  const sPhone = await subscribeWebhook(srv, b, rPhone.url('/phone'));
  const sLaptop = await subscribeWebhook(srv, b2, rLaptop.url('/laptop'));

  const m1 = await sendTo(srv, a, b, 'before the logout', 'pl-1');
  checkHook((await rPhone.waitFor(about(m1), { what: 'phone notified of m1' }))[0], sPhone, hookBody(b, m1), 'phone, m1');
  checkHook((await rLaptop.waitFor(about(m1), { what: 'laptop notified of m1' }))[0], sLaptop, hookBody(b, m1), 'laptop, m1');

  const out = await api(srv, 'DELETE', '/v1/sessions/current', { token: b.token });
  assert.equal(out.status, 204, show(out));
  const m2 = await sendTo(srv, a, b, 'after the logout', 'pl-2');
  await rLaptop.waitFor(about(m2), { what: 'laptop (still logged in) notified of m2' });
  await sleep(QUIET_MS);
  assert.equal(rPhone.requests.length, 1, `the logged-out phone gets nothing after its logout: ${rPhone.describe()}`);
  // its subscription is gone, not just silent: deleting it answers 404; the laptop's is still there
  assertHttpError(await api(srv, 'DELETE', `/v1/push/subscriptions/${sPhone.id}`, { token: b2.token }), 404, 'not_found', 'the phone\'s subscription after logout');
  // and a restart does not bring it back
  await srv.restart();
  const m3 = await sendTo(srv, a, b, 'after the restart', 'pl-3');
  await rLaptop.waitFor(about(m3), { what: 'laptop notified of m3' });
  await sleep(QUIET_MS);
  assert.equal(rPhone.requests.length, 1, `still nothing for the phone after a restart: ${rPhone.describe()}`);
  const del = await api(srv, 'DELETE', `/v1/push/subscriptions/${sLaptop.id}`, { token: b2.token });
  assert.equal(del.status, 204, show(del));
}));

// ---------------------------------------------------------------- retries and metrics

const PUSH_METRICS = ['iyagi_push_queued_total', 'iyagi_push_sent_total', 'iyagi_push_retried_total', 'iyagi_push_dead_total'];
const INF = (labels) => /(^|,)\s*le="\+Inf"/.test(labels);

async function pushMetrics(srv) {
  const r = await api(srv, 'GET', '/metrics');
  assert.equal(r.status, 200, `GET /metrics: ${show(r)}`);
  const out = { text: r.text };
  for (const n of PUSH_METRICS) out[n] = metricSum(r.text, n);
  out.inf = metricSum(r.text, 'iyagi_push_latency_seconds_bucket', INF);
  out.count = metricSum(r.text, 'iyagi_push_latency_seconds_count');
  return out;
}

test('webhook retries: 500, 500, then 200 -> three attempts, same X-Iyagi-Notification-Id, exactly one 2xx; push metrics count it', T, () => scenario({}, async ({ srv, receiver }) => {
  const [a, b] = await Promise.all([newUser(srv, 'pra'), newUser(srv, 'prb')]);
  const rb = await receiver({ name: 'B-hook', script: [500, 500, 200] });
  const sb = await subscribeWebhook(srv, b, rb.url('/retry'));
  const before = await pushMetrics(srv);

  const m = await sendTo(srv, a, b, longText('retry'), 'pr-1');
  await rb.waitFor(ok2xx, { what: 'a 2xx-answered attempt', timeoutMs: ms(20000) });
  await sleep(QUIET_MS);
  const reqs = rb.requests;
  assert.deepEqual(reqs.map((r) => r.status), [500, 500, 200], `attempts and their answers: ${rb.describe()}`);
  const nids = reqs.map((r, i) => checkHook(r, sb, hookBody(b, m), `attempt ${i + 1}`));
  assert.equal(new Set(nids).size, 1, `the same X-Iyagi-Notification-Id on every attempt, got ${JSON.stringify(nids)}`);
  assert.ok(reqs[1].at > reqs[0].at && reqs[2].at > reqs[1].at, 'attempts are sequential');

  const after = await pushMetrics(srv);
  for (const n of PUSH_METRICS) assert.equal(typeof after[n], 'number', `/metrics has ${n}:\n${after.text.split('\n').filter((l) => l.includes('push')).join('\n')}`);
  assert.equal(typeof after.inf, 'number', `/metrics has iyagi_push_latency_seconds_bucket{le="+Inf"}:\n${after.text.split('\n').filter((l) => l.includes('push')).join('\n')}`);
  const d = (n) => after[n] - (before[n] ?? 0);
  assert.equal(d('iyagi_push_queued_total'), 1, 'queued: one notification');
  assert.equal(d('iyagi_push_sent_total'), 1, 'sent: one delivery');
  assert.equal(d('iyagi_push_retried_total'), 2, 'retried: two');
  assert.equal(d('iyagi_push_dead_total'), 0, 'dead: none');
  assert.equal(after.inf - (before.inf ?? 0), 1, 'latency histogram: one observation (+Inf bucket)');
  if (after.count !== undefined) assert.equal(after.count - (before.count ?? 0), 1, 'latency histogram _count: one observation');
  // buckets are cumulative
  const buckets = [];
  for (const line of after.text.split('\n')) {
    const mm = line.match(/^iyagi_push_latency_seconds_bucket\{([^}]*)\}\s+(\S+)/);
    if (mm) {
      const le = mm[1].match(/le="([^"]+)"/)?.[1];
      buckets.push([le === '+Inf' ? Infinity : Number(le), Number(mm[2]), mm[1].replace(/,?\s*le="[^"]*"/, '')]);
    }
  }
  const bySeries = new Map();
  for (const [le, v, rest] of buckets) { if (!bySeries.has(rest)) bySeries.set(rest, []); bySeries.get(rest).push([le, v]); }
  for (const [series, list] of bySeries) {
    list.sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < list.length; i++) assert.ok(list[i][1] >= list[i - 1][1], `histogram {${series}} buckets are cumulative: ${JSON.stringify(list)}`);
  }
}));

// ---------------------------------------------------------------- Web Push

test('webpush: RFC 8291 aes128gcm payload decrypts with the browser keys; VAPID JWT verifies (ES256, aud, exp, sub, k = /v1/push/vapid)', T, () => scenario({}, async ({ srv, receiver }) => {
  const [a, b] = await Promise.all([newUser(srv, 'pwa'), newUser(srv, 'pwb')]);
  const v = await api(srv, 'GET', '/v1/push/vapid');
  assert.equal(v.status, 200, `GET /v1/push/vapid: ${show(v)}`);
  const rw = await receiver({ name: 'push-service', script: 201 });
  const bk = browserKeys();
  const endpoint = rw.url(`/wp/${crypto.randomBytes(12).toString('base64url')}`);
  await subscribeWebpush(srv, b, endpoint, bk.keys);

  const m = await sendTo(srv, a, b, longText('webpush'), 'pw-1');
  const [req] = await rw.waitFor(() => true, { what: 'a push' });
  assert.equal(req.method, 'POST', 'method');
  assert.equal(req.path, new URL(endpoint).pathname, 'the push goes to the endpoint\'s path');
  assert.match(String(req.headers.ttl), /^[0-9]+$/, `TTL header is a number, got ${JSON.stringify(req.headers.ttl)}`);
  assert.equal(req.headers['content-encoding'], 'aes128gcm', 'Content-Encoding');
  const nid = req.headers['x-iyagi-notification-id'];
  assert.ok(typeof nid === 'string' && nid.length > 0, `X-Iyagi-Notification-Id present, got ${JSON.stringify(nid)}`);

  let vapid;
  try { vapid = verifyVapid(req.headers.authorization, { audience: rw.origin }); } catch (e) { assert.fail(`VAPID: ${e.message}`); }
  assert.equal(vapid.k, v.body.public_key, 'k= is the key of GET /v1/push/vapid');

  let dec;
  try { dec = decryptAes128gcm(req.body, bk); } catch (e) { assert.fail(`decrypt: ${e.message}`); }
  assert.notDeepEqual(Buffer.from(dec.keyid), bk.ecdh.getPublicKey(), 'keyid is the sender\'s key, not ours');
  let payload;
  try { payload = JSON.parse(dec.plaintext.toString('utf8')); } catch (e) { assert.fail(`decrypted payload is not JSON: ${dec.plaintext.toString('utf8').slice(0, 300)}`); }
  assert.deepEqual(Object.keys(payload).sort(), ['channel', 'from', 'from_name', 'id', 'message_id', 'preview', 'user_id'], `payload keys: ${JSON.stringify(payload)}`);
  assert.ok(typeof payload.id === 'string' && payload.id.length > 0, `payload.id is a non-empty string: ${JSON.stringify(payload)}`);
  const { id, from_name: fromName, ...rest } = payload;
  assert.equal(fromName, a.user.display_name || a.username, 'from_name: the sender\'s display name (the notification\'s title)');
  assert.deepStrictEqual(rest, hookBody(b, m), 'payload {user_id, channel, message_id, from, preview}');

  await sleep(QUIET_MS);
  assert.equal(rw.requests.length, 1, `answered 201: exactly one push, ${rw.describe()}`);
}));

test('webpush: an endpoint answering 410 or 404 is deleted (a later message sends it nothing)', T, () => scenario({}, async ({ srv, receiver }) => {
  const [a, b] = await Promise.all([newUser(srv, 'pga'), newUser(srv, 'pgb')]);
  // one subscription per device of B
  const [b410, b404, bok] = [b, await newDevice(srv, b, 'b-two'), await newDevice(srv, b, 'b-three')];
  const r410 = await receiver({ name: 'gone-410', script: 410 });
  const r404 = await receiver({ name: 'gone-404', script: 404 });
  const rok = await receiver({ name: 'fine', script: 201 });
  const k1 = browserKeys(); const k2 = browserKeys(); const k3 = browserKeys();
  const s410 = await subscribeWebpush(srv, b410, r410.url('/wp/410'), k1.keys);
  const s404 = await subscribeWebpush(srv, b404, r404.url('/wp/404'), k2.keys);
  const sok = await subscribeWebpush(srv, bok, rok.url('/wp/ok'), k3.keys);

  const m1 = await sendTo(srv, a, b, 'one', 'pg-1');
  await Promise.all([
    r410.waitFor(() => true, { what: 'push 1 (answered 410)' }),
    r404.waitFor(() => true, { what: 'push 1 (answered 404)' }),
    rok.waitFor(() => true, { what: 'push 1' }),
  ]);
  const p1 = JSON.parse(decryptAes128gcm(rok.requests[0].body, k3).plaintext.toString('utf8'));
  assert.equal(p1.message_id, m1.id, 'the control endpoint got m1');
  await sleep(QUIET_MS);
  assert.equal(r410.requests.length, 1, `410 is final: no retry, ${r410.describe()}`);
  assert.equal(r404.requests.length, 1, `404 is final: no retry, ${r404.describe()}`);

  const m2 = await sendTo(srv, a, b, 'two', 'pg-2');
  await rok.waitFor(() => true, { count: 2, what: 'push 2 to the control endpoint' });
  const p2 = JSON.parse(decryptAes128gcm(rok.requests[1].body, k3).plaintext.toString('utf8'));
  assert.equal(p2.message_id, m2.id, 'the control endpoint got m2');
  await sleep(QUIET_MS);
  assert.equal(r410.requests.length, 1, `the 410 subscription was deleted: nothing for m2, ${r410.describe()}`);
  assert.equal(r404.requests.length, 1, `the 404 subscription was deleted: nothing for m2, ${r404.describe()}`);
  assert.equal(rok.requests.length, 2, `control: exactly m1 and m2, ${rok.describe()}`);

  const del = (s, u) => api(srv, 'DELETE', `/v1/push/subscriptions/${s.id}`, { token: u.token });
  assertHttpError(await del(s410, b410), 404, 'not_found', 'DELETE of the subscription the server removed after 410');
  assertHttpError(await del(s404, b404), 404, 'not_found', 'DELETE of the subscription the server removed after 404');
  const r = await del(sok, bok);
  assert.equal(r.status, 204, `DELETE of the control subscription: ${show(r)}`);
}));

// ---------------------------------------------------------------- durability and collapse

test('durability: receiver down (connection refused), SIGKILL, restart -> every notification is delivered when it comes back', T, () => scenario({}, async ({ srv, receiver }) => {
  const [a, b, c] = await Promise.all(['pda', 'pdb', 'pdc'].map((n) => newUser(srv, n)));
  const vapid1 = (await api(srv, 'GET', '/v1/push/vapid')).body?.public_key;
  const port = await freePort(); // nobody listens there until after the restart
  const sub = await subscribeWebhook(srv, b, `http://127.0.0.1:${port}/down`);

  const fromA = [await sendTo(srv, a, b, 'a one', 'pd-a1')];
  await sleep(ms(300)); // some attempts fail with connection refused
  fromA.push(await sendTo(srv, a, b, 'a two', 'pd-a2'));
  fromA.push(await sendTo(srv, a, b, longText('a three'), 'pd-a3'));
  const fromC = await sendTo(srv, c, b, 'c one', 'pd-c1');
  await srv.kill(); // right after the last commit
  await srv.start();

  const vapid2 = (await api(srv, 'GET', '/v1/push/vapid')).body?.public_key;
  assert.equal(vapid2, vapid1, 'the VAPID key survives a restart (Web Push subscriptions are bound to it)');

  const rb = await receiver({ name: 'B-hook (was down)', port });
  const lastA = fromA[fromA.length - 1];
  await rb.waitFor((r) => ok2xx(r) && about(lastA)(r), { what: 'the notification for A\'s last message', timeoutMs: ms(30000) });
  await rb.waitFor((r) => ok2xx(r) && about(fromC)(r), { what: 'the notification for C\'s message', timeoutMs: ms(30000) });
  await sleep(QUIET_MS);

  const byId = new Map([...fromA, fromC].map((m) => [m.id, m]));
  const nids = [];
  for (const req of rb.requests) {
    const body = jsonOf(req);
    const m = byId.get(body.message_id);
    assert.ok(m, `request #${req.n} is about one of the messages sent: ${JSON.stringify(body)}`);
    nids.push(checkHook(req, sub, hookBody(b, m), `request #${req.n}`));
  }
  assert.ok(rb.requests.length <= 4, `at most one delivery per message (4), got ${rb.describe()}`);
  assert.equal(new Set(nids).size, nids.length, `each notification delivered once (all answered 200): ${JSON.stringify(nids)}`);
  const lastFor = (channel) => rb.requests.filter((r) => jsonOf(r).channel === channel).pop();
  assert.equal(jsonOf(lastFor(lastA.channel)).message_id, lastA.id, 'the last notification of A\'s channel carries A\'s last message');
  assert.equal(jsonOf(lastFor(fromC.channel)).message_id, fromC.id, 'C\'s channel: C\'s message');
}));

test('collapse: 20 messages while the receiver answers 503, then it recovers -> fewer than 20 notifications, the last carries message 20', T, (t) => scenario({}, async ({ srv, receiver }) => {
  const [a, b] = await Promise.all([newUser(srv, 'pca'), newUser(srv, 'pcb')]);
  let recovered = false;
  const rb = await receiver({ name: 'B-hook', script: () => (recovered ? 200 : 503) });
  const sub = await subscribeWebhook(srv, b, rb.url('/burst'));

  const msgs = [];
  for (let i = 1; i <= 20; i++) msgs.push(await sendTo(srv, a, b, `burst message ${i} ${'😀'.repeat(i)}`, `pc-${i}`));
  await rb.waitFor(() => true, { what: 'a first (failed) attempt' });
  await sleep(ms(200));
  const failedBefore = rb.requests.length;
  recovered = true;

  const last = msgs[19];
  await rb.waitFor((r) => ok2xx(r) && about(last)(r), { what: 'a delivered notification for message 20', timeoutMs: ms(30000) });
  await sleep(QUIET_MS);

  const byId = new Map(msgs.map((m) => [m.id, m]));
  for (const req of rb.requests) {
    const body = jsonOf(req);
    const m = byId.get(body.message_id);
    assert.ok(m, `request #${req.n} is about a burst message: ${JSON.stringify(body)}`);
    checkHook(req, sub, hookBody(b, m), `request #${req.n}`);
  }
  const delivered = rb.delivered();
  t.diagnostic(`collapse: ${rb.requests.length} requests (${failedBefore} answered 503 before recovery), ${delivered.length} delivered`);
  assert.ok(delivered.length < 20, `collapsed: fewer than 20 delivered notifications, got ${delivered.length}: ${rb.describe()}`);
  assert.equal(jsonOf(delivered[delivered.length - 1]).message_id, last.id, 'the last delivered notification carries message 20');
  const { from_name: _name, ...lastBody } = jsonOf(delivered[delivered.length - 1]);
  assert.deepStrictEqual(lastBody, hookBody(b, last), 'and its preview');
  const dn = delivered.map((r) => r.headers['x-iyagi-notification-id']);
  assert.equal(new Set(dn).size, dn.length, `no notification is delivered twice: ${JSON.stringify(dn)}`);
  assert.ok(failedBefore >= 1, 'the receiver was failing during the burst');
}));
