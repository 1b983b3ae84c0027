// bench/attacks.mjs — what the hardening of issue 12 holds under the attacks the issue measured,
// against a real iyagid with its default limits: server RSS and a legitimate client's latency.
//
//   node bench/attacks.mjs [slowloris|bodies|fanout|all]   (after `make`; uses tests/e2e's ws)
//
// slowloris  N connections (BENCH_SLOW, default 5,000, spread over 127.0.x.y source addresses
//            so the per-address cap is not what stops them) each trickling a never-ending request
//            head, one byte every 2 s; meanwhile a legitimate client sends 1:1 messages over its
//            WebSocket and we measure ack p50/p99; then how many of the N the deadline cut.
// bodies     1,000 connections each declaring a 1.26 MB body and sending 1.2 MB of it, then
//            stalling: RSS before, during and after, and how many were refused (503).
// fanout     one account's sockets (the 32 allowed) never read while another user sends 100 KB
//            messages: RSS and how many sockets were dropped as slow readers.
// Everything is on 127.0.0.0/8, bounded in count and time, and stops by itself.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const WebSocket = createRequire(path.join(REPO, 'tests/e2e/package.json'))('ws');
const IYAGID = process.env.IYAGID || path.join(REPO, 'build/rel/iyagid');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rssMb = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
const pct = (v, p) => { const s = [...v].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

async function server(extra = []) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iyagi-attack-'));
  const port = 20000 + Math.floor(Math.random() * 30000);
  const proc = spawn(IYAGID, ['--listen', `127.0.0.1:${port}`, '--data', dir, ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (d) => { log += d; });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try { if ((await fetch(`${url}/healthz`)).status === 200) break; } catch { /* not yet */ }
    await sleep(100);
  }
  return {
    url, port, pid: proc.pid, log: () => log,
    async stop() { proc.kill('SIGTERM'); await new Promise((r) => proc.on('close', r)); fs.rmSync(dir, { recursive: true, force: true }); },
  };
}

async function user(srv, name) {
  const body = { username: `${name}${process.pid % 10000}`, password: 'correct horse battery' };
  const post = (p) => fetch(srv.url + p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).then((r) => r.json());
  const u = (await post('/v1/users')).user;
  const s = await post('/v1/sessions');
  return { id: u.id, token: s.token };
}

function socket(srv, token) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/v1/ws`);
    ws.on('error', reject);
    ws.on('open', () => ws.send(JSON.stringify({ op: 'auth', token })));
    ws.once('message', (d) => (JSON.parse(d).op === 'ready' ? resolve(ws) : reject(new Error(String(d)))));
  });
}

async function sendLatencies(ws, to, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await new Promise((resolve) => {
      const on = (d) => {
        const f = JSON.parse(d);
        if (f.rid !== `l${i}`) return;
        ws.off('message', on);
        if (f.op !== 'ack') throw new Error(`legitimate send refused: ${d}`);
        resolve();
      };
      ws.on('message', on);
      ws.send(JSON.stringify({ op: 'send', to, text: `legit ${i}`, cmid: `legit-${Date.now()}-${i}`, rid: `l${i}` }));
    });
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return out;
}

const src = (i) => `127.0.${1 + (i >> 8) % 250}.${1 + (i & 255) % 250}`;

async function slowloris() {
  const N = Number(process.env.BENCH_SLOW) || 5000;
  const srv = await server();
  // two senders: each stays inside its own 200-message burst (the per-user rate limit)
  const [a, b, c] = [await user(srv, 'sla'), await user(srv, 'slb'), await user(srv, 'slc')];
  const ws0 = await socket(srv, c.token);
  const base = await sendLatencies(ws0, b.id, 150);
  ws0.close();
  const ws = await socket(srv, a.token);
  const rss0 = rssMb(srv.pid);
  const conns = [];
  let cut = 0;
  for (let i = 0; i < N; i++) {
    const s = net.connect({ host: '127.0.0.1', port: srv.port, localAddress: src(i) });
    s.on('error', () => {});
    s.on('data', (d) => { if (/^HTTP\/1\.1 408/.test(String(d))) cut++; });
    conns.push(s);
    if (i % 500 === 499) await sleep(50);
  }
  const head = 'GET /v1/me HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'a'.repeat(100000);
  let k = 0;
  const trickle = setInterval(() => { for (const s of conns) if (!s.destroyed) s.write(head[k]); k++; }, 2000);
  await sleep(3000);
  const under = await sendLatencies(ws, b.id, 150);
  const rss1 = rssMb(srv.pid);
  await sleep(10000);   // past the 10 s request deadline
  clearInterval(trickle);
  const open = conns.filter((s) => !s.destroyed).length;
  console.log(`slowloris: ${N} trickling connections; legit 1:1 ack p50/p99 ${pct(base, 0.5).toFixed(2)}/${pct(base, 0.99).toFixed(2)} ms before, ` +
    `${pct(under, 0.5).toFixed(2)}/${pct(under, 0.99).toFixed(2)} ms under attack; server RSS ${rss0.toFixed(1)} -> ${rss1.toFixed(1)} MB; ` +
    `after the deadline ${cut} answered 408, ${open} still open`);
  for (const s of conns) s.destroy();
  ws.close();
  await srv.stop();
}

async function bodies() {
  const srv = await server();
  const rss0 = rssMb(srv.pid);
  const conns = [];
  let refused = 0;
  const chunk = Buffer.alloc(1200000, 0x20);
  for (let i = 0; i < 1000; i++) {
    const s = net.connect({ host: '127.0.0.1', port: srv.port, localAddress: src(i) });
    s.on('error', () => {});
    s.on('data', (d) => { if (/^HTTP\/1\.1 503/.test(String(d))) refused++; });
    s.write('POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1260000\r\n\r\n');
    s.write(chunk);
    conns.push(s);
    if (i % 100 === 99) await sleep(200);
  }
  await sleep(3000);
  const rss1 = rssMb(srv.pid);
  for (const s of conns) s.destroy();
  await sleep(2000);
  const rss2 = rssMb(srv.pid);
  console.log(`bodies: 1,000 x 1.2 MB of unfinished bodies (1.2 GB asked for): RSS ${rss0.toFixed(1)} -> ${rss1.toFixed(1)} MB during, ` +
    `${rss2.toFixed(1)} MB after they left; ${refused} refused with 503`);
  await srv.stop();
}

async function fanout() {
  const srv = await server();
  const [a, b] = [await user(srv, 'foa'), await user(srv, 'fob')];
  const stuck = [];
  for (let i = 0; i < 40; i++) {
    try {
      const s = await socket(srv, b.token);
      s._socket.pause();
      stuck.push(s);
    } catch { /* past the per-account cap */ }
  }
  const rss0 = rssMb(srv.pid);
  const text = 'f'.repeat(100000);
  for (let i = 0; i < 200; i++) {
    await fetch(`${srv.url}/v1/users/${b.id}/messages`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${a.token}` }, body: JSON.stringify({ text, cmid: `fo-${i}` }) });
  }
  await sleep(2000);
  const rss1 = rssMb(srv.pid);
  const m = await (await fetch(`${srv.url}/metrics`)).text();
  const dropped = /^iyagi_slow_consumers_closed_total (\d+)/m.exec(m)[1];
  console.log(`fanout: ${stuck.length} of 40 sockets of one account accepted (cap 32), never reading, fed 200 x 100 KB: ` +
    `RSS ${rss0.toFixed(1)} -> ${rss1.toFixed(1)} MB, ${dropped} dropped as slow readers`);
  for (const s of stuck) s.terminate();
  await srv.stop();
}

const which = process.argv[2] || 'all';
if (which === 'slowloris' || which === 'all') await slowloris();
if (which === 'bodies' || which === 'all') await bodies();
if (which === 'fanout' || which === 'all') await fanout();
