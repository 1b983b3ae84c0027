// openapi.test.mjs — docs/openapi.json (the HTTP API reference) against the running server:
// every documented operation exists (an authenticated one answers 401 without a token, a public
// one answers one of its documented statuses), the router's table of routes (src/api/api.c) and
// the document list the same operations with the same need of a token,
// and message objects carry no field the reference does not name.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, api, show, newUser, ms } from './lib/harness.mjs';
import { routerRoutes, shape } from './lib/apischema.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const spec = JSON.parse(fs.readFileSync(path.join(REPO, 'docs', 'openapi.json'), 'utf8'));
const T = { timeout: ms(60000) };
let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.cleanup(); });

/** a concrete path for a documented one: ids 1, a session id, an emoji */
const concrete = (p) => p.replace('/sessions/{id}', '/sessions/0123456789abcdef').replace('{emoji}', encodeURIComponent('👍'))
  .replace(/\{[a-z_]+\}/g, '1');
/** a value for a schema: the smallest one that passes the server's checks of shape */
function sample(s) {
  if (s.$ref) return sample(spec.components.schemas[s.$ref.split('/').pop()]);
  if (s.oneOf) return sample(s.oneOf[0]);
  if ('const' in s) return s.const;
  if (s.type === 'object') return Object.fromEntries((s.required || []).map((k) => [k, sample(s.properties[k])]));
  if (s.type === 'array') return [];
  if (s.type === 'integer') return 1;
  if (s.format === 'uri') return 'https://198.51.100.7/hook';   // a public address (TEST-NET-2), no DNS
  if (s.pattern && s.pattern.startsWith('^[1-9]')) return '1';
  return 'x'.repeat(Math.max(s.minLength || 1, 3));
}
const operations = Object.entries(spec.paths).flatMap(([p, ops]) => Object.entries(ops).map(([m, o]) => ({ p, m: m.toUpperCase(), o })));

test('every documented operation is served: 401 without a token where one is needed, else a documented status', T, async () => {
  const failures = [];
  for (const { p, m, o } of operations) {
    const publicOp = Array.isArray(o.security) && o.security.length === 0;
    // a well-shaped request, so that what answers is the token check, not the body's
    const schema = o.requestBody?.content?.['application/json']?.schema;
    const body = schema ? sample(schema) : undefined;
    const query = (o.parameters || []).filter((x) => x.in === 'query' && x.required).map((x) => `${x.name}=1`).join('&');
    const r = await api(srv, m, concrete(p) + (query ? `?${query}` : ''), { body });
    const documented = Object.keys(o.responses).map(Number);
    if (!publicOp) {
      if (r.status !== 401 || r.body?.error?.code !== 'unauthorized') failures.push(`${m} ${p}: ${r.status} without a token (${r.text.slice(0, 80)}), expected 401 unauthorized`);
    } else if (!documented.includes(r.status)) {
      failures.push(`${m} ${p}: ${r.status}, documented ${documented.join('/')}`);
    }
    if (!documented.includes(r.status)) failures.push(`${m} ${p}: ${r.status} is not among its documented responses`);
  }
  assert.deepEqual(failures, [], `\n${failures.join('\n')}`);
  assert.ok(operations.length >= 40, `${operations.length} operations documented`);
});

test('every documented path answers HEAD like GET, and its other methods 405 with the documented methods in Allow', T, async () => {
  const failures = [];
  const paths = Object.entries(spec.paths);
  for (const [p, item] of paths) {
    const methods = Object.keys(item).map((m) => m.toUpperCase());
    const allow = methods.flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m])).sort();
    if (methods.includes('GET')) {
      const g = await api(srv, 'GET', concrete(p));
      const h = await api(srv, 'HEAD', concrete(p));
      if (h.status !== g.status || h.text !== '') failures.push(`HEAD ${p}: ${h.status} (GET ${g.status}), body ${h.text.length} bytes`);
    }
    const other = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].find((m) => !methods.includes(m));
    const r = await api(srv, other, concrete(p));
    const got = (r.headers.get('allow') || '').split(', ').sort();
    if (r.status !== 405 || JSON.stringify(got) !== JSON.stringify(allow) || r.body?.error?.code !== 'bad_request') {
      failures.push(`${other} ${p}: ${r.status} Allow: ${r.headers.get('allow')} (documented: ${allow.join(', ')})`);
    }
  }
  assert.deepEqual(failures, [], `\n${failures.join('\n')}`);
});

test('the router\'s table and the document name the same operations, with the same need of a token', T, () => {
  // src/api/api.c dispatches from routes[]: what it lists is what the server has
  const routes = routerRoutes();
  assert.ok(routes.length >= 45, `found ${routes.length} routes in src/api/api.c`);
  const served = new Map(routes.map((r) => [`${r.method} ${shape(r.path)}`, r]));
  const documented = new Map(operations.map((o) => [`${o.m} ${shape(o.p)}`, o]));
  const undocumented = [...served.keys()].filter((k) => !documented.has(k));
  const unserved = [...documented.keys()].filter((k) => !served.has(k));
  assert.deepEqual(undocumented, [], `routes of src/api/api.c not in docs/openapi.json: ${undocumented.join(', ')}`);
  assert.deepEqual(unserved, [], `operations of docs/openapi.json that src/api/api.c does not route: ${unserved.join(', ')}`);
  const security = [...served].filter(([k, r]) => {
    const o = documented.get(k).o;
    const isPublic = Array.isArray(o.security) && o.security.length === 0;
    return isPublic === r.auth;
  }).map(([k]) => k);
  assert.deepEqual(security, [], `operations whose security differs between the router and the document: ${security.join(', ')}`);
});

test('message objects carry only documented fields (a reply, edited, with reactions, a deleted one, events)', T, async () => {
  const [a, b] = [await newUser(srv, 'oaa'), await newUser(srv, 'oab')];
  const m1 = await api(srv, 'POST', `/v1/users/${b.user.id}/messages`, { token: a.token, body: { text: `hi @${b.username}`, cmid: 'o1' } });
  assert.equal(m1.status, 201, show(m1));
  const ch = m1.body.message.channel;
  const m2 = await api(srv, 'POST', `/v1/channels/${ch}/messages`, { token: b.token, body: { text: 'hello', cmid: 'o2', reply_to: m1.body.message.id } });
  assert.equal((await api(srv, 'PATCH', `/v1/messages/${m2.body.message.id}`, { token: b.token, body: { text: 'hello!' } })).status, 200);
  assert.equal((await api(srv, 'PUT', `/v1/messages/${m2.body.message.id}/reactions/ok`, { token: a.token })).status, 204);
  const m3 = await api(srv, 'POST', `/v1/channels/${ch}/messages`, { token: a.token, body: { text: 'oops', cmid: 'o3' } });
  assert.equal((await api(srv, 'DELETE', `/v1/messages/${m3.body.message.id}`, { token: a.token })).status, 204);
  const h = await api(srv, 'GET', `/v1/channels/${ch}/messages?after_seq=0`, { token: a.token });
  const s = await api(srv, 'GET', '/v1/sync?after=0', { token: b.token });
  const schema = spec.components.schemas.Message;
  const known = new Set(Object.keys(schema.properties));
  const seen = new Set();
  for (const m of [...h.body.messages, ...s.body.messages, m1.body.message, m2.body.message]) {
    for (const k of Object.keys(m)) { seen.add(k); assert.ok(known.has(k), `field ${k} of ${JSON.stringify(m)} is not in the Message schema`); }
    for (const k of schema.required) assert.ok(k in m, `required ${k} missing in ${JSON.stringify(m)}`);
  }
  for (const k of ['reply_to', 'reply_seq', 'edited_at', 'deleted', 'reactions', 'event', 'target', 'emoji', 'on', 'mentions', 'pos', 'cmid']) {
    assert.ok(seen.has(k), `the test saw a message with ${k}`);
  }
});
