// apischema.mjs — the API reference as validators: docs/openapi.json (HTTP) and
// docs/asyncapi.json (WebSocket) compiled with Ajv (JSON Schema 2020-12, what OpenAPI 3.1 uses;
// the AsyncAPI schemas keep to the keywords both drafts share), plus the server's own list of
// routes read from src/api/api.c's routes[] table.
//
//   const v = loadApi();
//   v.checkHttp({method, path, status, ctype, body}) -> [problems]   (path may carry a query)
//   v.checkFrame('in' | 'out', frame)                -> [problems]   ('in': server -> client)
//   routerRoutes() -> [{method, path, auth}]
//
// A problem is a string; [] means the record conforms. Unknown routes, undocumented statuses,
// unknown ops and any schema mismatch are problems.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..', '..');

export function readDoc(name) {
  return JSON.parse(fs.readFileSync(path.join(REPO, 'docs', name), 'utf8'));
}

/** src/api/api.c's routes[]: [{method: 'GET', path: '/v1/users/{id}', auth: true}] */
export function routerRoutes() {
  const src = fs.readFileSync(path.join(REPO, 'src', 'api', 'api.c'), 'utf8');
  const table = src.slice(src.indexOf('static const api_route routes[]'));
  const body = table.slice(0, table.indexOf('};'));
  return [...body.matchAll(/\{\s*HTTP_([A-Z]+),\s*"([^"]+)",\s*([01]),\s*\w+\s*\}/g)]
    .map((m) => ({ method: m[1], path: m[2], auth: m[3] === '1' }));
}

/** a path template's shape: every {param} the same, so /a/{id} and /a/{user_id} compare equal */
export const shape = (p) => p.replace(/\{[^}]+\}/g, '{}');

// Rewrites a document's "#/components/schemas/X" references to "<id>#/$defs/X", so the schemas
// compile without the rest of the document (which is not a schema).
function defsOf(doc, id) {
  const json = JSON.stringify(doc.components.schemas).replaceAll('"#/components/schemas/', `"${id}#/$defs/`);
  return { $id: id, $defs: JSON.parse(json) };
}
const resolveRef = (doc, x) => (x && x.$ref ? x.$ref.slice(2).split('/').reduce((o, k) => o[k], doc) : x);

export function loadApi() {
  const openapi = readDoc('openapi.json');
  const asyncapi = readDoc('asyncapi.json');
  const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false });
  addFormats(ajv);
  ajv.addVocabulary(['example', 'discriminator', 'externalDocs', 'xml']);
  ajv.addSchema(defsOf(openapi, 'openapi'));
  ajv.addSchema(defsOf(asyncapi, 'asyncapi'));
  const compile = (schema, docId) => ajv.compile(JSON.parse(JSON.stringify(schema).replaceAll('"#/components/schemas/', `"${docId}#/$defs/`)));

  const errorBody = compile({ $ref: '#/components/schemas/Error' }, 'openapi');
  // HTTP: every documented operation, its path as a regular expression and its responses.
  const ops = [];
  for (const [p, item] of Object.entries(openapi.paths)) {
    const re = new RegExp(`^${p.replace(/[.]/g, '\\.').replace(/\{[^}]+\}/g, '[^/]+')}$`);
    for (const [m, op] of Object.entries(item)) {
      if (!['get', 'put', 'post', 'delete', 'patch', 'head', 'options'].includes(m)) continue;
      const responses = {};
      for (const [status, r0] of Object.entries(op.responses || {})) {
        const r = resolveRef(openapi, r0);
        const json = r.content?.['application/json']?.schema;
        responses[status] = { content: r.content ? Object.keys(r.content) : [], validate: json ? compile(json, 'openapi') : null };
      }
      ops.push({ method: m.toUpperCase(), path: p, re, responses });
    }
  }
  // Literal paths first: /v1/sessions/current before /v1/sessions/{id}.
  ops.sort((a, b) => (a.path.includes('{') ? 1 : 0) - (b.path.includes('{') ? 1 : 0));

  function findOp(method, p) {
    const m = method === 'HEAD' ? 'GET' : method;
    return ops.find((o) => o.method === m && o.re.test(p)) || null;
  }

  function checkHttp(r) {
    const where = `${r.method} ${r.path} -> ${r.status}`;
    const p = r.path.split('?')[0];
    // the web client's files are not the API (static.c): any path outside /v1 but these two
    if (!p.startsWith('/v1/') && p !== '/healthz' && p !== '/metrics') return [];
    const op = findOp(r.method, p);
    if (!op) {
      // a CORS preflight of a documented path (--cors-origin)
      if (r.method === 'OPTIONS' && r.status === 204 && ops.some((o) => o.re.test(p))) return [];
      // a documented path asked with another method: 405 (with Allow) is the documented answer
      if (r.status === 405 && ops.some((o) => o.re.test(p))) return [];
      if (r.status === 404 && !ops.some((o) => o.re.test(p))) return [];   // no such endpoint: not a route
      return [`${where}: no documented operation for ${r.method} ${p}`];
    }
    const resp = op.responses[String(r.status)] || op.responses.default;
    if (!resp) {
      // answers any endpoint may give whatever it documents (408, 413, 431 from the transport,
      // 429 and 503 under load, 500), each with the contract's error body
      if (![400, 408, 413, 429, 431, 500, 503].includes(r.status)) {
        return [`${where}: status ${r.status} is not documented for ${op.method} ${op.path} (documented: ${Object.keys(op.responses).join(', ')})`];
      }
      if (r.method === 'HEAD' || errorBody(r.body)) return [];
      return [`${where}: not the contract's error body: ${ajv.errorsText(errorBody.errors)}`];
    }
    if (r.method === 'HEAD' || !resp.validate) return [];
    if (!/^application\/json/.test(r.ctype || '')) return [`${where}: Content-Type ${r.ctype}, documented application/json`];
    if (resp.validate(r.body)) return [];
    return [`${where}: the body does not match ${op.method} ${op.path}'s ${r.status} schema: ${ajv.errorsText(resp.validate.errors)}; body ${JSON.stringify(r.body).slice(0, 400)}`];
  }

  // WebSocket: the messages of the channel, by direction and op.
  const byOp = { out: new Map(), in: new Map() };
  for (const [name, msg] of Object.entries(asyncapi.components.messages)) {
    const dir = name.startsWith('client.') ? 'out' : 'in';
    byOp[dir].set(msg.name, compile(msg.payload, 'asyncapi'));
  }
  function checkFrame(dir, f) {
    const what = dir === 'in' ? 'server -> client' : 'client -> server';
    if (!f || typeof f !== 'object' || Array.isArray(f)) return [`${what} frame is not a JSON object: ${JSON.stringify(f).slice(0, 200)}`];
    const v = byOp[dir].get(f.op);
    if (!v) return [`${what} frame with an undocumented op ${JSON.stringify(f.op)}: ${JSON.stringify(f).slice(0, 200)}`];
    if (v(f)) return [];
    return [`${what} ${f.op} frame does not match its schema: ${ajv.errorsText(v.errors)}; frame ${JSON.stringify(f).slice(0, 400)}`];
  }

  return { openapi, asyncapi, ops, findOp, checkHttp, checkFrame, ajv };
}
