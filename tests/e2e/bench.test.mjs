// bench.test.mjs — the instruments of issue 15 in iyagi-bench, against the real server: the
// chat scenario (1 in flight per sender), server CPU and read+write syscalls per message over
// the measured window, CPU by thread, --db-pid; and what happens when a pid is wrong (the run
// goes on, the figures it cannot read are left out, nothing is made up) or an option is bad.
// iyagi-bench sits next to the iyagid under test (build/rel or build/asan); without it, skip.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { withServer, newUser, ms, mapLimit, IYAGID } from './lib/harness.mjs';

const BENCH = path.join(path.dirname(IYAGID), 'iyagi-bench');
const skip = fs.existsSync(BENCH) ? false : `no ${BENCH} (make all builds it)`;

/** a users file for iyagi-bench ("id name token" lines) with n fresh users of srv */
async function usersFile(srv, n) {
  const users = await mapLimit([...Array(n).keys()], 8, () => newUser(srv, 'bn'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iyagi-bench-test-'));
  const file = path.join(dir, 'users.txt');
  fs.writeFileSync(file, users.map((u) => `${u.user.id} ${u.username} ${u.token}\n`).join(''));
  return { file, dir };
}

/** runs iyagi-bench; {code, out, json: its last JSON line or null} */
function bench(args, timeoutMs = ms(60000)) {
  return new Promise((resolve, reject) => {
    const p = spawn(BENCH, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    const timer = setTimeout(() => { p.kill('SIGTERM'); reject(new Error(`iyagi-bench timed out:\n${out}`)); }, timeoutMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      const line = out.split('\n').filter((l) => l.startsWith('{')).pop();
      resolve({ code, out, json: line ? JSON.parse(line) : null });
    });
  });
}

/** a pid that no process has now: a child that has exited and been reaped */
function deadPid() {
  const r = spawnSync('sh', ['-c', 'echo $$']);
  return Number(String(r.stdout).trim());
}

const common = (srv, file) => ['--users', file, '--port', String(srv.port), '--workers', '1', '--addrs', '2',
  '--warmup', '0.5', '--duration', '2'];

test('chat: server CPU and syscalls per message over the window, by thread, checked and consistent', { skip, timeout: ms(120000) }, () =>
  withServer({}, async (srv) => {
    const { file, dir } = await usersFile(srv, 20);
    try {
      const pid = srv.proc.pid;
      // The server's own pid as --db-pid too: the "database" is then the same process, so its
      // CPU per message must be the server's (to a clock tick); a check of the arithmetic.
      const r = await bench(['chat', '--count', '10', ...common(srv, file), '--server-pid', String(pid),
        '--db-pid', String(pid), '--label', 't-chat']);
      assert.equal(r.code, 0, r.out);
      const j = r.json;
      assert.equal(j.scenario, 'chat');
      assert.equal(j.shape, 'chat');
      assert.equal(j.window, 1, 'chat is one message in flight per sender');
      assert.equal(j.errors, 0);
      assert.equal(j.lost, 0);
      assert.ok(j.delivered_per_s > 0, r.out);
      assert.ok(j.win_cpu_s > 0 && j.cpu_pct > 0 && j.us_per_msg > 0, r.out);
      // Each delivered message took at least the sender's read and a write to the recipient.
      assert.ok(j.syscalls_per_msg >= 1, r.out);
      assert.ok(Math.abs(j.syscalls_per_msg - j.reads_per_msg - j.writes_per_msg) < 0.01);
      assert.ok(Array.isArray(j.threads) && j.threads.length >= 1, r.out);
      // /proc counts CPU in clock ticks (10 ms): each reading may be a tick off, per thread too.
      const tick = 1e4 / (j.delivered_per_s * j.duration_s);   // µs per message of one tick
      const byThreads = j.threads.reduce((s, t) => s + t.us_per_msg, 0);
      assert.ok(byThreads <= j.us_per_msg * 1.05 + 2 * tick * j.threads.length,
        `threads ${byThreads} vs process ${j.us_per_msg}`);
      assert.ok(Math.abs(j.db_us_per_msg - j.us_per_msg) <= j.us_per_msg * 0.05 + 3 * tick,
        `db ${j.db_us_per_msg} vs server ${j.us_per_msg}`);
      assert.match(r.out, /us CPU per message; [\d.]+ read\+write syscalls per message/);
      assert.equal(j.us_per_delivery, undefined, 'per delivery is a group figure');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }));

test('wrong pids: the run goes on, figures that cannot be read are left out; bad options exit 2', { skip, timeout: ms(120000) }, () =>
  withServer({}, async (srv) => {
    const { file, dir } = await usersFile(srv, 4);
    try {
      const gone = deadPid();
      const r = await bench(['direct', '--count', '2', '--rate', '200', ...common(srv, file), '--server-pid', String(gone),
        '--db-pid', String(gone), '--label', 't-gone']);
      assert.equal(r.code, 0, r.out);
      assert.equal(r.json.shape, 'fixed-rate');
      assert.equal(r.json.errors, 0);
      for (const k of ['us_per_msg', 'cpu_pct', 'syscalls_per_msg', 'threads', 'db_us_per_msg', 'db_cpu_pct'])
        assert.equal(r.json[k], undefined, `${k} without a process to read`);
      // Without --server-pid at all: the same, no server figures.
      const n = await bench(['chat', '--count', '2', ...common(srv, file), '--label', 't-none']);
      assert.equal(n.code, 0, n.out);
      assert.equal(n.json.us_per_msg, undefined);
      // A chat of more pairs than the file has users, an option without its value: usage errors.
      const big = await bench(['chat', ...common(srv, file)]);
      assert.equal(big.code, 2, big.out);
      assert.match(big.out, /needs 1000 users/);
      const noval = await bench(['chat', ...common(srv, file), '--db-pid']);
      assert.equal(noval.code, 2, noval.out);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }));
