// bench/tls.mjs — what native TLS (--tls-cert) costs: memory per idle connection and full
// handshakes per second.
//
//   node bench/tls.mjs [idle|handshakes|all]     (after `make`; uses tests/e2e's ws and the
//                                                  `openssl` CLI; a test CA and a P-256 server
//                                                  certificate are made in a temporary directory)
//
// idle        the same run twice, plain ws:// then wss://: a fresh iyagid (--threads 2), 20 users,
//             BENCH_TLS_CONNS (default 5,000) authenticated WebSockets opened by 4 client processes
//             from 127.<k>.x.y source addresses; server RSS after the first 200 (warm-up: arenas,
//             the first TLS context use) and after all of them, settled 2 s: the difference
//             divided by the rest is the memory of one idle connection.
// handshakes  `openssl s_time` against a TLS iyagid with one I/O thread: new full handshakes
//             (TLS 1.3 with X25519, TLS 1.3 with P-256, TLS 1.2 ECDHE-ECDSA-AES128-GCM) and TLS
//             1.3 resumptions (a ticket), BENCH_TLS_SECONDS (default 6) each, each fetching
//             /healthz; the rate the client saw and the server's CPU seconds per 1,000 handshakes
//             (client and server share the machine's cores, so the latter is the server's cost).
// Everything is on 127.0.0.0/8, bounded in count and time, and stops by itself.
import { spawn, execFileSync, fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';

const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const WebSocket = createRequire(path.join(REPO, 'tests/e2e/package.json'))('ws');
const IYAGID = process.env.IYAGID || path.join(REPO, 'build/rel/iyagid');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rssKb = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const cpuSec = (pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;   // utime + stime, clock ticks (100 Hz)
};

// Whatever happens, no server outlives the script.
const LIVE = new Set();
process.on('exit', () => { for (const p of LIVE) { try { p.kill('SIGKILL'); } catch { /* gone */ } } });

// ---- a client process: opens its share of the sockets, reports, idles until told to go ----
if (process.argv[2] === 'client') {
  const [url, tokensJson, countS, k, caFile] = process.argv.slice(3);
  const tokens = JSON.parse(tokensJson);
  const ca = caFile !== '-' ? fs.readFileSync(caFile) : undefined;
  const count = Number(countS);
  const sockets = [];
  let ready = 0, failed = 0, next = 0;
  const one = () => new Promise((resolve) => {
    const i = next++;
    const ws = new WebSocket(url, { ca, localAddress: `127.${Number(k) + 1}.${(i >> 8) & 255}.${(i & 255) || 1}` });
    sockets.push(ws);
    ws.on('open', () => ws.send(JSON.stringify({ op: 'auth', token: tokens[i % tokens.length] })));
    ws.on('message', (d) => {
      if (JSON.parse(d.toString()).op === 'ready') { ready++; resolve(); }
    });
    ws.on('error', () => { failed++; resolve(); });
  });
  process.on('message', async (m) => {
    if (m.open) {
      const target = Math.min(count, next + m.open);
      await Promise.all(Array.from({ length: 64 }, async () => { while (next < target) await one(); }));
      process.send({ ready, failed });
    } else if (m.quit) {
      for (const s of sockets) s.terminate();
      process.exit(0);
    }
  });
} else {
  try {
    await main();
  } catch (e) {
    console.error(e);
    process.exitCode = 1;
  }
  process.exit();   // the exit handler kills a server that a failure left running
}

function pki() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iyagi-bench-tls-'));
  const o = (args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  o(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=bench CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']);
  fs.writeFileSync(path.join(dir, 'ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  o(['req', ...ec, '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=bench']);
  o(['x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', '7', '-days', '1',
    '-out', 'srv.pem', '-extfile', 'ext']);
  return { dir, ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'srv.pem'), key: path.join(dir, 'srv.key') };
}

async function startServer(tls, threads) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iyagi-bench-'));
  const port = 20000 + Math.floor(Math.random() * 20000);
  const args = ['--listen', `127.0.0.1:${port}`, '--data', dir, '--threads', String(threads), '--rate-limits', 'off',
    '--idle-timeout', '600', '--auth-timeout', '60'];
  if (tls) args.push('--tls-cert', tls.cert, '--tls-key', tls.key);
  const proc = spawn(IYAGID, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  LIVE.add(proc);
  proc.on('close', () => LIVE.delete(proc));
  let log = '';
  proc.stderr.on('data', (d) => { log += d; });
  const base = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const req = (method, p, body) => new Promise((resolve, reject) => {
    const r = (tls ? https : http).request(base + p, { method, ca: tls ? fs.readFileSync(tls.ca) : undefined,
      headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      let t = '';
      res.on('data', (c) => { t += c; });
      res.on('end', () => { let b = null; try { b = JSON.parse(t); } catch { /* not JSON */ } resolve({ status: res.statusCode, body: b }); });
    });
    r.on('error', reject);
    if (body) r.write(JSON.stringify(body));
    r.end();
  });
  for (let i = 0; i < 200; i++) {
    try { if ((await req('GET', '/healthz')).status === 200) break; } catch { /* not yet */ }
    await sleep(50);
  }
  return { proc, port, dir, req, base, log: () => log };
}

async function stopServer(s) {
  if (s.proc.exitCode === null && s.proc.signalCode === null) {
    s.proc.kill('SIGTERM');
    await new Promise((r) => s.proc.on('close', r));
  }
  fs.rmSync(s.dir, { recursive: true, force: true });
}

async function idleRun(tls, total) {
  const s = await startServer(tls, 2);
  const tokens = [];
  for (let i = 0; i < 20; i++) {
    const username = `bench_${tls ? 't' : 'p'}${i}_${process.pid}`;
    await s.req('POST', '/v1/users', { username, password: 'correct horse battery' });
    tokens.push((await s.req('POST', '/v1/sessions', { username, password: 'correct horse battery' })).body.token);
  }
  const url = `${tls ? 'wss' : 'ws'}://127.0.0.1:${s.port}/v1/ws`;
  const kids = [0, 1, 2, 3].map((k) => fork(new URL(import.meta.url).pathname,
    ['client', url, JSON.stringify(tokens), String(total / 4), String(k), tls ? tls.ca : '-'], { stdio: 'inherit' }));
  const open = async (each) => {
    const r = await Promise.all(kids.map((c) => new Promise((res) => { c.once('message', res); c.send({ open: each }); })));
    return r.reduce((a, x) => ({ ready: a.ready + x.ready, failed: a.failed + x.failed }), { ready: 0, failed: 0 });
  };
  const t0 = Date.now();
  const warm = await open(50);
  await sleep(2000);
  const before = rssKb(s.proc.pid);
  const all = await open(total / 4);
  const openSec = (Date.now() - t0) / 1000;
  await sleep(2000);
  const after = rssKb(s.proc.pid);
  for (const c of kids) c.send({ quit: 1 });
  await stopServer(s);
  const n = all.ready - warm.ready;
  return { mode: tls ? 'wss' : 'ws', ready: all.ready, failed: all.failed, beforeMb: before / 1024, afterMb: after / 1024,
    perConnKb: (after - before) / n, openSec };
}

function sTime(s, ca, { extra = [], groups, seconds }) {
  let conf;
  const env = { ...process.env };
  if (groups) {
    conf = path.join(path.dirname(ca), `client-${groups}.cnf`);
    fs.writeFileSync(conf, `openssl_conf = c\n[c]\nssl_conf = s\n[s]\nsystem_default = d\n[d]\nGroups = ${groups}\n`);
    env.OPENSSL_CONF = conf;
  }
  const cpu0 = cpuSec(s.proc.pid);
  const out = execFileSync('openssl', ['s_time', '-connect', `127.0.0.1:${s.port}`, '-CAfile', ca, '-www', '/healthz',
    '-time', String(seconds), ...extra], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const cpu = cpuSec(s.proc.pid) - cpu0;
  const m = /(\d+) connections in ([\d.]+)s; ([\d.]+) connections\/user sec/.exec(out);
  const conns = m ? Number(m[1]) : 0;
  return { conns, perSec: conns / seconds, serverCpuMsPer1000: conns ? (cpu * 1000 * 1000) / conns : NaN };
}

async function handshakes(tls) {
  const seconds = Number(process.env.BENCH_TLS_SECONDS) || 6;
  const s = await startServer(tls, 1);
  const rows = [
    ['TLS 1.3, X25519, new', { extra: ['-new', '-tls1_3'], groups: 'X25519' }],
    ['TLS 1.3, P-256, new', { extra: ['-new', '-tls1_3'], groups: 'P-256' }],
    ['TLS 1.2, ECDHE-ECDSA-AES128-GCM-SHA256 X25519, new', { extra: ['-new', '-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256'], groups: 'X25519:P-256' }],
    ['TLS 1.3, resumed (ticket)', { extra: ['-reuse', '-tls1_3'], groups: 'X25519' }],
  ];
  const out = [];
  for (const [name, o] of rows) out.push({ name, ...sTime(s, tls.ca, { ...o, seconds }) });
  await stopServer(s);
  return out;
}

async function main() {
  const what = process.argv[2] || 'all';
  const tls = pki();
  try {
    if (what === 'idle' || what === 'all') {
      const total = Number(process.env.BENCH_TLS_CONNS) || 5000;
      const plain = await idleRun(null, total);
      const secure = await idleRun(tls, total);
      for (const r of [plain, secure]) {
        console.log(`idle ${r.mode}: ${r.ready} ready (${r.failed} failed) in ${r.openSec.toFixed(1)} s; RSS ${r.beforeMb.toFixed(1)} MB after 200 -> ${r.afterMb.toFixed(1)} MB: ${r.perConnKb.toFixed(2)} KB per connection`);
      }
      console.log(`idle: TLS adds ${(secure.perConnKb - plain.perConnKb).toFixed(2)} KB per idle connection`);
    }
    if (what === 'handshakes' || what === 'all') {
      for (const r of await handshakes(tls)) {
        console.log(`handshakes ${r.name}: ${r.conns} in ${process.env.BENCH_TLS_SECONDS || 6} s = ${r.perSec.toFixed(0)}/s; server CPU ${r.serverCpuMsPer1000.toFixed(0)} ms per 1,000 (${(1e6 / r.serverCpuMsPer1000).toFixed(0)} per server CPU second)`);
      }
    }
  } finally {
    fs.rmSync(tls.dir, { recursive: true, force: true });
  }
}
