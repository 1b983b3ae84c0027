#!/usr/bin/env node
// log-audit.mjs DIR — no secret reached a log.
//
// DIR is an end-to-end run's IYAGI_E2E_LOGDIR (tests/e2e/lib/harness.mjs):
// server-*.log (each server's stderr), access-*.log (each server's access
// log) and secrets-*.jsonl (every token, password and message text the
// test helpers sent or received, one {"kind","value"} per line). Fails,
// naming the file, the kind and the line, if any recorded value appears in
// any log: as it is, JSON-escaped, or as a text log line escapes it.
//
// One pass over each log: the secrets are indexed by a hash of their first
// K characters, and a rolling hash of the log's K-character windows looks
// them up (Rabin-Karp), so 100,000 secrets against 50 MB of logs is quick.
import fs from 'node:fs';
import path from 'node:path';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: log-audit.mjs IYAGI_E2E_LOGDIR');
  process.exit(2);
}
const K = 8;
const B = 257;

// iy_log_escape's form: control bytes and DEL as \xNN, the backslash doubled.
function textEscaped(s) {
  return s.replace(/[\\\x00-\x1f\x7f]/g, (c) => (c === '\\' ? '\\\\' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
}

function hash(s, from) {
  let h = 0;
  for (let i = 0; i < K; i++) h = (Math.imul(h, B) + s.charCodeAt(from + i)) | 0;
  return h;
}

const files = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
const secrets = new Map();   // hash of the first K chars -> [{value, kind}]
let nsecrets = 0;
for (const f of files.filter((x) => x.startsWith('secrets-'))) {
  for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) {
    if (!line) continue;
    const { kind, value } = JSON.parse(line);
    const forms = new Set([value, JSON.stringify(value).slice(1, -1), textEscaped(value)]);
    for (const v of forms) {
      if (v.length < K) continue;
      const h = hash(v, 0);
      if (!secrets.has(h)) secrets.set(h, []);
      secrets.get(h).push({ value: v, kind });
      nsecrets++;
    }
  }
}

let pow = 1;   // B^(K-1), to take the leaving character out of the rolling hash
for (let i = 1; i < K; i++) pow = Math.imul(pow, B);

const logs = files.filter((x) => x.endsWith('.log'));
let bytes = 0;
const found = [];
for (const f of logs) {
  const text = fs.readFileSync(path.join(dir, f), 'utf8');
  bytes += text.length;
  if (text.length < K || !secrets.size) continue;
  let h = hash(text, 0);
  for (let i = 0; ; i++) {
    const cands = secrets.get(h);
    if (cands) {
      for (const c of cands) {
        if (text.startsWith(c.value, i)) {
          const ls = text.lastIndexOf('\n', i) + 1;
          const le = text.indexOf('\n', i);
          found.push(`${f}: a ${c.kind} in: ${text.slice(ls, le < 0 ? undefined : le).slice(0, 300)}`);
        }
      }
    }
    if (i + K >= text.length) break;
    h = (Math.imul(h - Math.imul(text.charCodeAt(i), pow), B) + text.charCodeAt(i + K)) | 0;
  }
}

console.log(`log audit: ${nsecrets} recorded values against ${logs.length} logs (${(bytes / 1e6).toFixed(1)} MB)`);
if (!logs.length) {
  console.error(`log audit: no logs in ${dir} (was IYAGI_E2E_LOGDIR set for the end-to-end run?)`);
  process.exit(1);
}
if (found.length) {
  console.error(`log audit: ${found.length} secrets or message texts found in logs:`);
  for (const x of found.slice(0, 50)) console.error(`  ${x}`);
  process.exit(1);
}
console.log('log audit: no token, password or message text in any log');
