// observability.test.mjs — logs and metrics (issue 14): log levels and formats, the access
// log, the client address of failed logins and bad tokens, no secret in any log line, the
// whole /metrics page valid for promtool with the new series present and sensible after
// traffic, --metrics-token, and bad values of the new options refused at start.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  startServer, api, rawHttp, newUser, connectWs, openWs, rid, ms, STORE, IYAGID, requireBinary, sleep, freePort,
} from './lib/harness.mjs';

const T = { timeout: ms(120000) };
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

async function withSrv(opts, fn) {
  const srv = await startServer(opts);
  try { await fn(srv); } catch (e) { throw srv.annotate(e); } finally { await srv.cleanup(); }
}

/** waits until pred(stderr) holds (the server writes its lines asynchronously to us) */
async function waitLog(srv, pred, what) {
  const deadline = Date.now() + ms(5000);
  while (Date.now() < deadline) {
    if (pred(srv.stderrTail(1 << 20))) return;
    await sleep(20);
  }
  assert.fail(`${what}: not in the log:\n${srv.stderrTail(3000)}`);
}

/** the server's own lines (not the harness's "[e2e]" notes) */
function serverLines(srv) {
  return srv.stderrTail(1 << 20).split('\n').filter((l) => l && !l.startsWith('[e2e]'));
}

function readLines(file) {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
}

test('text lines: an ISO-8601 UTC timestamp and a level; a failed login is a warning with the client address', T, () =>
  withSrv({}, async (srv) => {
    const u = await newUser(srv, 'logt');
    const secret = 'not the right password 7f3a';
    const r = await api(srv, 'POST', '/v1/sessions', { body: { username: u.username, password: secret } });
    assert.equal(r.status, 401);
    await waitLog(srv, (s) => s.includes(`login failed for ${u.username}`), 'the failed login');
    const lines = serverLines(srv);
    for (const l of lines) {
      const m = l.match(/^(\S+) (error|warn|info|debug) /);
      assert.ok(m && ISO.test(m[1]), `a text line with timestamp and level: ${l}`);
    }
    const fail = lines.find((l) => l.includes('login failed'));
    assert.match(fail, / warn login failed for \S+ from 127\.0\.0\.1$/);
    assert.ok(lines.some((l) => / info iyagid listening on /.test(l)), 'the start is info');
    const all = lines.join('\n');
    assert.ok(!all.includes(secret) && !all.includes(u.password) && !all.includes(u.token), 'no password or token');
  }));

test('JSON lines: every line parses, with ts, level and msg; --log-level warn silences info', T, () =>
  withSrv({ extraArgs: ['--log-format', 'json', '--log-level', 'warn'] }, async (srv) => {
    const u = await newUser(srv, 'logj');   // signup and login are info: not written
    // A username with a quote and a control byte is refused by signup; the failed login logs
    // "(a malformed username)" for it, and a well-formed one as it is.
    await api(srv, 'POST', '/v1/sessions', { body: { username: 'bad"name\n', password: 'whatever123' } });
    await api(srv, 'POST', '/v1/sessions', { body: { username: u.username, password: 'whatever123' } });
    // A bad token on HTTP and on a WebSocket's auth: warnings with the client address.
    assert.equal((await api(srv, 'GET', '/v1/channels', { token: 'bogus-token-abcdefgh' })).status, 401);
    const ws = await openWs(srv);
    ws.send({ op: 'auth', token: 'another-bogus-token-1234' });
    await ws.waitClose();
    await waitLog(srv, (s) => s.includes('ws auth failed'), 'the failed WebSocket auth');
    const lines = serverLines(srv);
    assert.ok(lines.length >= 4, `some lines:\n${lines.join('\n')}`);
    const objs = lines.map((l) => {
      try { return JSON.parse(l); } catch (e) { assert.fail(`not JSON: ${l}`); }
      return null;
    });
    for (const o of objs) {
      assert.ok(ISO.test(o.ts), `ts: ${JSON.stringify(o)}`);
      assert.ok(['warn', 'error'].includes(o.level), `only warn and error at --log-level warn: ${JSON.stringify(o)}`);
      assert.equal(typeof o.msg, 'string');
    }
    const msgs = objs.map((o) => o.msg);
    assert.ok(!msgs.some((m) => m.startsWith('iyagid listening') || m.startsWith('signup') || m.startsWith('login:')),
      'info silenced');
    assert.ok(msgs.includes('login failed for (a malformed username) from 127.0.0.1'), msgs.join('\n'));
    assert.ok(msgs.includes(`login failed for ${u.username} from 127.0.0.1`), msgs.join('\n'));
    assert.ok(msgs.some((m) => m === 'http auth failed from 127.0.0.1 on /v1/channels: invalid or revoked token'),
      msgs.join('\n'));
    assert.ok(msgs.some((m) => m.startsWith('ws auth failed from 127.0.0.1')), msgs.join('\n'));
    const all = lines.join('\n');
    for (const s of ['whatever123', 'bogus-token-abcdefgh', 'another-bogus-token-1234', u.token, u.password])
      assert.ok(!all.includes(s), `${s} is in the log`);
  }));

test('the access log: route templates, never ids or query strings; the proxy-aware client; WebSocket open and close', T, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iyagi-access-'));
  const file = path.join(dir, 'access.log');
  try {
    await withSrv({ extraArgs: ['--access-log', file, '--trust-proxy', '127.0.0.1/32'] }, async (srv) => {
      const a = await newUser(srv, 'acca');
      const b = await newUser(srv, 'accb');
      const c = await connectWs(srv, { token: a.token });
      const text = 'a private message for the access log test';
      const ack = await c.request({ op: 'send', to: b.user.id, cmid: rid('c'), text });
      assert.equal(ack.op, 'ack');
      const ch = ack.channel;
      const h = await api(srv, 'GET', `/v1/channels/${ch}/messages?limit=5&token=${a.token}`, { token: a.token });
      assert.equal(h.status, 200);
      // From behind the trusted proxy: the address it appended is the client's.
      const r = await rawHttp(srv, 'POST', '/v1/sessions', {
        body: JSON.stringify({ username: a.username, password: 'wrong password 1234' }),
        headers: { 'x-forwarded-for': '203.0.113.7' },
      });
      assert.equal(r.status, 401);
      await c.close(1000);
      await waitLog(srv, (s) => s.includes('login failed'), 'the failed login');
      await srv.stop();
      const lines = readLines(file);
      const re = /^(\S+) access (http|ws) (\S+) (.*)$/;
      for (const l of lines) {
        const m = l.match(re);
        assert.ok(m && ISO.test(m[1]), `an access line: ${l}`);
      }
      const https = lines.filter((l) => l.includes(' access http '));
      const hist = https.find((l) => l.includes(' GET /v1/channels/{id}/messages '));
      assert.match(hist, /access http 127\.0\.0\.1 GET \/v1\/channels\/\{id\}\/messages 200 \d+ \d+us$/);
      assert.ok(https.some((l) => / access http 127\.0\.0\.1 POST \/v1\/users 201 \d+ \d+us$/.test(l)));
      assert.ok(https.some((l) => / access http 203\.0\.113\.7 POST \/v1\/sessions 401 \d+ \d+us$/.test(l)),
        https.join('\n'));
      assert.ok(https.some((l) => / access http 127\.0\.0\.1 GET \/v1\/ws 101 \d+ \d+us$/.test(l)), 'the upgrade');
      assert.ok(lines.some((l) => / access ws 127\.0\.0\.1 open 0 0us$/.test(l)), 'the open');
      assert.ok(lines.some((l) => / access ws 127\.0\.0\.1 close 1000 \d+us$/.test(l)), lines.join('\n'));
      const all = lines.join('\n');
      for (const s of [a.token, b.token, a.password, text, String(ch), 'limit=5'])
        assert.ok(!all.includes(s), `${s} is in the access log`);
      assert.ok(srv.stderrTail(1 << 20).includes('login failed for ' + a.username + ' from 203.0.113.7'),
        'the failed login names the proxied client');
      // Rotation: the file moved away, SIGHUP, and the next lines go to a new file of that name.
      await srv.start();
      fs.renameSync(file, `${file}.1`);
      srv.proc.kill('SIGHUP');
      await waitLog(srv, (x) => x.includes('access log reopened'), 'the reopen');
      assert.equal((await api(srv, 'GET', '/healthz')).status, 200);
      await srv.stop();
      assert.match(readLines(file).join('\n'), /access http 127\.0\.0\.1 GET \/healthz 200 /);
      assert.ok(!readLines(`${file}.1`).some((l) => l.includes('/healthz 200') && l > readLines(file)[0]));
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the access log on stderr in JSON: one object per request', T, () =>
  withSrv({ extraArgs: ['--access-log', 'stderr', '--log-format', 'json'] }, async (srv) => {
    await api(srv, 'GET', '/v1/users/12345', { token: 'x'.repeat(20) });
    await waitLog(srv, (s) => s.includes('"route":"/v1/users/{id}"'), 'the access line');
    const objs = serverLines(srv).map((l) => JSON.parse(l));
    const a = objs.find((o) => o.kind === 'http' && o.route === '/v1/users/{id}');
    assert.deepEqual(Object.keys(a).sort(), ['bytes', 'client', 'duration_us', 'kind', 'level', 'method', 'msg', 'route',
      'status', 'ts']);
    assert.equal(a.status, 401);
    assert.equal(a.method, 'GET');
    assert.equal(a.client, '127.0.0.1');
    assert.ok(a.bytes > 0 && a.duration_us >= 0);
  }));

/** name{labels} value lines of a Prometheus page -> Map('name{labels}' -> number) */
function samples(text) {
  const m = new Map();
  for (const l of text.split('\n')) {
    if (!l || l.startsWith('#')) continue;
    const i = l.lastIndexOf(' ');
    m.set(l.slice(0, i), Number(l.slice(i + 1)));
  }
  return m;
}

/** promtool check metrics: a parse error fails; lint findings only for names older than this check */
function promtool(text) {
  const OLD_LINT = /^iyagi_bus_lag_ms_total metric names should not contain abbreviated units$/;
  let out = '';
  let code = 0;
  try {
    out = execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (e) {
    if (e.code === 'ENOENT') assert.fail('promtool is missing: install the Debian package prometheus (scripts/deps.sh test)');
    code = e.status;
    out = `${e.stdout}${e.stderr}`;
  }
  const findings = out.split('\n').filter(Boolean).filter((l) => !OLD_LINT.test(l));
  assert.ok(code === 0 || code === 3, `promtool exit ${code}: ${out}`);
  assert.deepEqual(findings, [], `promtool findings:\n${out}`);
}

test('/metrics after traffic: valid for promtool, with the process, build, route, op and storage series', T, () =>
  withSrv({}, async (srv) => {
    const a = await newUser(srv, 'meta');
    const b = await newUser(srv, 'metb');
    const c = await connectWs(srv, { token: a.token });
    let channel;
    for (let i = 0; i < 5; i++) {
      const f = await c.request({ op: 'send', to: b.user.id, cmid: rid('m'), text: `metrics traffic ${i}` });
      assert.equal(f.op, 'ack');
      channel = f.channel;
    }
    const bad = await c.request({ op: 'history', channel: 999999999 });
    assert.equal(bad.op, 'error');
    await c.roundTrip();
    assert.equal((await api(srv, 'GET', `/v1/channels/${channel}/messages`, { token: a.token })).status, 200);
    assert.equal((await api(srv, 'GET', '/v1/no/such/thing')).status, 404);
    const r = await api(srv, 'GET', '/metrics');
    assert.equal(r.status, 200);
    promtool(r.text);
    const s = samples(r.text);
    const get = (k) => { assert.ok(s.has(k), `${k} missing`); return s.get(k); };
    // process_*, read from /proc/self at scrape time
    assert.ok(get('process_cpu_seconds_total') > 0);
    assert.ok(get('process_resident_memory_bytes') > 1 << 20);
    assert.ok(get('process_open_fds') > 3 && get('process_open_fds') < get('process_max_fds'));
    assert.ok(Math.abs(get('process_start_time_seconds') - Date.now() / 1000) < 600);
    assert.ok(get('process_threads') >= 3);
    const bi = [...s.keys()].find((k) => k.startsWith('iyagi_build_info{'));
    assert.match(bi, /^iyagi_build_info\{version="\d+\.\d+\.\d+",commit="([0-9a-f]+|unknown)",store="(rocksdb|postgresql)"\}$/);
    assert.equal(s.get(bi), 1);
    // HTTP by route template, method and status class; latency by route
    assert.ok(get('iyagi_http_responses_total{route="/v1/users",method="POST",code="2xx"}') >= 2);
    assert.ok(get('iyagi_http_responses_total{route="/v1/channels/{id}/messages",method="GET",code="2xx"}') >= 1);
    assert.ok(get('iyagi_http_responses_total{route="other",method="GET",code="4xx"}') >= 1);
    assert.ok(get('iyagi_http_responses_total{route="/v1/ws",method="GET",code="1xx"}') >= 1);
    assert.ok(get('iyagi_http_request_duration_seconds_count{route="/v1/sessions"}') >= 2);
    assert.ok(![...s.keys()].some((k) => /route="[^"]*\d{3,}/.test(k)), 'no raw id in a route label');
    // WebSocket ops by op and outcome; latency by op
    assert.equal(get('iyagi_ws_ops_total{op="send",outcome="ok"}'), 5);
    assert.ok(get('iyagi_ws_ops_total{op="auth",outcome="ok"}') >= 1);
    assert.ok(get('iyagi_ws_ops_total{op="hb",outcome="ok"}') >= 1);
    assert.equal(get('iyagi_ws_op_duration_seconds_count{op="send"}'), 5);
    assert.ok([...s.keys()].some((k) => k.startsWith('iyagi_ws_ops_total{op="history",outcome="') && !k.includes('"ok"')),
      `${JSON.stringify(bad)} ${r.text.split('\n').filter((l) => l.startsWith('iyagi_ws_ops')).join(' ')}`);
    // storage
    assert.ok(get('iyagi_commit_round_seconds_count') >= 1);
    if (STORE === 'postgres') {
      assert.ok(get('iyagi_pg_query_seconds_count') > 0);
      assert.ok(get('iyagi_pg_pool_wait_seconds_count') > 0);
      assert.ok(s.has('iyagi_pg_errors_total'));
    } else {
      assert.equal(get('iyagi_rocksdb_write_stopped'), 0);
      assert.ok(get('iyagi_rocksdb_memtables_bytes') > 0);
      for (const k of ['iyagi_rocksdb_delayed_write_rate_bytes', 'iyagi_rocksdb_running_compactions',
        'iyagi_rocksdb_sst_files_bytes', 'iyagi_rocksdb_pending_compaction_bytes', 'iyagi_rocksdb_block_cache_bytes'])
        assert.ok(get(k) >= 0);
      assert.ok(get('iyagi_store_disk_free_bytes') > 0);
      assert.equal(get('iyagi_store_write_fault'), 0);
    }
    for (const k of ['iyagi_push_outbox', 'iyagi_push_outbox_oldest_seconds', 'iyagi_push_dead_letters'])
      assert.ok(get(k) >= 0);
    // every older series is still there, with its meaning
    assert.ok(get('iyagi_messages_stored_total') >= 5);
    assert.ok(get('iyagi_ack_latency_seconds_count') >= 5);
    assert.ok(get('iyagi_http_requests_total') >= 5);
    await c.close();
  }));

test('--metrics-token: /metrics wants the bearer token (401 without or with another one)', T, () =>
  withSrv({ extraArgs: ['--metrics-token', 'scrape-secret-0123456789'] }, async (srv) => {
    const none = await api(srv, 'GET', '/metrics');
    assert.equal(none.status, 401);
    assert.equal(none.body.error.code, 'unauthorized');
    assert.equal(none.headers.get('www-authenticate'), 'Bearer');
    assert.equal((await api(srv, 'GET', '/metrics', { token: 'scrape-secret-012345678' })).status, 401);
    assert.equal((await api(srv, 'GET', '/metrics', { token: 'scrape-secret-01234567890' })).status, 401);
    assert.equal((await api(srv, 'GET', '/metrics', { headers: { authorization: 'Basic scrape-secret-0123456789' } })).status, 401);
    const ok = await api(srv, 'GET', '/metrics', { token: 'scrape-secret-0123456789' });
    assert.equal(ok.status, 200);
    assert.match(ok.text, /^process_open_fds \d+$/m);
    assert.equal((await api(srv, 'GET', '/healthz')).status, 200, '/healthz stays open');
    await waitLog(srv, (x) => x.includes('metrics: unauthorized scrape from 127.0.0.1'), 'the refused scrape');
    assert.ok(!srv.stderrTail(1 << 20).split('\n').filter((l) => !l.startsWith('[e2e]')).join('\n')
      .includes('scrape-secret'), 'the token is not logged');
  }));

test('bad values of the new options are refused at start (exit 2, a message)', T, async () => {
  requireBinary();
  const cases = [
    [['--log-level', 'verbose'], /--log-level takes error, warn, info or debug/],
    [['--log-format', 'xml'], /--log-format takes text or json/],
    [['--metrics-token', 'short'], /--metrics-token takes 16 to/],
    [['--access-log', ''], /--access-log takes/],
  ];
  for (const [args, re] of cases) {
    const r = await new Promise((resolve) => execFile(IYAGID, args, (err, stdout, stderr) =>
      resolve({ code: err ? err.code : 0, stderr })));
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code} ${r.stderr}`);
    assert.match(r.stderr, re);
  }
  // An access log that cannot be opened stops the start, with the reason.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iyagi-obs-'));
  try {
    const r = await new Promise((resolve) => execFile(IYAGID,
      ['--listen', '127.0.0.1:0', '--data', path.join(dir, 'd'), '--access-log', path.join(dir, 'no', 'such', 'dir', 'a.log')],
      { timeout: ms(20000) }, (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stderr })));
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /error cannot open the access log .*No such file or directory/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('--admin-listen: /metrics only there, and there only /metrics and /healthz', T, async () => {
  const adminPort = await freePort();
  await withSrv({ extraArgs: ['--admin-listen', `127.0.0.1:${adminPort}`] }, async (srv) => {
    const admin = `http://127.0.0.1:${adminPort}`;
    assert.equal((await api(srv, 'GET', '/metrics')).status, 404, '/metrics is not on the public listener');
    const m = await api(admin, 'GET', '/metrics');
    assert.equal(m.status, 200);
    assert.match(m.text, /^iyagi_build_info\{/m);
    assert.equal((await api(admin, 'GET', '/healthz')).status, 200);
    assert.equal((await api(admin, 'POST', '/v1/users', { body: { username: 'nope_admin', password: 'whatever12' } })).status, 404);
    assert.equal((await api(admin, 'GET', '/')).status, 404, 'no web client on the admin listener');
    assert.equal((await api(srv, 'GET', '/healthz')).status, 200);
    // the public listener's 404 for /metrics is counted under its route like any answer
    const s = samples(m.text);
    assert.ok(s.get('iyagi_http_responses_total{route="/metrics",method="GET",code="4xx"}') >= 1);
  });
});

test('auth failures a client can cause at will are logged 20 a second at most, then counted', T, () =>
  withSrv({}, async (srv) => {
    await Promise.all(Array.from({ length: 60 }, () => api(srv, 'GET', '/v1/me', { token: 'flooding-bad-token-000' })));
    await sleep(1100);
    await api(srv, 'GET', '/v1/me', { token: 'flooding-bad-token-000' });   // the next second: the summary
    await waitLog(srv, (s) => /auth failures not logged \(over 20 a second\)/.test(s), 'the summary');
    const n = serverLines(srv).filter((l) => l.includes('http auth failed')).length;
    assert.ok(n >= 20 && n <= 41, `${n} lines`);
  }));
