#!/usr/bin/env node
// apidoc.mjs — renders the API reference, docs/openapi.json (HTTP) and docs/asyncapi.json
// (WebSocket), into readable Markdown: docs/API.md. No dependencies, no network.
//
//   node tools/apidoc.mjs           write docs/API.md
//   node tools/apidoc.mjs --check   exit 1 if docs/API.md is not what the documents render to
//
// tests/e2e/apidocs.test.mjs fails when docs/API.md is out of date.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const API_MD = path.join(REPO, 'docs', 'API.md');

const anchor = (s) => s.toLowerCase().replace(/[^a-z0-9 -]/g, '').trim().replace(/ /g, '-');
const cell = (s) => String(s ?? '').replace(/\|/g, '\\|').replace(/\n+/g, ' ');
const refName = (r) => r.split('/').pop();

/** a one-line summary of a schema: types, shapes of objects and arrays, enums, limits */
export function summarize(s, depth = 0) {
  if (!s || typeof s !== 'object') return 'any';
  if (s.$ref) return `[${refName(s.$ref)}](#${anchor(`schema ${refName(s.$ref)}`)})`;
  if ('const' in s) return `\`${JSON.stringify(s.const)}\``;
  if (s.enum) return s.enum.map((v) => `\`${JSON.stringify(v)}\``).join(' \\| ');
  if (s.oneOf || s.anyOf) {
    const alts = (s.oneOf || s.anyOf).filter((x) => !(x.required && Object.keys(x).length === 1));
    if (alts.length) return alts.map((x) => summarize(x, depth)).join(' or ');
  }
  const lim = [];
  if (s.minLength !== undefined || s.maxLength !== undefined) lim.push(`${s.minLength ?? 0}–${s.maxLength ?? '∞'} chars`);
  if (s.minimum !== undefined || s.maximum !== undefined) lim.push(`${s.minimum ?? '−∞'}–${s.maximum ?? '∞'}`);
  if (s.minItems !== undefined || s.maxItems !== undefined) lim.push(`${s.minItems ?? 0}–${s.maxItems ?? '∞'} items`);
  if (s.pattern) lim.push(`\`${s.pattern}\``);
  if (s.format) lim.push(s.format);
  const l = lim.length ? ` (${lim.join(', ')})` : '';
  if (s.type === 'array') return `[${summarize(s.items, depth + 1)}]${l}`;
  if (s.type === 'object' || s.properties) {
    const props = Object.entries(s.properties || {});
    if (!props.length) return 'object';
    if (depth > 1) return 'object';
    const req = new Set(s.required || []);
    return `{${props.map(([k, v]) => `${k}${req.has(k) ? '' : '?'}: ${summarize(v, depth + 1)}`).join(', ')}}`;
  }
  return `${s.type || 'any'}${l}`;
}

/** a table of an object schema's fields */
function fields(s, skip = []) {
  const props = Object.entries(s.properties || {}).filter(([k]) => !skip.includes(k));
  if (!props.length) return ['(no fields)', ''];
  const req = new Set(s.required || []);
  const out = ['| field | type | required | description |', '| --- | --- | --- | --- |'];
  for (const [k, v] of props) out.push(`| \`${k}\` | ${cell(summarize(v, 1))} | ${req.has(k) ? 'yes' : ''} | ${cell(v.description)} |`);
  const notes = [];
  for (const x of s.oneOf || []) if (x.required) notes.push(x.required.map((k) => `\`${k}\``).join(' + '));
  if (notes.length) out.push('', `Exactly one of: ${notes.join(', ')}.`);
  if (s.additionalProperties === false) out.push('', 'No other fields (closed).');
  out.push('');
  return out;
}

const resolve = (doc, x) => (x && x.$ref ? x.$ref.slice(2).split('/').reduce((o, k) => o[k], doc) : x);

function renderHttp(oa) {
  const out = ['## HTTP', '', oa.info.description, ''];
  const byTag = new Map();
  for (const [p, item] of Object.entries(oa.paths)) {
    for (const [m, op] of Object.entries(item)) {
      const tag = (op.tags || ['other'])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push({ p, m: m.toUpperCase(), op });
    }
  }
  out.push('| endpoint | token | summary |', '| --- | --- | --- |');
  for (const [, ops] of byTag) {
    for (const { p, m, op } of ops) {
      const pub = Array.isArray(op.security) && op.security.length === 0;
      out.push(`| [\`${m} ${p}\`](#${anchor(`${m} ${p}`)}) | ${pub ? '' : 'yes'} | ${cell(op.summary)} |`);
    }
  }
  out.push('');
  for (const [tag, ops] of byTag) {
    out.push(`### ${tag[0].toUpperCase()}${tag.slice(1)}`, '');
    for (const { p, m, op } of ops) {
      const pub = Array.isArray(op.security) && op.security.length === 0;
      out.push(`#### ${m} ${p}`, '', `${op.summary}.${pub ? ' No token.' : ' Takes `Authorization: Bearer <token>`.'}`, '');
      if (op.description) out.push(op.description, '');
      const params = (op.parameters || []).map((x) => resolve(oa, x));
      if (params.length) {
        out.push('| parameter | in | required | type | description |', '| --- | --- | --- | --- | --- |');
        for (const x of params) out.push(`| \`${x.name}\` | ${x.in} | ${x.required ? 'yes' : ''} | ${cell(summarize(x.schema))} | ${cell(x.description)} |`);
        out.push('');
      }
      const body = resolve(oa, op.requestBody);
      if (body?.content) {
        for (const [ct, c] of Object.entries(body.content)) out.push(`Request body (\`${ct}\`${body.required ? ', required' : ''}): ${summarize(c.schema)}${body.description ? `: ${body.description}` : ''}`, '');
      }
      out.push('| status | answer |', '| --- | --- |');
      for (const [st, r0] of Object.entries(op.responses || {})) {
        const r = resolve(oa, r0);
        const c = r.content ? Object.entries(r.content).map(([ct, x]) => (ct === 'application/json' ? summarize(x.schema) : `\`${ct}\``)).join(', ') : '';
        out.push(`| ${st} | ${cell(r.description)}${c ? `: ${cell(c)}` : ''} |`);
      }
      out.push('');
    }
  }
  out.push('### Schemas (HTTP)', '');
  for (const [name, s] of Object.entries(oa.components.schemas)) {
    out.push(`#### Schema ${name}`, '');
    if (s.description) out.push(s.description, '');
    if (s.type === 'object') out.push(...fields(s));
    else out.push(summarize(s), '');
  }
  return out;
}

function renderWs(aa) {
  const out = ['## WebSocket', '', aa.info.description, ''];
  const msgs = aa.components.messages;
  const schemaOf = (m) => resolve(aa, m.payload);
  const client = Object.entries(aa.operations).filter(([, o]) => o.action === 'receive');
  const server = Object.entries(msgs).filter(([k]) => k.startsWith('server.'));
  const link = (ref) => { const k = refName(ref); return `[\`${msgs[k].name}\`](#${anchor(msgs[k].title)})`; };
  out.push('| client → server | answered with |', '| --- | --- |');
  for (const [, o] of client) out.push(`| [\`${o.title}\`](#${anchor(msgs[refName(o.messages[0].$ref)].title)}) | ${(o.reply?.messages || []).map((r) => link(r.$ref)).join(', ') || '—'} |`);
  out.push('', 'Server → client, unasked: ' + Object.values(aa.operations).filter((o) => o.action === 'send').map((o) => link(o.messages[0].$ref)).join(', ') + '.', '');
  out.push('### Client → server', '');
  for (const [, o] of client) {
    const m = msgs[refName(o.messages[0].$ref)];
    const s = schemaOf(m);
    out.push(`#### ${m.title}`, '');
    if (s.description) out.push(s.description, '');
    out.push(...fields(s, ['op']));
    if (o.reply) out.push(`Answered with: ${o.reply.messages.map((r) => link(r.$ref)).join(', ')}.`, '');
  }
  out.push('### Server → client', '');
  for (const [, m] of server) {
    const s = schemaOf(m);
    out.push(`#### ${m.title}`, '');
    if (s.description) out.push(s.description, '');
    out.push(...fields(s, ['op']));
  }
  out.push('### Schemas (WebSocket)', '', 'The objects frames carry; the same as the HTTP schemas of the same name.', '');
  for (const [name, s] of Object.entries(aa.components.schemas)) {
    if (!['Id', 'User', 'Channel', 'Presence', 'Message', 'Attachment', 'ErrorCode'].includes(name)) continue;
    out.push(`- **${name}**: ${summarize(s)}`);
  }
  out.push('');
  return out;
}

/** docs/API.md's text for the two documents */
export function render(openapi, asyncapi) {
  const out = [
    '# iyagi API reference',
    '',
    '<!-- generated by tools/apidoc.mjs from docs/openapi.json and docs/asyncapi.json: do not edit; run `node tools/apidoc.mjs` -->',
    '',
    `The HTTP API (${openapi.info.title}, OpenAPI ${openapi.openapi}: [openapi.json](openapi.json), served as \`GET /v1/openapi.json\`)`,
    `and the WebSocket protocol (${asyncapi.info.title}, AsyncAPI ${asyncapi.asyncapi}: [asyncapi.json](asyncapi.json), served as`,
    '`GET /v1/asyncapi.json`). The contract is shared/PROTOCOL.md; what the server adds is in',
    '[PROTOCOL-ADDITIONS.md](PROTOCOL-ADDITIONS.md). Types: `?` marks an optional field; ids are',
    'decimal strings; [Id](#schema-id) and the other schemas are at the end of each part.',
    '',
    '- [HTTP](#http)',
    '- [WebSocket](#websocket)',
    '',
    ...renderHttp(openapi),
    ...renderWs(asyncapi),
  ];
  return `${out.join('\n').replace(/\n{3,}/g, '\n\n').trimEnd()}\n`;
}

export function renderRepo() {
  const read = (n) => JSON.parse(fs.readFileSync(path.join(REPO, 'docs', n), 'utf8'));
  return render(read('openapi.json'), read('asyncapi.json'));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const text = renderRepo();
  if (process.argv.includes('--check')) {
    const have = fs.existsSync(API_MD) ? fs.readFileSync(API_MD, 'utf8') : '';
    if (have !== text) {
      process.stderr.write('docs/API.md is out of date with docs/openapi.json and docs/asyncapi.json: run node tools/apidoc.mjs\n');
      process.exit(1);
    }
  } else {
    fs.writeFileSync(API_MD, text);
  }
}
