// authz.test.mjs — the authorisation matrix: every HTTP endpoint and every WebSocket op, asked by
// each kind of caller: anonymous, a bad token, a logged-out token, a stranger (non-member), a
// removed member, a member and the owner. Each cell is the status (HTTP) or the answer (WS) the
// contract and docs/PROTOCOL-ADDITIONS.md give; a refused call changes nothing (the channel's
// history and membership are compared before and after).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  withServer, api, show, newUser, newDevice, openWs, connectWs, ms, fullHistory,
} from './lib/harness.mjs';

const T = { timeout: ms(120000) };
const CALLERS = ['anon', 'bad', 'out', 'stranger', 'removed', 'member', 'owner'];
const UNAUTH = { anon: 401, bad: 401, out: 401 };
/** expectation rows: status for each caller; `authed` is the status for every caller with a live token */
const authed = (status) => ({ ...UNAUTH, stranger: status, removed: status, member: status, owner: status });
const channelRule = (ok, { member = ok, owner = ok } = {}) => ({ ...UNAUTH, stranger: 403, removed: 403, member, owner });

async function world(srv) {
  const [owner, member, removed, stranger, spare] = await Promise.all(['ow', 'me', 're', 'st', 'sp'].map((n) => newUser(srv, `az${n}`)));
  const out = await newDevice(srv, member, 'to-log-out');
  assert.equal((await api(srv, 'DELETE', '/v1/sessions/current', { token: out.token })).status, 204);
  const g = await api(srv, 'POST', '/v1/groups', { token: owner.token, body: { name: 'matrix', members: [member.user.id, removed.user.id] } });
  assert.equal(g.status, 201, show(g));
  const group = g.body.channel.id;
  const rm = await api(srv, 'DELETE', `/v1/channels/${group}/members/${removed.user.id}`, { token: owner.token });
  assert.equal(rm.status, 204, show(rm));
  const d = await api(srv, 'POST', `/v1/users/${member.user.id}/messages`, { token: owner.token, body: { text: 'direct', cmid: 'az-d' } });
  assert.equal(d.status, 201, show(d));
  const direct = d.body.message.channel;
  const tokens = { anon: undefined, bad: 'A'.repeat(43), out: out.token, stranger: stranger.token, removed: removed.token, member: member.token, owner: owner.token };
  return { owner, member, removed, stranger, spare, group, direct, tokens };
}

test('HTTP: every endpoint x every kind of caller', T, () => withServer({ extraArgs: ['--push-allow-private'] }, async (srv) => {
  const w = await world(srv);
  const before = await fullHistory(srv, w.owner.token, w.group);
  const extra = {};   // per-caller users to add, so that each add is a fresh one
  for (const c of CALLERS) extra[c] = await newUser(srv, `azx${c.slice(0, 3)}`);
  const byMember = {};   // per caller, a message of the member's to edit and delete
  for (const c of CALLERS) {
    const r = await api(srv, 'POST', `/v1/channels/${w.group}/messages`, { token: w.member.token, body: { text: `to change ${c}`, cmid: `azm-${c}` } });
    assert.equal(r.status, 201, show(r));
    byMember[c] = r.body.message.id;
  }
  let n = 0;
  const rows = [
    ['GET', () => '/v1/me', null, authed(200)],
    ['PATCH', () => '/v1/me', () => ({ display_name: 'New name' }), authed(200)],
    ['GET', () => `/v1/users/${w.spare.user.id}`, null, authed(200)],
    ['GET', () => `/v1/users?username=${w.spare.username}`, null, authed(200)],
    ['POST', () => `/v1/users/${w.spare.user.id}/messages`, () => ({ text: 'hi', cmid: `azu${n++}` }), authed(201)],
    ['GET', () => '/v1/channels', null, authed(200)],
    ['POST', () => '/v1/groups', () => ({ name: 'g', members: [w.spare.user.id] }), authed(201)],
    ['GET', () => '/v1/sync?after=0', null, authed(200)],
    ['GET', () => '/v1/friends', null, authed(200)],
    ['PUT', () => `/v1/friends/${w.spare.user.id}`, null, authed(200)],
    ['DELETE', () => `/v1/friends/${w.spare.user.id}`, null, authed(204)],
    ['GET', () => `/v1/presence?users=${w.spare.user.id}`, null, authed(200)],
    ['GET', () => '/v1/sessions', null, authed(200)],
    ['GET', () => '/v1/blocks', null, authed(200)],
    ['PUT', () => `/v1/blocks/${w.spare.user.id}`, null, authed(204)],
    ['DELETE', () => `/v1/blocks/${w.spare.user.id}`, null, authed(204)],
    ['GET', () => `/v1/channels/${w.group}`, null, channelRule(200)],
    ['GET', () => `/v1/channels/${w.group}/messages`, null, channelRule(200)],
    ['POST', () => `/v1/channels/${w.group}/messages`, () => ({ text: 'in the group', cmid: `azg${n++}` }), channelRule(201)],
    ['PATCH', () => `/v1/channels/${w.group}`, () => ({ name: 'renamed' }), channelRule(200, { member: 403 })],
    ['PUT', () => `/v1/channels/${w.group}/mute`, null, channelRule(204)],
    ['DELETE', () => `/v1/channels/${w.group}/mute`, null, channelRule(204)],
    ['GET', () => `/v1/channels/${w.direct}`, null, channelRule(200)],
    ['GET', () => `/v1/channels/${w.direct}/messages`, null, channelRule(200)],
    ['POST', () => `/v1/channels/${w.direct}/messages`, () => ({ text: 'in the direct', cmid: `azd${n++}` }), channelRule(201)],
    ['PATCH', () => `/v1/channels/${w.direct}`, () => ({ name: 'x' }), { ...channelRule(400) }],   // a direct channel has no name
    // a message: its author edits; its author or the group's owner deletes; a non-member learns nothing
    ['PATCH', (c) => `/v1/messages/${byMember[c]}`, () => ({ text: 'edited' }), { ...UNAUTH, stranger: 404, removed: 404, member: 200, owner: 403 }],
    ['DELETE', (c) => `/v1/messages/${byMember[c]}`, null, { ...UNAUTH, stranger: 404, removed: 404, member: 204, owner: 204 }],
  ];
  const failures = [];
  for (const [method, pathOf, bodyOf, expect] of rows) {
    for (const c of CALLERS) {
      const p = pathOf(c);
      const r = await api(srv, method, p, { token: w.tokens[c], body: bodyOf ? bodyOf(c) : undefined });
      if (r.status !== expect[c]) failures.push(`${method} ${p} as ${c}: ${r.status}, expected ${expect[c]} (${r.text.slice(0, 120)})`);
      if (r.status === 401 && r.body?.error?.code !== 'unauthorized') failures.push(`${method} ${p} as ${c}: 401 without code unauthorized`);
      if (r.status === 404 && r.body?.error?.code !== 'not_found') failures.push(`${method} ${p} as ${c}: 404 without code not_found`);
      if (r.status === 403 && r.body?.error?.code !== 'forbidden') failures.push(`${method} ${p} as ${c}: 403 without code forbidden`);
    }
  }
  // adding and removing members: anyone in the group adds; the owner removes anyone, a member only itself
  for (const c of CALLERS) {
    const r = await api(srv, 'POST', `/v1/channels/${w.group}/members`, { token: w.tokens[c], body: { user_id: extra[c].user.id } });
    const want = { ...UNAUTH, stranger: 403, removed: 403, member: 200, owner: 200 }[c];
    if (r.status !== want) failures.push(`add a member as ${c}: ${r.status}, expected ${want}`);
  }
  for (const c of CALLERS) {
    const victim = c === 'owner' ? extra.member : extra.owner;   // someone else's addition
    const r = await api(srv, 'DELETE', `/v1/channels/${w.group}/members/${victim.user.id}`, { token: w.tokens[c] });
    const want = { ...UNAUTH, stranger: 403, removed: 403, member: 403, owner: 204 }[c];
    if (r.status !== want) failures.push(`remove another member as ${c}: ${r.status}, expected ${want}`);
  }
  // push subscriptions: a caller's own only
  const sub = await api(srv, 'POST', '/v1/push/subscriptions', { token: w.owner.token, body: { kind: 'webhook', url: 'http://127.0.0.1:9/x' } });
  assert.equal(sub.status, 201, show(sub));
  for (const c of CALLERS) {
    if (c === 'owner') continue;
    const r = await api(srv, 'DELETE', `/v1/push/subscriptions/${sub.body.subscription.id}`, { token: w.tokens[c] });
    const want = { ...UNAUTH, stranger: 404, removed: 404, member: 404 }[c];
    if (r.status !== want) failures.push(`delete the owner's push subscription as ${c}: ${r.status}, expected ${want}`);
  }
  for (const c of ['anon', 'bad', 'out']) {
    const r = await api(srv, 'POST', '/v1/push/subscriptions', { token: w.tokens[c], body: { kind: 'webhook', url: 'http://127.0.0.1:9/y' } });
    if (r.status !== 401) failures.push(`subscribe as ${c}: ${r.status}, expected 401`);
    const l = await api(srv, 'DELETE', '/v1/sessions/current', { token: w.tokens[c] });
    if (l.status !== 401) failures.push(`logout as ${c}: ${l.status}, expected 401`);
  }
  // public: no token needed
  for (const p of ['/healthz', '/v1/discovery', '/v1/push/vapid', '/metrics', '/']) {
    const r = await api(srv, 'GET', p);
    if (r.status !== 200) failures.push(`GET ${p} without a token: ${r.status}, expected 200`);
  }
  assert.deepEqual(failures, [], `\n${failures.join('\n')}`);

  // what the refused callers tried left no trace: the group's history has only the member's and
  // the owner's writes (and the owner's rename, adds and removal), none by a refused caller
  const after = await fullHistory(srv, w.owner.token, w.group);
  const refusedIds = new Set([w.stranger.user.id, w.removed.user.id]);
  for (const m of after.slice(before.length)) assert.ok(!refusedIds.has(m.from), `no message by a refused caller: ${JSON.stringify(m)}`);
  const ch = await api(srv, 'GET', `/v1/channels/${w.group}`, { token: w.owner.token });
  assert.equal(ch.body.channel.name, 'renamed', 'only the owner renamed it');
  assert.ok(!ch.body.channel.members.includes(w.stranger.user.id) && !ch.body.channel.members.includes(w.removed.user.id));
}));

test('WebSocket: every op x every kind of caller', T, () => withServer({}, async (srv) => {
  const w = await world(srv);
  // no valid token: the socket never gets past auth
  for (const c of ['anon', 'bad', 'out']) {
    const s = await openWs(srv, { label: c });
    if (c === 'anon') s.send({ op: 'send', channel: w.group, text: 'x', cmid: 'az-anon', rid: 'r' });
    else s.send({ op: 'auth', token: w.tokens[c], rid: 'r' });
    const e = await s.waitFor((f) => f.op === 'error');
    assert.equal(e.code, 'unauthorized', `${c}: ${JSON.stringify(e)}`);
    assert.equal((await s.closed).code, 1008, `${c}: closed with 1008`);
  }
  const before = await fullHistory(srv, w.owner.token, w.group);
  const failures = [];
  const sockets = {};
  for (const c of ['stranger', 'removed', 'member', 'owner']) sockets[c] = await connectWs(srv, { token: w.tokens[c], label: c });
  const ops = [
    [(c) => ({ op: 'send', channel: w.group, text: `by ${c}`, cmid: `azw-${c}` }), 'ack'],
    [() => ({ op: 'history', channel: w.group }), 'batch'],
    [() => ({ op: 'read', channel: w.group, seq: 1 }), null],
    [() => ({ op: 'typing', channel: w.group }), null],
    [(c) => ({ op: 'send', channel: w.direct, text: `by ${c}`, cmid: `azwd-${c}` }), 'ack'],
    [() => ({ op: 'history', channel: w.direct }), 'batch'],
  ];
  let k = 0;
  for (const [make, okOp] of ops) {
    for (const c of ['stranger', 'removed', 'member', 'owner']) {
      const req = make(c);
      const where = req.channel === w.group ? 'group' : 'direct';
      const allowed = c === 'owner' || c === 'member';
      const rid = `az${k++}`;
      let f;
      if (okOp === null) {
        // read and typing answer nothing when they succeed: a round trip shows whether an error came
        // (they go through the storage thread: an hb round trip is no barrier, so wait a while)
        sockets[c].send({ ...req, rid });
        f = await sockets[c].waitFor((x) => x.rid === rid, { timeoutMs: allowed ? 500 : ms(5000) })
          .catch(() => ({ op: '(nothing)' }));
      } else {
        f = await sockets[c].request({ ...req, rid });
      }
      if (allowed) {
        if (f.op !== (okOp ?? '(nothing)')) failures.push(`${req.op} on ${where} as ${c}: ${JSON.stringify(f)}, expected ${okOp ?? 'no answer'}`);
      } else if (f.op !== 'error' || f.code !== 'forbidden') {
        failures.push(`${req.op} on ${where} as ${c}: ${JSON.stringify(f)}, expected error forbidden`);
      }
    }
  }
  // sync and presence are the caller's own: always answered
  for (const c of ['stranger', 'removed', 'member', 'owner']) {
    const s = await sockets[c].request({ op: 'sync', after: 0 });
    if (s.op !== 'batch') failures.push(`sync as ${c}: ${JSON.stringify(s)}`);
    const p = await sockets[c].request({ op: 'presence', users: [w.owner.user.id] });
    if (p.op !== 'presence') failures.push(`presence as ${c}: ${JSON.stringify(p)}`);
    if (c !== 'owner' && p.presence?.length) failures.push(`presence of the owner as ${c} (no friend): ${JSON.stringify(p)}`);
  }
  // edit and delete of the member's message (sent above): author edits, owner deletes; others learn nothing
  const target = (await sockets.member.request({ op: 'history', channel: w.group })).messages.find((m) => m.cmid === 'azw-member').id;
  const changes = [
    ['stranger', { op: 'edit', id: target, text: 'x' }, 'not_found'], ['removed', { op: 'edit', id: target, text: 'x' }, 'not_found'],
    ['owner', { op: 'edit', id: target, text: 'x' }, 'forbidden'], ['member', { op: 'edit', id: target, text: 'edited' }, 'ack'],
    ['stranger', { op: 'delete', id: target }, 'not_found'], ['removed', { op: 'delete', id: target }, 'not_found'],
    ['owner', { op: 'delete', id: target }, 'ack'], ['member', { op: 'delete', id: target }, 'not_found'],
  ];
  for (const [c, req, want] of changes) {
    const f = await sockets[c].request(req);
    if ((want === 'ack' ? f.op : f.code) !== want) failures.push(`${req.op} as ${c}: ${JSON.stringify(f)}, expected ${want}`);
  }
  for (const s of Object.values(sockets)) s.terminate();
  assert.deepEqual(failures, [], `\n${failures.join('\n')}`);
  const after = await fullHistory(srv, w.owner.token, w.group);
  assert.deepEqual(after.slice(before.length).map((m) => m.from).sort(), [w.member.user.id, w.member.user.id, w.owner.user.id, w.owner.user.id].sort(),
    'the group got exactly the member\'s and the owner\'s message, the member\'s edit and the owner\'s delete');
}));
