// backup.test.mjs — iyagid admin backup / restore (docs/OPERATIONS.md, "Backup and restore").
//
// Under load: senders stream messages over WebSocket, a message with two attachments is sent;
// every ack received before `iyagid admin backup` starts is recorded; the backup runs (taken by
// the running server over DATA/admin.sock) while the load goes on; the server stops; the backup
// is restored into a new directory and a server started on it: every recorded message is there
// with its exact text and gap-free seq/pos, the attachments download byte for byte, search finds
// the messages. Failure modes: OUT exists; restore onto a running server's directory; a manifest
// of a newer backup or data format; a non-empty directory without --force (and with it: moved
// aside, not deleted); a backup with no server running; SIGKILL and SIGTERM of the server during
// a backup leave no OUT; a PostgreSQL store points at pg_dump.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import {
  IYAGID, REPO, STORE, Server, startServer, newUser, connectWs, api, show, ms, sleep,
  fullHistory, fullSyncWs, gapFree, pgCreateDb,
} from './lib/harness.mjs';
import { setupSenders, startStreaming, awaitStreams } from './lib/durability.mjs';

const T = { timeout: ms(240000) };
const EMBEDDED = STORE !== 'postgres';
const MEDIA = path.join(REPO, 'tests', 'unit', 'media');

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'iyagi-backup-'));
const servers = [];
after(async () => {
  for (const s of servers) await s.cleanup().catch(() => {});
  if (!process.env.IYAGI_E2E_KEEP) await fsp.rm(TMP, { recursive: true, force: true });
});
const track = (s) => { servers.push(s); return s; };

/** runs `iyagid admin ARGS...`; {code, stdout, stderr}; onStdout(text) sees output as it comes */
function admin(args, { onStdout } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(IYAGID, ['admin', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8');
    p.stderr.setEncoding('utf8');
    p.stdout.on('data', (d) => { stdout += d; onStdout?.(stdout); });
    p.stderr.on('data', (d) => { stderr += d; });
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
const out = (r) => `exit ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;

async function upload(u, name, bytes) {
  const r = await fetch(`${u.srv.url}/v1/uploads?name=${encodeURIComponent(name)}`, {
    method: 'POST', headers: { authorization: `Bearer ${u.token}` }, body: bytes,
  });
  const body = await r.json();
  assert.equal(r.status, 201, JSON.stringify(body));
  return body.attachment;
}

async function download(srv, token, id) {
  const r = await fetch(`${srv.url}/v1/attachments/${id}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: r.status, buf: Buffer.from(await r.arrayBuffer()) };
}

async function searchUntil(srv, token, q, ok, what, timeoutMs = ms(20000)) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await api(srv, 'GET', `/v1/search?${new URLSearchParams({ q })}`, { token });
    assert.equal(r.status, 200, `${what}: ${show(r)}`);
    if (ok(r.body.results)) return r.body.results;
    if (Date.now() > until) assert.fail(`${what}: still ${JSON.stringify(r.body.results).slice(0, 600)}`);
    await sleep(100);
  }
}

/** a server on a given data directory (a restored one) */
async function serverOn(dataDir, opts = {}) {
  const s = track(new Server(opts));
  s.dataDir = dataDir;
  await s.start();
  return s;
}

test('a backup taken under load holds every message acked before it began, its attachments, and its search index', { ...T, skip: !EMBEDDED && 'the embedded store (PostgreSQL: pg_dump)' }, async () => {
  const srv = track(await startServer());
  const { receiver, senders } = await setupSenders(srv, 6, 'bk');
  receiver.srv = srv;

  // Before the backup: a message with two attachments, A's to the receiver.
  const png = fs.readFileSync(path.join(MEDIA, 'photo.png'));
  const rnd = crypto.randomBytes(700 * 1024);
  const a = senders[0];
  a.srv = srv;
  const up1 = await upload(a, 'photo.png', png);
  const up2 = await upload(a, 'random.bin', rnd);
  const caption = `holiday snapshot ${crypto.randomBytes(4).toString('hex')}`;
  const withAtt = await a.ws.request({ op: 'send', to: receiver.user.id, cmid: 'att-1', text: caption, attachments: [up1.id, up2.id] });
  assert.equal(withAtt.op, 'ack', JSON.stringify(withAtt));

  await startStreaming(senders, receiver, { minMs: ms(1500), minAcks: 300, maxPerSender: 100000 });
  // Every ack received before the backup command starts (a copy: the streams go on).
  const before = new Map(senders.map((s) => [s, [...s.stream.acks.values()]]));
  const nBefore = [...before.values()].reduce((n, v) => n + v.length, 0);
  // One more upload racing the backup: it may or may not be in it, and must not break it.
  const racing = upload(a, 'racing.bin', crypto.randomBytes(200 * 1024)).catch((e) => e);

  const dest = path.join(TMP, 'under-load');
  const t0 = Date.now();
  const b = await admin(['backup', '--data', srv.dataDir, dest]);
  const backupMs = Date.now() - t0;
  assert.equal(b.code, 0, out(b));
  assert.match(b.stdout, /by the running server/, out(b));
  await racing;
  const during = senders.reduce((n, s) => n + s.stream.acks.size, 0) - nBefore;
  await sleep(ms(300));   // the load goes on after the backup too
  for (const s of senders) s.stream.stop();
  await awaitStreams(senders);
  const manifest = fs.readFileSync(path.join(dest, 'manifest'), 'utf8');
  assert.match(manifest, /^backup-format = 1$/m);
  assert.match(manifest, /^store = rocksdb$/m);
  assert.match(manifest, /^blob-files = [1-9]/m);
  assert.ok(!fs.existsSync(`${dest}.tmp`), 'no OUT.tmp left');
  assert.equal((await srv.stop()).code, 0);
  assert.ok(!fs.existsSync(path.join(srv.dataDir, 'admin.sock')), 'a clean stop removes the admin socket');

  const restored = path.join(TMP, 'restored-under-load');
  const r = await admin(['restore', dest, '--data', restored]);
  assert.equal(r.code, 0, out(r));
  const srv2 = await serverOn(restored);
  process.stderr.write(`[backup] ${nBefore} messages acked before the backup, ${during} during it; backup took ${backupMs} ms (${b.stdout.trim().split('\n').pop()})\n`);

  // Every message acked before the backup began: there, exact text, gap-free seq and pos.
  for (const s of senders) {
    const acks = before.get(s);
    const channel = acks[0]?.channel ?? withAtt.channel;
    const hist = await fullHistory(srv2, s.token, channel);
    const seqErr = gapFree(hist.map((m) => m.seq), `${s.prefix}: restored seq`);
    assert.equal(seqErr, null, seqErr);
    const byId = new Map(hist.map((m) => [m.id, m]));
    for (const k of acks) {
      const m = byId.get(k.id);
      assert.ok(m, `${s.prefix}: ${k.cmid} (seq ${k.seq}) acked before the backup is in the restored store`);
      assert.equal(m.seq, k.seq);
      assert.equal(m.text, `durable ${k.cmid} \u{1F4E6}`);
    }
    const ws = await connectWs(srv2, { token: s.token, label: `${s.prefix} restored` });
    try {
      const inbox = await fullSyncWs(ws);
      const posErr = gapFree(inbox.map((m) => m.pos), `${s.prefix}: restored inbox pos`);
      assert.equal(posErr, null, posErr);
    } finally {
      ws.terminate();
    }
  }
  const rws = await connectWs(srv2, { token: receiver.token, label: 'receiver restored' });
  try {
    const inbox = await fullSyncWs(rws);
    assert.equal(gapFree(inbox.map((m) => m.pos), 'receiver pos'), null);
    assert.ok(inbox.length >= nBefore + 1, `receiver inbox ${inbox.length} >= ${nBefore + 1}`);
    const m = inbox.find((x) => x.id === withAtt.id);
    assert.ok(m, 'the message with attachments');
    assert.deepEqual(m.attachments.map((x) => x.id), [up1.id, up2.id]);
  } finally {
    rws.terminate();
  }

  // The attachments, byte for byte (and the thumbnail made at upload).
  const d1 = await download(srv2, receiver.token, up1.id);
  assert.equal(d1.status, 200);
  assert.ok(d1.buf.equals(png), 'photo.png restored byte for byte');
  const d2 = await download(srv2, receiver.token, up2.id);
  assert.equal(d2.status, 200);
  assert.ok(d2.buf.equals(rnd), 'random.bin restored byte for byte');
  const th = await fetch(`${srv2.url}/v1/attachments/${up1.id}/thumb`, { headers: { authorization: `Bearer ${receiver.token}` } });
  assert.equal(th.status, 200, 'the thumbnail came along');

  // Search: the restored index (and its indexer catching up) finds them.
  await searchUntil(srv2, receiver.token, caption, (rs) => rs.some((x) => x.message.id === withAtt.id), 'the caption');
  const last = [...before.get(senders[1])].pop();
  await searchUntil(srv2, receiver.token, `durable ${last.cmid} \u{1F4E6}`, (rs) => rs.some((x) => x.message.id === last.id), 'the newest message acked before the backup');

  // The restored server takes new messages after the restored ones.
  const fresh = await connectWs(srv2, { token: senders[2].token, label: 'after' });
  try {
    const f = await fresh.request({ op: 'send', to: receiver.user.id, cmid: 'after-restore', text: 'after the restore' });
    assert.equal(f.op, 'ack', JSON.stringify(f));
  } finally {
    fresh.terminate();
  }
  assert.equal((await srv2.stop()).code, 0);
});

test('failure modes: OUT exists, a running server, a newer manifest, a non-empty directory, no server, PostgreSQL', { ...T, skip: !EMBEDDED && 'the embedded store' }, async () => {
  const srv = track(await startServer());
  const u = await newUser(srv, 'fm');
  const v = await newUser(srv, 'fn');
  const sent = await api(srv, 'POST', `/v1/users/${v.user.id}/messages`, { token: u.token, body: { text: 'kept in the backup' } });
  assert.equal(sent.status, 201, show(sent));

  // OUT exists: refused, and what is there is untouched.
  const taken = path.join(TMP, 'taken');
  fs.mkdirSync(taken);
  fs.writeFileSync(path.join(taken, 'precious'), 'x');
  let r = await admin(['backup', '--data', srv.dataDir, taken]);
  assert.equal(r.code, 1, out(r));
  assert.match(r.stderr, /exists: a backup never replaces anything/);
  assert.deepEqual(fs.readdirSync(taken), ['precious']);

  // A backup that cannot be written (no such parent directory): an error, nothing left.
  const nowhere = path.join(TMP, 'no-such-dir', 'b');
  r = await admin(['backup', '--data', srv.dataDir, nowhere]);
  assert.equal(r.code, 1, out(r));
  assert.match(r.stderr, /cannot create .*no-such-dir\/b\.tmp: No such file or directory/, out(r));
  assert.ok(!fs.existsSync(path.join(TMP, 'no-such-dir')));

  // A relative OUT is the caller's, not the server's working directory.
  const good = path.join(TMP, 'fm-good');
  r = await new Promise((resolve) => {
    const p = spawn(IYAGID, ['admin', 'backup', '--data', srv.dataDir, 'fm-good'], { cwd: TMP, stdio: ['ignore', 'pipe', 'pipe'] });
    let e = '';
    p.stderr.on('data', (d) => { e += d; });
    p.on('close', (code) => resolve({ code, stdout: '', stderr: e }));
  });
  assert.equal(r.code, 0, out(r));
  assert.ok(fs.existsSync(path.join(good, 'manifest')));

  // Restore onto the running server's directory: refused (with or without --force).
  for (const extra of [[], ['--force']]) {
    r = await admin(['restore', good, '--data', srv.dataDir, ...extra]);
    assert.equal(r.code, 1, out(r));
    assert.match(r.stderr, /a server is running on/);
  }

  // A manifest of a newer backup format, or of a newer data format: refused, clearly.
  for (const [key, re] of [['backup-format', /backup format 99, newer than this iyagid restores \(1\)/],
    ['data-format', /data format 99, newer than this iyagid opens/]]) {
    const copy = path.join(TMP, `tampered-${key}`);
    fs.cpSync(good, copy, { recursive: true });
    const mf = path.join(copy, 'manifest');
    fs.writeFileSync(mf, fs.readFileSync(mf, 'utf8').replace(new RegExp(`^${key} = \\d+$`, 'm'), `${key} = 99`));
    const target = path.join(TMP, `tampered-${key}-into`);
    r = await admin(['restore', copy, '--data', target]);
    assert.equal(r.code, 1, out(r));
    assert.match(r.stderr, re, out(r));
    assert.ok(!fs.existsSync(target), 'nothing restored');
  }
  // No manifest (not a backup, or an unfinished one).
  r = await admin(['restore', taken, '--data', path.join(TMP, 'never')]);
  assert.equal(r.code, 1, out(r));
  assert.match(r.stderr, /not an iyagi backup/);

  // PostgreSQL: pg_dump is the tool; the exact command is given.
  r = await admin(['backup', '--store', 'postgresql://iyagi@db.example:5432/iyagi', path.join(TMP, 'pg')]);
  assert.equal(r.code, 2, out(r));
  assert.match(r.stderr, /pg_dump --format=custom --file=\S+ 'postgresql:\/\/iyagi@db\.example:5432\/iyagi'/);
  r = await admin(['restore', good, '--store', 'postgresql://iyagi@db.example:5432/iyagi']);
  assert.equal(r.code, 2, out(r));
  assert.match(r.stderr, /pg_restore/);

  // With no server running the command opens the store itself.
  assert.equal((await srv.stop()).code, 0);
  const offline = path.join(TMP, 'fm-offline');
  r = await admin(['backup', '--data', srv.dataDir, offline]);
  assert.equal(r.code, 0, out(r));
  assert.match(r.stdout, /no server was running/);

  // A non-empty directory: refused without --force; with it, moved aside (never deleted).
  const into = path.join(TMP, 'fm-into');
  fs.mkdirSync(into);
  fs.writeFileSync(path.join(into, 'old-file'), 'old');
  r = await admin(['restore', offline, '--data', into]);
  assert.equal(r.code, 1, out(r));
  assert.match(r.stderr, /is not empty/);
  r = await admin(['restore', offline, '--data', into, '--force']);
  assert.equal(r.code, 0, out(r));
  const aside = /kept in (\S+)/.exec(r.stdout)?.[1];
  assert.ok(aside && fs.readFileSync(path.join(aside, 'old-file'), 'utf8') === 'old', out(r));

  const srv2 = await serverOn(into);
  const h = await api(srv2, 'GET', `/v1/channels/${sent.body.message.channel}/messages`, { token: v.token });
  assert.equal(h.status, 200, show(h));
  assert.deepEqual(h.body.messages.map((m) => m.text), ['kept in the backup']);
  assert.equal((await srv2.stop()).code, 0);
});

test('a server whose data directory is too long for an admin socket: restore still refused (its LOCK), backup explains', { ...T, skip: !EMBEDDED && 'the embedded store' }, async () => {
  const long = path.join(TMP, 'd'.repeat(110));
  const srv = await serverOn(long);
  assert.match(srv.stderrTail(), /too long for a Unix socket: no admin socket/);
  assert.ok(!fs.existsSync(path.join(long, 'admin.sock')));
  let r = await admin(['restore', path.join(TMP, 'fm-good'), '--data', long, '--force']);
  assert.equal(r.code, 1, out(r));
  assert.match(r.stderr, /a server is running on/, 'found by RocksDB\'s LOCK');
  r = await admin(['backup', '--data', long, path.join(TMP, 'long-b')]);
  assert.equal(r.code, 1, out(r));
  assert.match(r.stderr, /cannot open the store/);
  assert.ok(!fs.existsSync(path.join(TMP, 'long-b')) && !fs.existsSync(path.join(TMP, 'long-b.tmp')));
  assert.equal((await srv.stop()).code, 0);
});

test('a server killed (SIGKILL) or stopped (SIGTERM) during a backup leaves no OUT', { ...T, skip: !EMBEDDED && 'the embedded store' }, async () => {
  // The server holds each backup, fully written, for a while before its rename.
  const srv = track(await startServer({ env: { IYAGI_TEST_BACKUP_PAUSE_MS: '3000' } }));
  const [u, v] = [await newUser(srv, 'kk'), await newUser(srv, 'kl')];
  assert.equal((await api(srv, 'POST', `/v1/users/${v.user.id}/messages`, { token: u.token, body: { text: 'hello' } })).status, 201);

  const dest = path.join(TMP, 'killed');
  const run = admin(['backup', '--data', srv.dataDir, dest]);
  const until = Date.now() + ms(20000);
  while (!fs.existsSync(path.join(`${dest}.tmp`, 'manifest'))) {
    assert.ok(Date.now() < until, 'the backup reached its manifest');
    await sleep(20);
  }
  await srv.kill();
  let r = await run;
  assert.equal(r.code, 1, out(r));
  assert.match(r.stderr, /without an answer/);
  assert.ok(!fs.existsSync(dest), 'no OUT after a crash mid-backup');
  assert.ok(fs.existsSync(path.join(srv.dataDir, 'admin.sock')), 'the crash left its socket');

  // The next start replaces the stale socket; OUT.tmp blocks that name until removed.
  await srv.start();
  r = await admin(['backup', '--data', srv.dataDir, dest]);
  assert.equal(r.code, 1, out(r));
  assert.match(r.stderr, /killed\.tmp exists \(left by a backup that was interrupted\)/);
  fs.rmSync(`${dest}.tmp`, { recursive: true });

  // SIGTERM during a backup: the server stops cleanly and abandons it, leaving nothing.
  const run2 = admin(['backup', '--data', srv.dataDir, dest]);
  while (!fs.existsSync(path.join(`${dest}.tmp`, 'manifest'))) await sleep(20);
  const stopped = await srv.stop();
  assert.equal(stopped.code, 0);
  r = await run2;
  assert.equal(r.code, 1, out(r));
  assert.match(r.stderr, /the server is stopping: backup abandoned/);
  assert.ok(!fs.existsSync(dest) && !fs.existsSync(`${dest}.tmp`), 'neither OUT nor OUT.tmp');
});

test('PostgreSQL store: admin backup names pg_dump and exits non-zero', { ...T, skip: EMBEDDED && 'IYAGI_E2E_STORE=postgres only' }, async () => {
  const url = await pgCreateDb();
  const r = await admin(['backup', '--store', url, path.join(TMP, 'pg')]);
  assert.equal(r.code, 2, out(r));
  assert.ok(r.stderr.includes(`pg_dump --format=custom`) && r.stderr.includes(url), out(r));
  assert.ok(!fs.existsSync(path.join(TMP, 'pg')));
});
