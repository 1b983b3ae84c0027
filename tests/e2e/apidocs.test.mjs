// apidocs.test.mjs — the API reference cannot drift from itself or from the source:
// docs/API.md is what tools/apidoc.mjs renders from docs/openapi.json and docs/asyncapi.json;
// docs/asyncapi.json is valid against AsyncAPI 3.0.0's own JSON Schema;
// the objects both documents describe (User, Message, ...) are the same schemas; the WebSocket
// ops the codec parses (src/codec/proto.c's proto__ops) and the frames the server writes (every
// "op" it puts in a frame under src/) are exactly those docs/asyncapi.json documents.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { renderRepo, render, API_MD } from '../../tools/apidoc.mjs';
import { fileURLToPath } from 'node:url';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import { readDoc, REPO } from './lib/apischema.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

const openapi = readDoc('openapi.json');
const asyncapi = readDoc('asyncapi.json');

test('docs/API.md is up to date with docs/openapi.json and docs/asyncapi.json (node tools/apidoc.mjs)', () => {
  const have = fs.readFileSync(API_MD, 'utf8');
  assert.ok(have === renderRepo(), 'docs/API.md is out of date: run node tools/apidoc.mjs and commit docs/API.md');
  // and the rendering shows every endpoint and op, so a stale file cannot hide behind a lazy renderer
  for (const [p, item] of Object.entries(openapi.paths)) {
    for (const m of Object.keys(item)) assert.ok(have.includes(`#### ${m.toUpperCase()} ${p}\n`), `API.md has ${m.toUpperCase()} ${p}`);
  }
  for (const m of Object.values(asyncapi.components.messages)) assert.ok(have.includes(`#### ${m.title}\n`), `API.md has ${m.title}`);
  // a change to a document changes the rendering
  const changed = structuredClone(openapi);
  changed.paths['/v1/me'].get.summary = 'Something else';
  assert.notEqual(render(changed, asyncapi), have);
});

test('docs/asyncapi.json is a valid AsyncAPI 3.0.0 document (the specification\'s own JSON Schema, @asyncapi/specs)', () => {
  const meta = JSON.parse(fs.readFileSync(path.join(HERE, 'node_modules', '@asyncapi', 'specs', 'schemas', '3.0.0-without-$id.json'), 'utf8'));
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  const valid = ajv.compile(meta);
  assert.ok(valid(asyncapi), ajv.errorsText(valid.errors));
  // and it would notice a broken one
  const broken = structuredClone(asyncapi);
  broken.operations['client.send'].action = 'post';
  assert.equal(valid(broken), false);
});

test('the objects both documents describe are the same schemas', () => {
  for (const name of ['Id', 'User', 'Channel', 'Presence', 'Message', 'Attachment', 'ErrorCode']) {
    assert.deepEqual(asyncapi.components.schemas[name], openapi.components.schemas[name], `${name} differs between docs/asyncapi.json and docs/openapi.json`);
  }
});

test('the WebSocket ops of the source and of docs/asyncapi.json are the same, both ways', () => {
  const src = (f) => fs.readFileSync(path.join(REPO, f), 'utf8');
  const proto = src('src/codec/proto.c');
  const table = proto.slice(proto.indexOf('proto__ops[] = {'));
  const parsed = [...table.slice(0, table.indexOf('};')).matchAll(/\{\s*"([a-z_]+)",\s*P_/g)].map((m) => m[1]).sort();
  const client = Object.values(asyncapi.components.messages).filter((m, i) => Object.keys(asyncapi.components.messages)[i].startsWith('client.')).map((m) => m.name).sort();
  assert.ok(parsed.length >= 11, `found ${parsed.length} ops in proto.c`);
  assert.deepEqual(client, parsed, 'client -> server ops: docs/asyncapi.json vs src/codec/proto.c');

  // every op the server writes: frame_begin(&b, "op", ...) and literal {"op":"..." in C strings
  const walk = (d) => fs.readdirSync(path.join(REPO, d), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : e.name.endsWith('.c') ? [path.join(d, e.name)] : []));
  const files = walk('src');
  const written = new Set();
  for (const f of files) {
    const s = src(f);
    for (const m of s.matchAll(/frame_begin\([^,]+,\s*"([a-z_]+)"/g)) written.add(m[1]);
    for (const m of s.matchAll(/\{\\"op\\":\\"([a-z_]+)\\"/g)) written.add(m[1]);
  }
  const server = Object.values(asyncapi.components.messages).filter((m, i) => Object.keys(asyncapi.components.messages)[i].startsWith('server.')).map((m) => m.name).sort();
  assert.deepEqual(server, [...written].sort(), 'server -> client frames: docs/asyncapi.json vs the ops src/ writes');
});

test('every client op has an operation with its answers, every server frame one way or another', () => {
  const msgs = asyncapi.components.messages;
  const used = new Set();
  for (const [name, o] of Object.entries(asyncapi.operations)) {
    assert.ok(['send', 'receive'].includes(o.action), name);
    for (const r of [...o.messages, ...(o.reply?.messages || [])]) {
      const k = r.$ref.split('/').pop();
      assert.ok(asyncapi.channels.ws.messages[k], `${name}: ${r.$ref} resolves`);
      assert.ok(msgs[k], `${name}: ${k} is a message`);
      used.add(k);
    }
  }
  assert.deepEqual(Object.keys(msgs).filter((k) => !used.has(k)), [], 'messages no operation uses');
});
