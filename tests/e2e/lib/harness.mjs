// harness.mjs — drive iyagid through its public contract (shared/PROTOCOL.md).
//
//   startServer(opts)  -> Server   spawn IYAGID on a free 127.0.0.1 port with a fresh data dir
//   api(server, method, path, {body, token, raw, headers})   HTTP helper, JSON in/out
//   newUser(server, base, {device}) -> {user, token, device, ws_url, username, password}
//   login(server, username, password, device)
//   connectWs(server|url, {token}) -> WsClient (auth -> await ready)
//   streamSender(client, {to, prefix, inflight, max})   keep N sends in flight, record acks
//
// Environment:
//   IYAGID                       server binary (default <repo>/build/rel/iyagid)
//   IYAGI_E2E_STORE              rocksdb (default: the embedded store in the data dir) or
//                                postgres: every server gets a fresh database of a throwaway
//                                PostgreSQL (scripts/pg-throwaway.sh) and runs with --store URL
//   IYAGI_E2E_PG_DIR             that PostgreSQL's directory (scripts/test.sh starts one for the
//                                suite); unset, the first server of a test process starts one
//                                and it is stopped when the process exits
//   IYAGI_E2E_TIMEOUT_SCALE      multiply every wait (default 3 when IYAGID mentions "asan", else 1)
//   IYAGI_E2E_START_TIMEOUT_MS   how long to wait for /healthz (default 15000, scaled)
//   IYAGI_E2E_THREADS            pass --threads N to every server
//   IYAGI_E2E_VERBOSE=1          copy the servers' stderr to ours
//   IYAGI_E2E_KEEP=1             keep data directories (their paths are printed)
//   IYAGI_E2E_RECORD=FILE        append every HTTP answer of api() and every WebSocket frame of a
//                                WsClient, in and out, to FILE as JSON lines (record() below);
//                                apischema.test.mjs checks them against docs/openapi.json and
//                                docs/asyncapi.json
//   IYAGI_E2E_LOGDIR=DIR         keep every server's stderr (DIR/server-*.log) and access log
//                                (DIR/access-*.log, --access-log is added), and record every
//                                token, password and message text the helpers send or receive
//                                (DIR/secrets-*.jsonl): scripts/log-audit.mjs then checks that
//                                none of them reached a log

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import https from 'node:https';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import nodeAssert from 'node:assert/strict';

const HERE = path.dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------- log audit (IYAGI_E2E_LOGDIR)

const LOGDIR = process.env.IYAGI_E2E_LOGDIR || '';
const SECRET_MIN = 8;                 // shorter values would match log text by chance
const recorded = new Set();
let secretBuf = '';
let logSeq = 0;

function flushSecrets() {
  if (!secretBuf) return;
  fs.mkdirSync(LOGDIR, { recursive: true });
  fs.appendFileSync(path.join(LOGDIR, `secrets-${process.pid}.jsonl`), secretBuf);
  secretBuf = '';
}
if (LOGDIR) process.on('exit', flushSecrets);

/** record a value that must never appear in a server log (kind: token, password, text) */
export function recordSecret(kind, value) {
  if (!LOGDIR || typeof value !== 'string' || value.length < SECRET_MIN || recorded.has(value)) return;
  recorded.add(value);
  secretBuf += JSON.stringify({ kind, value }) + '\n';
  if (secretBuf.length > 65536) flushSecrets();
}

const SECRET_KEYS = { token: 'token', password: 'password', current_password: 'password', new_password: 'password',
  text: 'text', preview: 'text' };
/** every token, password and message text in a request or answer (nested objects and arrays) */
export function recordSecretsIn(obj, depth = 0) {
  if (!LOGDIR || !obj || typeof obj !== 'object' || depth > 6) return;
  for (const [k, v] of Object.entries(obj)) {
    if (typeof v === 'string') { if (SECRET_KEYS[k]) recordSecret(SECRET_KEYS[k], v); }
    else if (v && typeof v === 'object') recordSecretsIn(v, depth + 1);
  }
}
export const REPO = path.resolve(HERE, '..', '..', '..');
export const IYAGID = path.resolve(REPO, process.env.IYAGID || path.join('build', 'rel', 'iyagid'));
export const SCALE = Number(process.env.IYAGI_E2E_TIMEOUT_SCALE) || (/asan/i.test(IYAGID) ? 3 : /tsan/i.test(IYAGID) ? 4 : 1);
export const START_TIMEOUT_MS = (Number(process.env.IYAGI_E2E_START_TIMEOUT_MS) || 15000) * SCALE;
const VERBOSE = !!process.env.IYAGI_E2E_VERBOSE;
export const STORE = process.env.IYAGI_E2E_STORE || 'rocksdb';
if (STORE !== 'rocksdb' && STORE !== 'postgres') throw new Error(`IYAGI_E2E_STORE must be rocksdb or postgres, not ${STORE}`);
export const PG_SCRIPT = path.join(REPO, 'scripts', 'pg-throwaway.sh');
const KEEP = !!process.env.IYAGI_E2E_KEEP;

// ---- recording (IYAGI_E2E_RECORD) ----
// One JSON object a line: {kind:"http", file, method, path, status, ctype, body} (body: the parsed
// JSON, or null when the answer is not JSON) or {kind:"ws", file, sock, dir:"in"|"out", frame}
// (frame: the parsed JSON, or {__raw} for bytes that are not). Lines are appended with one
// write each, so the processes of a parallel run can share a file.
const RECORD = process.env.IYAGI_E2E_RECORD ? path.resolve(process.env.IYAGI_E2E_RECORD) : null;
const RECORD_FILE = path.basename(process.argv[1] || '');
let wsSerial = 0;

export function record(entry) {
  if (RECORD) fs.appendFileSync(RECORD, `${JSON.stringify({ file: RECORD_FILE, ...entry })}\n`);
}

function recordedFrame(data) {
  const s = Buffer.isBuffer(data) || data instanceof Uint8Array || data instanceof ArrayBuffer ? Buffer.from(data).toString('utf8') : String(data);
  try { return JSON.parse(s); } catch { return { __raw: s.slice(0, 200) }; }
}

/** ms scaled for slow (sanitizer) builds */
export const ms = (n) => Math.round(n * SCALE);
export const sleep = (n) => new Promise((r) => setTimeout(r, n));

// Safety net: whatever happens, no server outlives this test process.
const LIVE = new Set();
process.on('exit', () => {
  for (const p of LIVE) {
    try { p.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

// ---- a throwaway PostgreSQL (IYAGI_E2E_STORE=postgres) ----

let pgDir = process.env.IYAGI_E2E_PG_DIR || null;
let pgDbs = 0;

/** Runs scripts/pg-throwaway.sh with args; returns its stdout, trimmed. */
export function pgScript(...args) {
  return execFileSync(PG_SCRIPT, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** Starts a PostgreSQL of its own in a new directory; returns the directory. stopPg(dir) ends it. */
export async function startPg() {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'iyagi-pg-'));
  await fsp.chmod(dir, 0o755);
  pgScript('start', dir);
  OWN_PG.add(dir);
  return dir;
}

export function stopPg(dir) {
  OWN_PG.delete(dir);
  try { pgScript('stop', dir); } catch (e) { process.stderr.write(`[e2e] stopping PostgreSQL in ${dir}: ${e.message}\n`); }
}

const OWN_PG = new Set();
process.on('exit', () => { for (const d of [...OWN_PG]) stopPg(d); });

/** The suite's PostgreSQL: IYAGI_E2E_PG_DIR, or one started for this process. */
async function suitePg() {
  if (!pgDir) pgDir = await startPg();
  return pgDir;
}

/** A fresh database (in dir, default the suite's server); returns its URL. */
export async function pgCreateDb(dir) {
  const d = dir || await suitePg();
  const name = `e2e_${process.pid}_${++pgDbs}_${crypto.randomBytes(3).toString('hex')}`;
  return pgScript('createdb', d, name);
}

export function binaryPresent() {
  try {
    fs.accessSync(IYAGID, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function requireBinary() {
  if (!binaryPresent()) throw new Error(`iyagid binary not found at ${IYAGID}: run make first`);
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const SANITIZER_RE = /ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer|ThreadSanitizer/;
const STDERR_KEEP = 256 * 1024;

export class Server {
  constructor(opts = {}) {
    this.opts = opts;
    this.port = 0;
    this.dataDir = null;
    this.proc = null;
    this.exit = null;          // promise of {code, signal} of the current process
    this.stderrBuf = '';       // tail of stderr, across restarts
    this.sanitizer = null;     // first sanitizer report line seen
    this.starts = 0;
    this.storeUrl = opts.storeUrl || null;   // --store URL (postgres)
  }

  // opts.tls {cert, key, ca}: the server speaks TLS (--tls-cert/--tls-key; without cert and key the
  // test gives them another way, e.g. IYAGI_TLS_CERT in opts.env); ca: PEM the client trusts
  get url() { return `${this.opts.tls ? 'https' : 'http'}://127.0.0.1:${this.port}`; }
  get wsUrl() { return `${this.opts.tls ? 'wss' : 'ws'}://127.0.0.1:${this.port}/v1/ws`; }
  get running() { return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null; }

  args() {
    const a = ['--listen', `127.0.0.1:${this.port}`, '--data', this.dataDir];
    if (this.storeUrl) a.push('--store', this.storeUrl);
    const threads = this.opts.threads ?? process.env.IYAGI_E2E_THREADS;
    if (threads) a.push('--threads', String(threads));
    for (const [flag, key] of [['--public-url', 'publicUrl'], ['--presence-timeout', 'presenceTimeout'],
      ['--auth-timeout', 'authTimeout'], ['--idle-timeout', 'idleTimeout']]) {
      if (this.opts[key] !== undefined) a.push(flag, String(this.opts[key]));
    }
    // The suites drive hundreds of users from 127.0.0.1: the per-address and per-user limits are
    // off unless a test asks for the defaults (ratelimit.test.mjs does, with rateLimits: 'on').
    a.push('--rate-limits', this.opts.rateLimits === 'on' ? 'on' : 'off');
    if (this.opts.tls?.cert) a.push('--tls-cert', this.opts.tls.cert, '--tls-key', this.opts.tls.key);
    if (this.opts.extraArgs) a.push(...this.opts.extraArgs);
    if (LOGDIR && !a.includes('--access-log')) a.push('--access-log', this.logPath('access'));
    return a;
  }

  /** LOGDIR/KIND-<pid>-<n>.log: this server's own file of that kind in the audit directory */
  logPath(kind) {
    if (!this.logId) this.logId = `${process.pid}-${++logSeq}`;
    fs.mkdirSync(LOGDIR, { recursive: true });
    return path.join(LOGDIR, `${kind}-${this.logId}.log`);
  }

  /** GET /healthz once: its status (throws when nothing answers) */
  async healthz() {
    if (!this.opts.tls) {
      const r = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(1000) });
      await r.arrayBuffer();
      return r.status;
    }
    return new Promise((resolve, reject) => {
      const req = https.get(`${this.url}/healthz`, { ca: this.opts.tls.ca, agent: false, timeout: 1000 }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
    });
  }

  _log(s) {
    // The server's own output only: the harness's notes (its command line) are not its log.
    if (LOGDIR && !/^\n?\[e2e\]/.test(s)) fs.appendFileSync(this.logPath('server'), s);
    this.stderrBuf += s;
    if (this.stderrBuf.length > STDERR_KEEP) this.stderrBuf = this.stderrBuf.slice(-STDERR_KEEP);
    if (!this.sanitizer) {
      const m = this.stderrBuf.slice(-(s.length + 200)).match(SANITIZER_RE);
      if (m) this.sanitizer = m[0];
    }
    if (VERBOSE) process.stderr.write(s);
  }

  /** the last n characters of the server's stderr */
  stderrTail(n = 4000) { return this.stderrBuf.slice(-n); }

  async start() {
    requireBinary();
    if (!this.dataDir) {
      this.dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'iyagi-e2e-'));
      if (KEEP) process.stderr.write(`[e2e] data dir ${this.dataDir}\n`);
    }
    if (!this.storeUrl && (this.opts.store || STORE) === 'postgres') this.storeUrl = await pgCreateDb();
    for (let attempt = 0; ; attempt++) {
      if (!this.port) this.port = await freePort();
      try {
        await this._spawnAndWait();
        return this;
      } catch (e) {
        // The port picked may have been taken in between: try another one, a few times.
        if (e.earlyExit && attempt < 3 && /in use|EADDRINUSE|bind/i.test(this.stderrTail(2000))) {
          this.port = 0;
          continue;
        }
        throw e;
      }
    }
  }

  async _spawnAndWait() {
    this.starts++;
    this._log(`\n[e2e] start #${this.starts}: ${IYAGID} ${this.args().join(' ')}\n`);
    const env = this.opts.env ? { ...process.env, ...this.opts.env } : process.env;
    const proc = spawn(IYAGID, this.args(), { stdio: ['ignore', 'pipe', 'pipe'], env });
    this.proc = proc;
    LIVE.add(proc);
    proc.stdout.setEncoding('utf8');
    proc.stderr.setEncoding('utf8');
    proc.stdout.on('data', (d) => this._log(d));
    proc.stderr.on('data', (d) => this._log(d));
    this.exit = new Promise((resolve) => {
      proc.on('error', (err) => { this._log(`[e2e] spawn error: ${err.message}\n`); });
      proc.on('close', (code, signal) => {
        LIVE.delete(proc);
        this.lastExit = { code, signal };
        this._log(`[e2e] exited code=${code} signal=${signal}\n`);
        resolve({ code, signal });
      });
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    let exited = null;
    this.exit.then((x) => { exited = x; });
    while (Date.now() < deadline) {
      if (exited) {
        const e = new Error(`iyagid exited before answering /healthz (code=${exited.code} signal=${exited.signal})\n--- stderr ---\n${this.stderrTail()}`);
        e.earlyExit = true;
        throw e;
      }
      try {
        if (await this.healthz() === 200) return;
      } catch { /* not up yet */ }
      await sleep(50);
    }
    proc.kill('SIGKILL');
    await this.exit;
    throw new Error(`iyagid did not answer GET /healthz 200 within ${START_TIMEOUT_MS} ms\n--- stderr ---\n${this.stderrTail()}`);
  }

  /** SIGTERM and wait for the exit; returns {code, signal}. SIGKILLs after timeoutMs. */
  async stop(timeoutMs = ms(30000)) {
    if (!this.proc) return null;
    if (!this.running) return this.exit;
    this.proc.kill('SIGTERM');
    let timer;
    const r = await Promise.race([this.exit, new Promise((res) => { timer = setTimeout(() => res(null), timeoutMs); })]);
    clearTimeout(timer);
    if (r === null) {
      this.proc.kill('SIGKILL');
      await this.exit;
      throw new Error(`iyagid did not exit within ${timeoutMs} ms of SIGTERM (killed)\n--- stderr ---\n${this.stderrTail()}`);
    }
    return r;
  }

  /** SIGKILL (a crash) and wait for the process to be gone. */
  async kill() {
    if (!this.proc) return null;
    if (this.running) this.proc.kill('SIGKILL');
    return this.exit;
  }

  /** start again on the same data dir (and port, if still free) */
  async restart() {
    if (this.running) {
      const r = await this.stop();
      if (r.code !== 0) throw new Error(`iyagid exited with ${JSON.stringify(r)} on SIGTERM before restart`);
    }
    return this.start();
  }

  /** kill whatever runs, remove the data dir; throws if a sanitizer reported something */
  async cleanup() {
    if (this.running) {
      this.proc.kill('SIGKILL');
      await this.exit;
    }
    if (this.dataDir && !KEEP) await fsp.rm(this.dataDir, { recursive: true, force: true });
    if (this.sanitizer) {
      throw new Error(`sanitizer report in iyagid stderr (${this.sanitizer})\n--- stderr ---\n${this.stderrTail(20000)}`);
    }
  }

  /** wrap an error with the server's stderr tail, for readable failures */
  annotate(err) {
    if (err && typeof err === 'object' && !err.__iyagiAnnotated) {
      err.__iyagiAnnotated = true;
      const dead = this.proc && !this.running && this.lastExit
        ? `\n*** iyagid is not running: it exited with code=${this.lastExit.code} signal=${this.lastExit.signal} ***` : '';
      try { err.message += `${dead}\n--- iyagid stderr (tail) ---\n${this.stderrTail(3000)}`; } catch { /* frozen */ }
    }
    return err;
  }
}

export async function startServer(opts = {}) {
  const s = new Server(opts);
  try {
    await s.start();
  } catch (e) {
    await s.cleanup().catch(() => {});
    throw e;
  }
  return s;
}

/**
 * Runs fn(server) with a server started for it; the server is always cleaned up and failures
 * carry the tail of its stderr. Use inside a test: await withServer(opts, async (srv) => {...}).
 */
export async function withServer(opts, fn) {
  const srv = await startServer(opts);
  try {
    return await fn(srv);
  } catch (e) {
    throw srv.annotate(e);
  } finally {
    await srv.cleanup();
  }
}

// ---------------------------------------------------------------- HTTP

function baseOf(server) { return typeof server === 'string' ? server : server.url; }

/**
 * api(server, 'POST', '/v1/users', {body, token}) -> {status, body, text, headers, ms}
 * body: an object (sent as JSON), or {raw: string|Buffer} to send bytes as they are.
 */
export async function api(server, method, p, { body, raw, token, headers = {}, timeoutMs = ms(30000) } = {}) {
  const h = { ...headers };
  let payload;
  if (raw !== undefined) {
    payload = raw;
    h['content-type'] ??= 'application/json';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    h['content-type'] = 'application/json';
  }
  if (token) h.authorization = `Bearer ${token}`;
  if (LOGDIR) {
    recordSecret('token', token);
    if (body !== undefined) recordSecretsIn(body);
  }
  const t0 = Date.now();
  let r;
  for (let attempt = 0; ; attempt++) {
    try {
      r = await fetch(baseOf(server) + p, { method, headers: h, body: payload, signal: AbortSignal.timeout(timeoutMs) });
      break;
    } catch (e) {
      // A pooled keep-alive socket to a server that was restarted: retry reads once.
      if (attempt === 0 && (method === 'GET' || method === 'HEAD') && e.name !== 'TimeoutError') continue;
      throw new Error(`${method} ${p}: ${e.message}${e.cause ? ` (${e.cause.code || e.cause.message})` : ''}`);
    }
  }
  const text = await r.text();
  let parsed = null;
  try { parsed = text.length ? JSON.parse(text) : null; } catch { parsed = undefined; }
  recordSecretsIn(parsed);
  if (RECORD) {
    const ctype = r.headers.get('content-type') || '';
    record({ kind: 'http', method, path: p, status: r.status, ctype, body: /json/.test(ctype) ? (parsed === undefined ? { __raw: text.slice(0, 200) } : parsed) : null });
  }
  return { status: r.status, body: parsed, text, headers: r.headers, ms: Date.now() - t0 };
}

/**
 * A raw HTTP/1.1 request with node:http (no keep-alive); tolerates the server answering and
 * closing before the whole body was written (useful for oversized bodies).
 */
export function rawHttp(server, method, p, { body, token, headers = {}, timeoutMs = ms(30000) } = {}) {
  const u = new URL(baseOf(server) + p);
  return new Promise((resolve, reject) => {
    const h = { 'content-type': 'application/json', connection: 'close', ...headers };
    if (token) h.authorization = `Bearer ${token}`;
    recordSecret('token', token);
    if (body !== undefined) h['content-length'] = Buffer.byteLength(body);
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers: h, agent: false });
    let settled = false;
    const timer = setTimeout(() => { if (!settled) { settled = true; req.destroy(); reject(new Error(`${method} ${p}: timeout`)); } }, timeoutMs);
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      const done = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed = null;
        try { parsed = text.length ? JSON.parse(text) : null; } catch { parsed = undefined; }
        if (RECORD) {
          const ctype = res.headers['content-type'] || '';
          record({ kind: 'http', method, path: p, status: res.statusCode, ctype, body: /json/.test(ctype) ? (parsed === undefined ? { __raw: text.slice(0, 200) } : parsed) : null });
        }
        resolve({ status: res.statusCode, body: parsed, text, headers: res.headers });
      };
      res.on('end', done);
      res.on('error', done);
      res.on('aborted', done);
    });
    req.on('error', (e) => {
      // EPIPE/ECONNRESET while still writing: the response may still come; give it a moment.
      setTimeout(() => {
        if (!settled) { settled = true; clearTimeout(timer); reject(new Error(`${method} ${p}: ${e.code || e.message} before any response`)); }
      }, 2000);
    });
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** assert-friendly description of a response */
export function show(r) { return `${r.status} ${r.text?.slice(0, 500)}`; }

// ---------------------------------------------------------------- users

const RUN = crypto.randomBytes(3).toString('hex');
let counter = 0;
/** a unique, valid username: base (trimmed) + run id + counter, at most 32 chars of [a-z0-9_] */
export function uname(base = 'u') {
  const b = base.toLowerCase().replace(/[^a-z0-9_]/g, '').slice(0, 12) || 'u';
  return `${b}_${RUN}${(counter++).toString(36)}`.slice(0, 32);
}

export const PASSWORD = 'correct horse battery';

export async function signup(server, username, password = PASSWORD, displayName) {
  const body = { username, password };
  if (displayName !== undefined) body.display_name = displayName;
  const r = await api(server, 'POST', '/v1/users', { body });
  if (r.status !== 201) throw new Error(`signup ${username}: ${show(r)}`);
  return r.body.user;
}

export async function login(server, username, password = PASSWORD, device) {
  const body = { username, password };
  if (device !== undefined) body.device = device;
  const r = await api(server, 'POST', '/v1/sessions', { body });
  if (r.status !== 201) throw new Error(`login ${username}: ${show(r)}`);
  return r.body; // {token, user, device, ws_url}
}

/** signup + login: {user, token, device, ws_url, username, password} */
export async function newUser(server, base = 'u', { device, password = PASSWORD, displayName } = {}) {
  const username = uname(base);
  const user = await signup(server, username, password, displayName);
  const s = await login(server, username, password, device);
  return { user, token: s.token, device: s.device, ws_url: s.ws_url, username, password };
}

/** another session (device) of an existing user */
export async function newDevice(server, u, device) {
  const s = await login(server, u.username, u.password, device);
  return { ...u, token: s.token, device: s.device, ws_url: s.ws_url };
}

// ---------------------------------------------------------------- WebSocket

let ridSeq = 0;
export const rid = (p = 'r') => `${p}${(ridSeq++).toString(36)}`;

export class WsClient {
  constructor(ws, label = 'ws') {
    this.ws = ws;
    this.label = label;
    this.all = [];          // every frame received, in order (parsed; {__raw} when not JSON)
    this.unclaimed = [];    // frames nobody waited for yet
    this.waiters = [];      // {pred, resolve, reject, timer}
    this.listeners = [];    // fn(frame) -> true when it consumed the frame
    this.keepAll = true;
    this.closeInfo = null;
    this.error = null;
    if (RECORD) {
      // every frame out, whoever sends it (send, sendRaw, heartbeats, streamSender)
      this.sock = `${process.pid}.${++wsSerial}`;
      const send = ws.send.bind(ws);
      ws.send = (data, ...rest) => {
        record({ kind: 'ws', sock: this.sock, dir: 'out', frame: recordedFrame(data) });
        return send(data, ...rest);
      };
      ws.on('message', (data) => record({ kind: 'ws', sock: this.sock, dir: 'in', frame: recordedFrame(data) }));
    }
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        for (const w of this.waiters.splice(0)) {
          clearTimeout(w.timer);
          w.reject(new Error(`${this.label}: socket closed (code ${code}) while waiting for ${w.what}; last frames: ${this.tail()}`));
        }
        resolve(this.closeInfo);
      });
    });
    ws.on('error', (e) => { this.error = e; });
    ws.on('message', (data, isBinary) => {
      let f;
      try { f = JSON.parse(data.toString('utf8')); } catch { f = { __raw: data.toString('utf8'), __binary: isBinary }; }
      if (this.keepAll) this.all.push(f);
      recordSecretsIn(f);
      for (let i = 0; i < this.waiters.length; i++) {
        const w = this.waiters[i];
        if (w.pred(f)) {
          this.waiters.splice(i, 1);
          clearTimeout(w.timer);
          w.resolve(f);
          return;
        }
      }
      for (const l of this.listeners) if (l(f)) return;
      this.unclaimed.push(f);
    });
  }

  tail(n = 5) { return JSON.stringify(this.all.slice(-n)).slice(0, 1500); }

  get isOpen() { return this.ws.readyState === WebSocket.OPEN; }

  /** send an object as a JSON text frame */
  send(obj) {
    recordSecretsIn(obj);
    this.ws.send(JSON.stringify(obj));
  }

  /** send raw bytes; binary:false makes it a text frame whatever the bytes */
  sendRaw(data, { binary = false } = {}) {
    return new Promise((resolve) => this.ws.send(data, { binary }, (err) => resolve(err || null)));
  }

  /** the first frame (already received or coming) that matches pred; it is claimed */
  waitFor(pred, { timeoutMs = ms(10000), what = 'a frame' } = {}) {
    const i = this.unclaimed.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.unclaimed.splice(i, 1)[0]);
    if (this.closeInfo) {
      return Promise.reject(new Error(`${this.label}: socket already closed (code ${this.closeInfo.code}) waiting for ${what}; last frames: ${this.tail()}`));
    }
    return new Promise((resolve, reject) => {
      const w = { pred, resolve, reject, what };
      w.timer = setTimeout(() => {
        const k = this.waiters.indexOf(w);
        if (k >= 0) this.waiters.splice(k, 1);
        reject(new Error(`${this.label}: timed out after ${timeoutMs} ms waiting for ${what}; last frames: ${this.tail()}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /** {frame} for the first frame matching pred, or {close: {code, reason}} if the socket closes first */
  nextOrClose(pred, opts = {}) {
    return this.waitFor(pred, opts).then(
      (frame) => ({ frame }),
      (e) => (this.closeInfo ? { close: this.closeInfo } : Promise.reject(e)),
    );
  }

  /** n frames matching pred, in arrival order */
  async waitForN(pred, n, opts = {}) {
    const out = [];
    for (let i = 0; i < n; i++) out.push(await this.waitFor(pred, { what: `frame ${i + 1}/${n}`, ...opts }));
    return out;
  }

  /** send a request with a rid and wait for the frame that echoes the rid */
  async request(obj, opts = {}) {
    const r = obj.rid ?? rid();
    this.send({ ...obj, rid: r });
    return this.waitFor((f) => f.rid === r, { what: `answer to ${obj.op} rid=${r}`, ...opts });
  }

  /** every unclaimed frame matching pred, claimed now */
  take(pred = () => true) {
    const out = [];
    this.unclaimed = this.unclaimed.filter((f) => (pred(f) ? (out.push(f), false) : true));
    return out;
  }

  /** wait for the close; returns {code, reason} */
  waitClose({ timeoutMs = ms(10000) } = {}) {
    let timer;
    return Promise.race([
      this.closed,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${this.label}: not closed within ${timeoutMs} ms; last frames: ${this.tail()}`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  /** a round trip: everything the server sent before its hb answer has arrived */
  async roundTrip(opts) {
    const f = await this.request({ op: 'hb' }, opts);
    if (f.op !== 'hb') throw new Error(`${this.label}: expected hb, got ${JSON.stringify(f)}`);
    return f;
  }

  close(code = 1000) {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(code);
    return this.closed;
  }

  terminate() {
    this.ws.terminate();
    return this.closed;
  }
}

/** open a WebSocket (no auth); target is a Server or a ws:// URL */
export function openWs(target, { label = 'ws', timeoutMs = ms(10000) } = {}) {
  const url = typeof target === 'string' ? target : target.wsUrl;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { handshakeTimeout: timeoutMs, maxPayload: 64 * 1024 * 1024 });
    const c = new WsClient(ws, label);
    ws.once('open', () => resolve(c));
    ws.once('unexpected-response', (req, res) => reject(new Error(`${label}: upgrade to ${url} answered HTTP ${res.statusCode}`)));
    ws.once('error', (e) => reject(new Error(`${label}: cannot connect to ${url}: ${e.message}`)));
  });
}

/** the WebSocket auth with token: 'ready', or the error code (the socket then closes 1008) */
export async function wsAuth(srv, token, label) {
  const c = await openWs(srv, { label });
  c.send({ op: 'auth', token });
  const f = await c.waitFor((x) => x.op === 'ready' || x.op === 'error', { what: `${label}: ready or error` });
  if (f.op === 'ready') {
    c.terminate();
    return 'ready';
  }
  const closed = await c.waitClose();
  nodeAssert.equal(closed.code, 1008, `${label}: closed 1008 after ${JSON.stringify(f)}`);
  return f.code;
}

/** open + auth; resolves with the client, whose .ready holds the ready frame */
export async function connectWs(target, { token, label = 'ws', timeoutMs = ms(10000) } = {}) {
  const c = await openWs(target, { label, timeoutMs });
  c.send({ op: 'auth', token });
  const f = await c.waitFor((x) => x.op === 'ready' || x.op === 'error', { timeoutMs, what: 'ready' });
  if (f.op !== 'ready') {
    c.terminate();
    throw new Error(`${label}: auth answered ${JSON.stringify(f)}`);
  }
  c.ready = f;
  return c;
}

/**
 * Keep up to `inflight` sends in flight from client to `to` (a user id) or `channel`, each with a
 * distinct cmid `${prefix}${i}`, until stop() is called, `max` were sent, or the socket closes.
 * Returns {acks: Map cmid->ack, errors: Map cmid->error frame, sent: [cmid], stop(), done}.
 * done resolves (never rejects) when nothing is in flight any more or the socket closed.
 */
export function streamSender(client, { to, channel, prefix, inflight = 8, max = Infinity, text = (i) => `m${i} ${prefix}` }) {
  const st = { acks: new Map(), errors: new Map(), sent: [], stopped: false };
  const pending = new Set();
  let resolveDone;
  st.done = new Promise((r) => { resolveDone = r; });
  const finish = () => { if (resolveDone) { const r = resolveDone; resolveDone = null; r(st); } };
  const pump = () => {
    while (!st.stopped && client.isOpen && pending.size < inflight && st.sent.length < max) {
      const i = st.sent.length;
      const cmid = `${prefix}${i}`;
      const f = { op: 'send', rid: cmid, cmid, text: text(i) };
      if (to !== undefined) f.to = to; else f.channel = channel;
      st.sent.push(cmid);
      pending.add(cmid);
      client.send(f);
    }
    if (pending.size === 0 && (st.stopped || st.sent.length >= max || !client.isOpen)) finish();
  };
  client.keepAll = false; // the acks are recorded here; don't keep a second copy
  client.listeners.push((f) => {
    if (f.rid === undefined || !pending.has(f.rid)) return false;
    pending.delete(f.rid);
    if (f.op === 'ack') st.acks.set(f.rid, f); else st.errors.set(f.rid, f);
    pump();
    return true;
  });
  client.closed.then(() => finish());
  st.stop = () => { st.stopped = true; if (pending.size === 0) finish(); };
  st.pending = pending;
  pump();
  return st;
}

// ---------------------------------------------------------------- reading everything back

/** a channel's whole history, oldest first, paging with after_seq over HTTP */
export async function fullHistory(server, token, channelId, limit = 200) {
  const out = [];
  let after = 0;
  for (let guard = 0; guard < 100000; guard++) {
    const r = await api(server, 'GET', `/v1/channels/${channelId}/messages?after_seq=${after}&limit=${limit}`, { token });
    if (r.status !== 200) throw new Error(`history ${channelId} after ${after}: ${show(r)}`);
    const page = r.body.messages;
    out.push(...page);
    if (page.length === 0) break;
    after = page[page.length - 1].seq;
  }
  return out;
}

/**
 * Every acknowledged send ({cmid, id}) is in the channel's history exactly once with its id, and
 * the channel's seqs are 1..n without a gap (what the storage-fault tests check before and after
 * a restart).
 */
export async function checkAcked(server, token, channelId, acked, what) {
  const stored = await fullHistory(server, token, channelId);
  const byCmid = new Map(stored.map((m) => [m.cmid, m]));
  nodeAssert.equal(byCmid.size, stored.length, `${what}: no cmid twice`);
  for (const x of acked) {
    const m = byCmid.get(x.cmid);
    nodeAssert.ok(m, `${what}: acknowledged ${x.cmid} is stored`);
    nodeAssert.equal(m.id, x.id);
  }
  const gap = gapFree(stored.map((m) => m.seq).sort((x, y) => x - y), `${what}: seq`);
  nodeAssert.equal(gap, null, gap);
}

/** the whole inbox after `after` over a WebSocket, paging with `more` */
export async function fullSyncWs(client, after = 0, limit = 500) {
  const out = [];
  for (let guard = 0; guard < 100000; guard++) {
    const b = await client.request({ op: 'sync', after, limit });
    if (b.op !== 'batch') throw new Error(`sync after ${after}: ${JSON.stringify(b)}`);
    out.push(...b.messages);
    if (b.messages.length) after = b.messages[b.messages.length - 1].pos;
    if (!b.more) break;
    if (b.messages.length === 0) throw new Error(`sync after ${after}: more=true with no messages`);
  }
  return out;
}

/** assert-helper: values are exactly 1..n (returns a message or null) */
export function gapFree(values, what) {
  for (let i = 0; i < values.length; i++) {
    if (values[i] !== i + 1) {
      return `${what}: expected 1..${values.length} in order, at index ${i} got ${values[i]} (around: ${JSON.stringify(values.slice(Math.max(0, i - 3), i + 4))})`;
    }
  }
  return null;
}

// ---------------------------------------------------------------- social features (groups, presence, receipts)

/** run fn over items with at most n at a time; results in item order */
/** a decimal id string, as the contract sends ids */
export const isId = (v) => typeof v === 'string' && /^[0-9]+$/.test(v) && v !== '0';

/**
 * Runs fn(track) with the server's stderr attached to failures; every socket passed to track()
 * is terminated afterwards, pass or fail.
 */
export async function withSockets(server, fn) {
  const sockets = [];
  const track = (c) => { sockets.push(c); return c; };
  try {
    await fn(track);
  } catch (e) {
    throw server.annotate(e);
  } finally {
    for (const c of sockets) c.terminate();
  }
}

/** run fn(item, index) over items with at most n at a time */
export async function mapLimit(items, n, fn) {
  const out = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  }));
  return out;
}

/** `count` new users (signup + login), at most `concurrency` at a time (each costs two Argon2id hashes) */
export function newUsers(server, base, count, { concurrency = 8 } = {}) {
  return mapLimit(Array.from({ length: count }, (_, i) => i), concurrency, (i) => newUser(server, `${base}${i}`));
}

/** ids (strings of digits) sorted numerically */
export const sortIds = (ids) => [...ids].sort((x, y) => { const a = BigInt(x), b = BigInt(y); return a < b ? -1 : a > b ? 1 : 0; });

/** the numerically smallest id */
export const minId = (ids) => sortIds(ids)[0];

/** an id that no user or channel has (well-formed, far beyond anything a fresh server hands out) */
export const UNKNOWN_ID = '9223372036854775000';

/** asserts an HTTP error: status, and the body {"error":{"code","message"}} */
export function assertHttpError(r, status, code, what) {
  nodeAssert.equal(r.status, status, `${what}: status, got ${show(r)}`);
  nodeAssert.ok(r.body && typeof r.body === 'object' && r.body.error && typeof r.body.error === 'object',
    `${what}: body {"error":{...}}, got ${show(r)}`);
  nodeAssert.equal(r.body.error.code, code, `${what}: error code, got ${show(r)}`);
  nodeAssert.equal(typeof r.body.error.message, 'string', `${what}: error message is a string, got ${show(r)}`);
}

/** asserts a WebSocket error frame with the given code */
export function assertWsError(f, code, what) {
  nodeAssert.equal(f?.op, 'error', `${what}: expected an error frame, got ${JSON.stringify(f)}`);
  nodeAssert.equal(f.code, code, `${what}: error code, got ${JSON.stringify(f)}`);
}

/**
 * Drop the connection abruptly: destroy the TCP socket without a WebSocket close frame (what a
 * phone losing its network looks like to the server). Resolves when the client saw the close.
 */
WsClient.prototype.drop = function drop() {
  if (this.ws._socket) this.ws._socket.destroy();
  else this.ws.terminate();
  return this.closed;
};

/**
 * Send {op:"hb"} every `everyMs` until the socket closes or the returned stop() is called, so that
 * the socket keeps "showing life" (presence). The answers are consumed (they stay in .all).
 */
WsClient.prototype.heartbeat = function heartbeat(everyMs = 500) {
  const prefix = `hb~${rid('')}~`;
  let n = 0;
  this.listeners.push((f) => f.op === 'hb' && typeof f.rid === 'string' && f.rid.startsWith(prefix));
  const timer = setInterval(() => {
    if (!this.isOpen) { clearInterval(timer); return; }
    try { this.ws.send(JSON.stringify({ op: 'hb', rid: `${prefix}${n++}` })); } catch { /* closing */ }
  }, everyMs);
  this.closed.then(() => clearInterval(timer));
  const stop = () => clearInterval(timer);
  this.stopHeartbeat = stop;
  return stop;
};

/** every frame received so far that matches pred (claimed or not) */
WsClient.prototype.received = function received(pred) {
  return this.all.filter(pred);
};
