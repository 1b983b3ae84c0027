// config.test.mjs — how an operator configures iyagid: --help, --version, check-config,
// the config file, IYAGI_* environment variables and their precedence (file < environment <
// command line), the addresses it serves on (IPv6, host names, several --listen), a start that
// cannot bind, and a trusted proxy's X-Forwarded-Proto.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { IYAGID, requireBinary, freePort, withServer, api, ms, sleep } from './lib/harness.mjs';

const T = { timeout: ms(60000) };

/** A request with exactly these headers (fetch() sends Host or not depending on Node's version):
 * {status, body} */
function rawGet(srv, p, headers, { method = 'GET', body } = {}) {
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    if (body !== undefined) h['content-type'] = 'application/json';
    const req = http.request({ host: '127.0.0.1', port: srv.port, path: p, method, headers: h }, (res) => {
      let t = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { t += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(t) }));
    });
    req.on('error', reject);
    req.end(body !== undefined ? JSON.stringify(body) : undefined);
  });
}

/** This process's environment without any IYAGI_ variable (the sanitizers' options stay), plus env. */
const cleanEnv = (env = {}) => ({
  ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('IYAGI_'))), ...env,
});

/** iyagid with args and env (added to a clean one), synchronously: {code, out, err} */
function run(args, { env = {}, timeout = ms(10000) } = {}) {
  const r = spawnSync(IYAGID, args, { env: cleanEnv(env), encoding: 'utf8', timeout });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

async function tmpdir() { return fsp.mkdtemp(path.join(os.tmpdir(), 'iyagi-config-')); }

/** check-config's answer as {name: {value, source}} (defaults left out) */
function effective(out) {
  const m = {};
  for (const line of out.split('\n')) {
    const x = line.match(/^([a-z-]+) = (.*)  # (.*)$/);
    if (x) m[x[1]] = { value: x[2], source: x[3] };
  }
  return m;
}

test('--version prints the version and the commit; --help lists every option with its default', T, () => {
  requireBinary();
  const v = run(['--version']);
  assert.equal(v.code, 0, v.err);
  assert.match(v.out, /^iyagid \d+\.\d+\.\d+ \(commit [0-9a-f]{7,}|unknown/);
  const h = run(['--help']);
  assert.equal(h.code, 0);
  const names = [...h.out.matchAll(/^ {2}--([a-z-]+)/gm)].map((x) => x[1]);
  assert.ok(names.length >= 25, `options listed: ${names.join(' ')}`);
  for (const n of ['listen', 'admin-listen', 'config', 'data', 'store', 'trust-proxy', 'max-upload']) assert.ok(names.includes(n), n);
  const defaults = h.out.match(/\(default: [^)]*\)/g) || [];
  assert.equal(defaults.length, names.length, 'every option says its default');
  // Every option --help names is one check-config knows, in the file and the environment too.
  const c = run(['check-config', '--help']);
  assert.equal(c.code, 0);
  for (const n of names) {
    const r = run(['check-config', `--${n}`]);
    assert.doesNotMatch(r.err, /unknown option/, `--${n} is known`);
  }
});

test('precedence: the config file, then IYAGI_* variables, then the command line; a later list replaces an earlier one', T, async () => {
  requireBinary();
  const dir = await tmpdir();
  try {
    const file = path.join(dir, 'iyagid.conf');
    await fsp.writeFile(file, [
      '# iyagid.conf',
      'threads = 3',
      'idle-timeout = 90',
      'presence-timeout = 40',
      'listen = 127.0.0.1:7001',
      'listen = 127.0.0.1:7002',
      'push-allow-private = yes',
      '',
    ].join('\n'));
    const r = run(['check-config', '--config', file, '--presence-timeout', '50'],
      { env: { IYAGI_IDLE_TIMEOUT: '120', IYAGI_PRESENCE_TIMEOUT: '45', IYAGI_TRUST_PROXY: '10.0.0.0/8, ::1/128' } });
    assert.equal(r.code, 0, r.err);
    const e = effective(r.out);
    assert.deepEqual(e.threads, { value: '3', source: 'config file' });
    assert.deepEqual(e['idle-timeout'], { value: '120', source: 'environment' });
    assert.deepEqual(e['presence-timeout'], { value: '50', source: 'command line' });
    assert.deepEqual(e.listen, { value: '127.0.0.1:7001, 127.0.0.1:7002', source: 'config file' });
    assert.deepEqual(e['trust-proxy'], { value: '10.0.0.0/8, ::1/128', source: 'environment' });
    assert.deepEqual(e['push-allow-private'], { value: 'yes', source: 'config file' });
    assert.match(r.out, /# configuration OK/);

    // The command line's --listen replaces the file's two, it does not add a third.
    const r2 = run(['check-config', '--config', file, '--listen', '[::1]:7003']);
    assert.equal(r2.code, 0, r2.err);
    assert.deepEqual(effective(r2.out).listen, { value: '[::1]:7003', source: 'command line' });

    // IYAGI_CONFIG names the file; --name=value works like --name value.
    const r3 = run(['check-config', '--threads=5'], { env: { IYAGI_CONFIG: file } });
    assert.equal(r3.code, 0, r3.err);
    assert.deepEqual(effective(r3.out).threads, { value: '5', source: 'command line' });
    assert.deepEqual(effective(r3.out)['idle-timeout'], { value: '90', source: 'config file' });
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('bad configuration is refused before starting, saying where: file line, variable or flag', T, async () => {
  requireBinary();
  const dir = await tmpdir();
  try {
    const cases = [
      ['threads = 2\nbogus = 1\n', /iyagid\.conf:2: unknown option 'bogus'/],
      ['threads = 2\n\nthreads = lots\n', /iyagid\.conf:3: threads must be an integer from 1 to 64/],
      ['[server]\nthreads = 2\n', /sections \(\[server\]\) are not used/],
      ['just words\n', /iyagid\.conf:1: not `name = value`/],
      ['config = other.conf\n', /unknown option 'config'/],
      [`public-url = https://${'x'.repeat(200)}.example\n`, /iyagid\.conf:1: a line is at most/],
      ['listen = 127.0.0.1\n', /listen takes HOST:PORT/],
      ['trust-proxy = 10.0.0.0/33\n', /trust-proxy takes a network/],
      ['keepalive-timeout = 0\n', /iyagid\.conf:1: keepalive-timeout must be an integer from 1 to 3600/],
    ];
    for (const [text, want] of cases) {
      const file = path.join(dir, 'iyagid.conf');
      await fsp.writeFile(file, text);
      for (const mode of [['check-config'], []]) {
        const r = run([...mode, '--config', file, '--data', path.join(dir, 'data')]);
        assert.equal(r.code, 2, `${JSON.stringify(text)} ${mode}: exit 2, got ${r.code} ${r.err}`);
        assert.match(r.err, want);
      }
    }
    assert.ok(!fs.existsSync(path.join(dir, 'data')), 'nothing was started or created');
    let r = run(['check-config', '--config', path.join(dir, 'missing.conf')]);
    assert.equal(r.code, 2);
    assert.match(r.err, /missing\.conf: cannot open: No such file/);
    r = run(['check-config'], { env: { IYAGI_THREADS: 'many' } });
    assert.equal(r.code, 2);
    assert.match(r.err, /IYAGI_THREADS must be an integer/);
    r = run(['check-config', '--threads']);
    assert.equal(r.code, 2);
    assert.match(r.err, /--threads needs a value/);
    r = run(['check-config', '--no-such-thing', '1']);
    assert.equal(r.code, 2);
    assert.match(r.err, /unknown option --no-such-thing/);
    r = run(['check-config', '--listen', 'no-such-host.invalid:8080']);
    assert.equal(r.code, 2);
    assert.match(r.err, /cannot resolve no-such-host\.invalid/);
    r = run(['check-config', '--listen', '127.0.0.1:7010', '--admin-listen', '127.0.0.1:7010']);
    assert.equal(r.code, 2);
    assert.match(r.err, /127\.0\.0\.1:7010 is both a --listen and an --admin-listen address/);
    r = run(['check-config', '--bus', 'nats://127.0.0.1:4222']);
    assert.equal(r.code, 2);
    assert.match(r.err, /--bus needs --store/);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

/** Spawns iyagid, waits until url/healthz answers 200; returns the process. */
async function spawnUntilHealthy(args, env, url) {
  const p = spawn(IYAGID, args, { env: cleanEnv(env), stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((r) => p.on('close', (code) => r(code)));
  const deadline = Date.now() + ms(15000);
  while (Date.now() < deadline) {
    if (p.exitCode !== null) throw new Error(`exited ${p.exitCode}: ${err}`);
    try {
      const r = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200) return { p, exited, err: () => err };
    } catch { /* not yet */ }
    await sleep(50);
  }
  p.kill('SIGKILL');
  throw new Error(`no /healthz at ${url}: ${err}`);
}

test('a server configured by its file alone, with the port from the environment, serves and stops cleanly', T, async () => {
  requireBinary();
  const dir = await tmpdir();
  try {
    const port = await freePort();
    const file = path.join(dir, 'iyagid.conf');
    await fsp.writeFile(file, `listen = 127.0.0.1:1\ndata = ${dir}/data\nrate-limits = off\n`);
    const s = await spawnUntilHealthy([], { IYAGI_CONFIG: file, IYAGI_LISTEN: `127.0.0.1:${port}` }, `http://127.0.0.1:${port}`);
    const r = await api(`http://127.0.0.1:${port}`, 'POST', '/v1/users', { body: { username: 'cfguser', password: 'correct horse 1' } });
    assert.equal(r.status, 201);
    assert.ok(fs.existsSync(path.join(dir, 'data')), 'the data dir came from the file');
    s.p.kill('SIGTERM');
    assert.equal(await s.exited, 0, s.err());
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

const ipv6 = (() => {
  try { return os.networkInterfaces().lo?.some((a) => a.family === 'IPv6' && a.address === '::1') ?? false; } catch { return false; }
})();

test('IPv6, host names and several --listen addresses; the URLs handed out bracket IPv6', { ...T, skip: ipv6 ? false : 'no ::1 on this machine' }, async () => {
  const p6 = await freePort();
  const pl = await freePort();
  await withServer({ extraArgs: ['--listen', `[::1]:${p6}`, '--listen', `localhost:${pl}`] }, async (srv) => {
    for (const base of [srv.url, `http://[::1]:${p6}`, `http://localhost:${pl}`]) {
      const r = await fetch(`${base}/healthz`);
      assert.equal(r.status, 200, base);
    }
    // Signed up over IPv6: the WebSocket URL it hands out names the address it was asked at.
    const cred = { username: 'v6user', password: 'correct horse 1' };
    assert.equal((await api(`http://[::1]:${p6}`, 'POST', '/v1/users', { body: cred })).status, 201);
    const r = await api(`http://[::1]:${p6}`, 'POST', '/v1/sessions', { body: cred });
    assert.equal(r.status, 201);
    assert.equal(r.body.ws_url, `ws://[::1]:${p6}/v1/ws`);
    const d = await api(`http://[::1]:${p6}`, 'GET', '/v1/discovery');
    assert.equal(d.body.ws_url, `ws://[::1]:${p6}/v1/ws`);
  });
  // The first --listen an IPv6 address: the node's name and its last-resort URL are bracketed.
  const only6 = await freePort();
  const dir = await tmpdir();
  try {
    const s = await spawnUntilHealthy(['--listen', `[::1]:${only6}`, '--data', dir, '--rate-limits', 'off'], {}, `http://[::1]:${only6}`);
    s.p.kill('SIGTERM');
    assert.equal(await s.exited, 0);
    assert.match(s.err(), new RegExp(`listening on http://\\[::1\\]:${only6}/ \\(node \\[::1\\]:${only6},`));
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('a start that cannot bind says why and exits non-zero', T, async () => {
  requireBinary();
  const dir = await tmpdir();
  const holder = net.createServer();
  await new Promise((r) => holder.listen(0, '127.0.0.1', r));
  try {
    const { port } = holder.address();
    let r = run(['--listen', `127.0.0.1:${port}`, '--data', path.join(dir, 'a')]);
    assert.notEqual(r.code, 0);
    assert.match(r.err, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: Address already in use`));
    // The second address of two is the busy one: nothing is served, the exit is still non-zero.
    const free = await freePort();
    r = run(['--listen', `127.0.0.1:${free}`, '--listen', `127.0.0.1:${port}`, '--data', path.join(dir, 'b')]);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /Address already in use/);
    // An address no interface has.
    r = run(['--listen', '192.0.2.1:8080', '--data', path.join(dir, 'c')]);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /cannot listen on 192\.0\.2\.1:8080: Cannot assign requested address \(no interface/);
  } finally {
    holder.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('--listen with every interface (0.0.0.0) serves other loopback addresses too', T, async () => {
  const p = await freePort();
  await withServer({ extraArgs: ['--listen', `0.0.0.0:${p}`] }, async () => {
    const r = await fetch(`http://127.0.0.2:${p}/healthz`);
    assert.equal(r.status, 200);
  });
});

test('a trusted proxy speaking TLS (X-Forwarded-Proto: https) makes the WebSocket URL wss://; an untrusted one cannot', T, async () => {
  await withServer({ extraArgs: ['--trust-proxy', '127.0.0.1/32', '--trust-proxy', '::1/128'] }, async (srv) => {
    const h = { 'x-forwarded-proto': 'https', host: 'chat.example.org' };
    const cred = { username: 'proxied1', password: 'correct horse 1' };
    assert.equal((await api(srv, 'POST', '/v1/users', { body: cred })).status, 201);
    let r = await rawGet(srv, '/v1/sessions', h, { method: 'POST', body: cred });
    assert.equal(r.status, 201);
    assert.equal(r.body.ws_url, 'wss://chat.example.org/v1/ws');
    r = await rawGet(srv, '/v1/discovery', h);
    assert.equal(r.body.ws_url, 'wss://chat.example.org/v1/ws');
    r = await rawGet(srv, '/v1/discovery', { ...h, 'x-forwarded-proto': 'https, http' });
    assert.equal(r.body.ws_url, 'wss://chat.example.org/v1/ws', 'the first element: the scheme at the front proxy');
    r = await rawGet(srv, '/v1/discovery', { ...h, 'x-forwarded-proto': 'http' });
    assert.equal(r.body.ws_url, 'ws://chat.example.org/v1/ws');
  });
  await withServer({ extraArgs: ['--trust-proxy', '10.0.0.0/8'] }, async (srv) => {
    const r = await rawGet(srv, '/v1/discovery', { 'x-forwarded-proto': 'https', host: 'chat.example.org' });
    assert.equal(r.status, 200);
    assert.equal(r.body.ws_url, 'ws://chat.example.org/v1/ws', 'a client not behind a trusted proxy cannot claim TLS');
  });
});

test('--admin-listen: a second address whose connections the server marks as admin', T, async () => {
  const ap = await freePort();
  await withServer({ extraArgs: ['--admin-listen', `127.0.0.1:${ap}`] }, async (srv) => {
    const r = await fetch(`http://127.0.0.1:${ap}/healthz`);
    assert.equal(r.status, 200);
    // The I/O threads answer before the main thread has logged its "listening" line (under
    // ThreadSanitizer on a slow machine, by more than the fetch takes): wait for the line.
    const line = new RegExp(`http://127\\.0\\.0\\.1:${ap}/ \\(admin\\)`);
    for (const until = Date.now() + ms(5000); !line.test(srv.stderrTail()) && Date.now() < until;)
      await sleep(50);
    assert.match(srv.stderrTail(), line);
  });
});
