// apischema.test.mjs — what the server really says conforms to its reference: a slice of the
// e2e suite runs with IYAGI_E2E_RECORD on (lib/harness.mjs records every HTTP answer of api()
// and every WebSocket frame in and out), then every record is validated with Ajv against
// docs/openapi.json (by method and path: an undocumented route or status fails) and
// docs/asyncapi.json (by direction and op: an undocumented op fails). A client frame that does
// not match its op's schema must have been refused (an error frame with its rid): the tests
// send malformed requests on purpose, and the server must refuse what the schema refuses.
//
// IYAGI_E2E_RECORD_CHECK=FILE validates a recording made elsewhere (a whole suite run with
// IYAGI_E2E_RECORD=FILE) instead of running the slice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadApi } from './lib/apischema.mjs';
import { ms } from './lib/harness.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
// Fast files that between them use every endpoint and op (openapi.test.mjs alone calls every
// documented operation) without killing servers or filling disks.
const SLICE = ['openapi.test.mjs', 'features.test.mjs', 'receipts.test.mjs', 'social.test.mjs', 'groups.test.mjs',
  'search.test.mjs', 'attachments.test.mjs', 'httpdetails.test.mjs'];
const api = loadApi();

/** every problem of a recording: [strings], and counts of what was checked */
export function checkRecording(lines) {
  const problems = [];
  const seen = { http: 0, in: 0, out: 0, refused: 0, raw: 0, ops: new Set(), routes: new Set() };
  const recs = lines.map((l) => JSON.parse(l));
  // per socket: the rids answered with an error, and whether any rid-less error came
  const errors = new Map();
  for (const r of recs) {
    if (r.kind !== 'ws' || r.dir !== 'in' || r.frame?.op !== 'error') continue;
    const e = errors.get(r.sock) || { rids: new Set(), bare: 0 };
    if (typeof r.frame.rid === 'string') e.rids.add(r.frame.rid); else e.bare++;
    errors.set(r.sock, e);
  }
  for (const r of recs) {
    if (r.kind === 'http') {
      seen.http++;
      const op = api.findOp(r.method, r.path.split('?')[0]);
      if (op) seen.routes.add(`${op.method} ${op.path}`);
      for (const p of api.checkHttp(r)) problems.push(`[${r.file}] ${p}`);
    } else if (r.kind === 'ws' && r.dir === 'in') {
      seen.in++;
      if (r.frame?.op) seen.ops.add(`in ${r.frame.op}`);
      for (const p of api.checkFrame('in', r.frame)) problems.push(`[${r.file}] ${p}`);
    } else if (r.kind === 'ws' && r.dir === 'out') {
      seen.out++;
      if (r.frame && '__raw' in r.frame) { seen.raw++; continue; }   // bytes that are not JSON, sent on purpose
      const bad = api.checkFrame('out', r.frame);
      if (!bad.length) { seen.ops.add(`out ${r.frame.op}`); continue; }
      const e = errors.get(r.sock);
      const rid = r.frame?.rid;
      if (e && (typeof rid === 'string' ? e.rids.has(rid) : e.bare > 0)) { seen.refused++; continue; }
      for (const p of bad) problems.push(`[${r.file}] ${p} (and the server did not refuse it)`);
    } else {
      problems.push(`unknown record ${JSON.stringify(r).slice(0, 200)}`);
    }
  }
  return { problems, seen };
}

test('the validators catch what does not conform (a deliberately bad answer, frame, route, status)', () => {
  const msg = { id: '7', channel: '8', seq: 1, pos: 3, from: '9', text: 'hi', ts: 1700000000000 };
  const ok = { method: 'GET', path: '/v1/channels/8/messages?after_seq=0', status: 200, ctype: 'application/json', body: { messages: [msg] } };
  assert.deepEqual(api.checkHttp(ok), []);
  assert.equal(api.checkHttp({ ...ok, body: { messages: [{ ...msg, seq: '1' }] } }).length, 1, 'seq as a string is caught');
  assert.equal(api.checkHttp({ ...ok, body: { messages: [{ ...msg, colour: 'red' }] } }).length, 1, 'an undocumented field is caught');
  assert.equal(api.checkHttp({ ...ok, body: { messages: [{ ...msg, id: 7 }] } }).length, 1, 'an id as a number is caught');
  assert.equal(api.checkHttp({ ...ok, path: '/v1/channels/8/mesages' }).length, 1, 'an undocumented route is caught');
  assert.equal(api.checkHttp({ ...ok, status: 202 }).length, 1, 'an undocumented status is caught');
  assert.equal(api.checkHttp({ ...ok, status: 404, body: { error: { code: 'gone', message: 'x' } } }).length, 1, 'an error code outside the contract is caught');
  assert.equal(api.checkHttp({ ...ok, ctype: 'text/plain' }).length, 1, 'a JSON answer with another Content-Type is caught');
  assert.deepEqual(api.checkHttp({ method: 'HEAD', path: '/v1/me', status: 200, ctype: 'application/json', body: null }), []);
  assert.deepEqual(api.checkHttp({ method: 'PUT', path: '/v1/me', status: 405, ctype: 'application/json', body: { error: { code: 'bad_request', message: 'x' } } }), []);

  const frame = { op: 'msg', ...msg };
  assert.deepEqual(api.checkFrame('in', frame), []);
  assert.equal(api.checkFrame('in', { ...frame, ts: '1700000000000' }).length, 1, 'ts as a string is caught');
  assert.equal(api.checkFrame('in', { op: 'msg', ...msg, pos: undefined }).length, 1, 'a msg without pos is caught');
  assert.equal(api.checkFrame('in', { op: 'welcome' }).length, 1, 'an undocumented op is caught');
  assert.equal(api.checkFrame('in', { op: 'error', code: 'oops', message: 'x' }).length, 1, 'an error code outside the contract is caught');
  assert.equal(api.checkFrame('in', { op: 'ack', id: '1', channel: '2', seq: 1, pos: 1, ts: 1, extra: 1 }).length, 1, 'a field the contract does not name is caught');
  assert.deepEqual(api.checkFrame('out', { op: 'send', rid: 'r', channel: '8', text: 'hi', cmid: 'c1' }), []);
  assert.equal(api.checkFrame('out', { op: 'send', rid: 'r', text: 'hi' }).length, 1, 'a send without to or channel is caught');
  assert.equal(api.checkFrame('out', { op: 'sync', after: '3' }).length, 1, 'a sync with after as a string is caught');

  // a recording: a bad answer fails; a malformed client frame the server refused passes
  const lines = [
    { kind: 'http', file: 't', ...ok },
    { kind: 'ws', file: 't', sock: 's', dir: 'out', frame: { op: 'sync', rid: 'a', after: -1 } },
    { kind: 'ws', file: 't', sock: 's', dir: 'in', frame: { op: 'error', rid: 'a', code: 'bad_request', message: 'after' } },
  ].map((x) => JSON.stringify(x));
  assert.deepEqual(checkRecording(lines).problems, []);
  const bad = [...lines, JSON.stringify({ kind: 'ws', file: 't', sock: 's', dir: 'in', frame: { op: 'batch', rid: 'b', messages: [{ ...msg, seq: 'x' }] } })];
  assert.equal(checkRecording(bad).problems.length, 1);
  const unrefused = [...lines, JSON.stringify({ kind: 'ws', file: 't', sock: 's', dir: 'out', frame: { op: 'nope', rid: 'z' } })];
  assert.equal(checkRecording(unrefused).problems.length, 1);
});

test('every answer and frame of a run of the e2e tests conforms to docs/openapi.json and docs/asyncapi.json', { timeout: ms(900000) }, () => {
  let file = process.env.IYAGI_E2E_RECORD_CHECK;
  let tmp = null;
  if (!file) {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iyagi-rec-'));
    file = path.join(tmp, 'record.jsonl');
    // (without the runner's NODE_TEST_CONTEXT: the slice is a run of its own, not a child of this one)
    const { NODE_TEST_CONTEXT, ...env } = process.env;
    const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...SLICE], {
      cwd: HERE, env: { ...env, IYAGI_E2E_RECORD: file }, encoding: 'utf8', timeout: ms(850000), maxBuffer: 64 << 20,
    });
    assert.equal(r.status, 0, `the recorded slice failed:\n${(r.stdout || '').slice(-6000)}\n${(r.stderr || '').slice(-2000)}`);
  }
  const lines = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
  const { problems, seen } = checkRecording(lines);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  const uniq = [...new Set(problems)];
  assert.deepEqual(uniq.slice(0, 40), [], `${uniq.length} problems:\n${uniq.slice(0, 40).join('\n')}`);
  // the recording covered the reference (so a run that recorded nothing cannot pass)
  if (!process.env.IYAGI_E2E_RECORD_CHECK) {
    assert.ok(seen.http > 200 && seen.in > 200 && seen.out > 100, `records: ${JSON.stringify({ ...seen, ops: seen.ops.size, routes: seen.routes.size })}`);
    const inOps = Object.values(api.asyncapi.components.messages).filter((m, i) => Object.keys(api.asyncapi.components.messages)[i].startsWith('server.')).map((m) => `in ${m.name}`);
    const missing = inOps.filter((o) => !seen.ops.has(o));
    assert.deepEqual(missing, [], `server frames never seen in the slice: ${missing.join(', ')}`);
  }
  process.stdout.write(`# checked ${seen.http} HTTP answers (${seen.routes.size} operations), ${seen.in} frames in, ${seen.out} out (${seen.refused} malformed on purpose and refused, ${seen.raw} not JSON)\n`);
});
