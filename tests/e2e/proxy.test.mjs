// proxy.test.mjs — iyagid behind a TLS-terminating proxy, as deploy/ ships it: nginx
// (deploy/nginx-iyagi.conf.in) and HAProxy (deploy/haproxy.cfg.in with an ssl bind), each
// rendered from the repository's file, in front of a node started with --trust-proxy. Through
// the proxy over HTTPS and WSS (a test CA the client trusts, no check disabled): sign-up and
// login hand out a wss:// URL (X-Forwarded-Proto), two users chat over WebSocket through the
// proxy, a 100,000-character message and a streamed upload pass. (Counting clients by
// X-Forwarded-For is ratelimit.test.mjs's.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import WebSocket from 'ws';
import { REPO, withServer, freePort, ms, sleep, WsClient } from './lib/harness.mjs';

const T = { timeout: ms(120000) };
const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => fs.existsSync(p));
const HAPROXY = ['/usr/sbin/haproxy', '/usr/bin/haproxy'].find((p) => fs.existsSync(p));

function render(text, values) {
  // Placeholders outside comment lines only (the comments name them).
  return text.split('\n').map((l) => (/^\s*#/.test(l) ? l : l.replace(/@([A-Z_]+)@/g, (m, k) => {
    if (!(k in values)) throw new Error(`no value for ${m}`);
    return values[k];
  }))).join('\n');
}

/** a CA and a certificate for 127.0.0.1 and localhost signed by it, by the openssl CLI */
function makeCerts(dir) {
  const o = (...a) => execFileSync('openssl', a, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  o('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key',
    '-out', 'ca.pem', '-days', '2', '-subj', '/CN=iyagi test CA');
  o('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'server.key',
    '-out', 'server.csr', '-subj', '/CN=localhost');
  fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  o('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf');
  fs.writeFileSync(path.join(dir, 'haproxy.pem'),
    fs.readFileSync(path.join(dir, 'server.pem'), 'utf8') + fs.readFileSync(path.join(dir, 'server.key'), 'utf8'));
  return { ca: fs.readFileSync(path.join(dir, 'ca.pem')), dir };
}

/** HTTPS request trusting only the test CA: {status, body, headers} */
function req(ca, port, method, p, { body, token, raw, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    let payload = null;
    if (raw !== undefined) payload = raw;
    else if (body !== undefined) { payload = JSON.stringify(body); h['content-type'] = 'application/json'; }
    if (payload !== null) h['content-length'] = Buffer.byteLength(payload);
    if (token) h.authorization = `Bearer ${token}`;
    const r = https.request({ host: '127.0.0.1', port, path: p, method, headers: h, ca, servername: 'localhost' }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, body: json, text, headers: res.headers });
      });
    });
    r.on('error', reject);
    r.end(payload ?? undefined);
  });
}

function wss(ca, url, token) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { ca, servername: 'localhost', maxPayload: 64 * 1024 * 1024 });
    const c = new WsClient(ws, 'wss');
    ws.once('error', (e) => reject(new Error(`cannot connect to ${url}: ${e.message}`)));
    ws.once('open', async () => {
      c.send({ op: 'auth', token });
      const f = await c.waitFor((x) => x.op === 'ready' || x.op === 'error', { what: 'ready' });
      if (f.op !== 'ready') reject(new Error(`auth: ${JSON.stringify(f)}`));
      else resolve(c);
    });
  });
}

function tcpOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** spawns a proxy; resolves when its port accepts; returns {stop, log} */
async function startProxy(bin, args, port, logFile) {
  const out = fs.openSync(logFile, 'a');
  const p = spawn(bin, args, { stdio: ['ignore', out, out] });
  fs.closeSync(out);
  const exited = new Promise((r) => p.on('close', r));
  const deadline = Date.now() + ms(10000);
  while (Date.now() < deadline) {
    if (p.exitCode !== null) throw new Error(`${bin} exited: ${fs.readFileSync(logFile, 'utf8')}`);
    if (await tcpOpen(port)) {
      return {
        log: () => fs.readFileSync(logFile, 'utf8'),
        stop: async () => { if (p.exitCode === null) p.kill('SIGTERM'); await exited; },
      };
    }
    await sleep(50);
  }
  p.kill('SIGKILL');
  throw new Error(`${bin} did not open port ${port}: ${fs.readFileSync(logFile, 'utf8')}`);
}

async function nginx(dir, certs, backendPort) {
  const port = await freePort();
  const site = render(await fsp.readFile(path.join(REPO, 'deploy', 'nginx-iyagi.conf.in'), 'utf8'), {
    LISTEN: `127.0.0.1:${port} ssl`, SERVER_NAME: 'localhost', CERT: path.join(certs.dir, 'server.pem'),
    KEY: path.join(certs.dir, 'server.key'), UPSTREAMS: `server 127.0.0.1:${backendPort};`,
  });
  await fsp.writeFile(path.join(dir, 'iyagi.conf'), site);
  // The main file around the site, as /etc/nginx/nginx.conf is around sites-enabled/ (here
  // with its own pid and temporary files, unprivileged).
  for (const t of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await fsp.mkdir(path.join(dir, t), { recursive: true });
  await fsp.writeFile(path.join(dir, 'nginx.conf'), [
    `pid ${dir}/nginx.pid;`, `error_log ${dir}/error.log warn;`, 'daemon off;', 'worker_processes 1;',
    'events { worker_connections 256; }',
    'http {',
    `  access_log ${dir}/access.log;`,
    `  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi;`,
    `  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;`,
    `  include ${dir}/iyagi.conf;`,
    '}', ''].join('\n'));
  execFileSync(NGINX, ['-t', '-p', dir, '-c', path.join(dir, 'nginx.conf')], { stdio: 'pipe' });
  const p = await startProxy(NGINX, ['-p', dir, '-c', path.join(dir, 'nginx.conf')], port, path.join(dir, 'out.log'));
  return { ...p, port };
}

async function haproxy(dir, certs, backendPort) {
  const port = await freePort();
  const cfg = render(await fsp.readFile(path.join(REPO, 'deploy', 'haproxy.cfg.in'), 'utf8'), {
    BIND: `127.0.0.1:${port} ssl crt ${path.join(certs.dir, 'haproxy.pem')}`,
    SERVERS: `    server n1 127.0.0.1:${backendPort}`,
  });
  await fsp.writeFile(path.join(dir, 'haproxy.cfg'), cfg);
  execFileSync(HAPROXY, ['-c', '-f', path.join(dir, 'haproxy.cfg')], { stdio: 'pipe' });
  const p = await startProxy(HAPROXY, ['-db', '-f', path.join(dir, 'haproxy.cfg')], port, path.join(dir, 'out.log'));
  return { ...p, port };
}

async function throughProxy(kind, start) {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `iyagi-${kind}-`));
  const certs = makeCerts(dir);
  const ca = certs.ca;
  try {
    await withServer({ extraArgs: ['--trust-proxy', '127.0.0.1/32'] }, async (srv) => {
      const px = await start(dir, certs, srv.port);
      try {
        const P = px.port;
        const h = await req(ca, P, 'GET', '/healthz');
        assert.equal(h.status, 200);
        const users = [];
        for (const name of ['alice', 'bob']) {
          const cred = { username: `${kind}_${name}_${crypto.randomBytes(3).toString('hex')}`, password: 'correct horse 1' };
          const s = await req(ca, P, 'POST', '/v1/users', { body: cred });
          assert.equal(s.status, 201, s.text);
          const l = await req(ca, P, 'POST', '/v1/sessions', { body: cred });
          assert.equal(l.status, 201, l.text);
          assert.equal(l.body.ws_url, `wss://127.0.0.1:${P}/v1/ws`, 'the proxy speaks TLS: the URL handed out is wss:// at the proxy');
          users.push({ ...l.body, id: String(s.body.user.id) });
        }
        const [a, b] = users;
        const A = await wss(ca, a.ws_url, a.token);
        const B = await wss(ca, b.ws_url, b.token);
        try {
          const long = 'ㄱ'.repeat(50000) + 'x'.repeat(50000);
          const ack = await A.request({ op: 'send', to: b.id, text: long, cmid: `${kind}-1` });
          assert.equal(ack.op, 'ack', JSON.stringify(ack).slice(0, 300));
          const got = await B.waitFor((f) => f.op === 'msg', { what: 'the long message' });
          assert.equal(got.text, long);
          // An upload streamed through the proxy.
          const bytes = crypto.randomBytes(3 << 20);
          const up = await req(ca, P, 'POST', '/v1/uploads?name=blob.bin', { token: a.token, raw: bytes, headers: { 'content-type': 'application/octet-stream' } });
          assert.equal(up.status, 201, up.text);
        } finally {
          A.terminate();
          B.terminate();
        }
      } finally {
        await px.stop();
      }
    });
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

test('behind nginx (deploy/nginx-iyagi.conf.in): HTTPS and WSS through it, wss:// URLs, big messages and uploads', { ...T, skip: NGINX ? false : 'nginx is not installed (scripts/deps.sh test)' }, async () => {
  await throughProxy('nginx', nginx);
});

test('behind HAProxy (deploy/haproxy.cfg.in with an ssl bind): the same', { ...T, skip: HAPROXY ? false : 'haproxy is not installed' }, async () => {
  await throughProxy('haproxy', haproxy);
});
