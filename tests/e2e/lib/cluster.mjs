// cluster.mjs — a whole iyagi cluster on 127.0.0.1 for the end-to-end tests (issue 11),
// built on harness.mjs: the nodes are harness `Server`s, so everything there (api, newUser,
// connectWs, kill/stop/start/restart, stderr tails) works on each node.
//
//   startCluster({nodes, nats, capacity, presenceTimeout, threads, extraArgs, haproxy})
//       -> {nodes: [Server], nats: [Nats], pgDir, storeUrl, busUrls, haproxy, root, stop(), annotate(e)}
//   startNatsCluster(n) -> [Nats]      n nats-server with routes (deploy/nats-cluster.conf.in)
//   waitForRoutes(nats, timeoutMs)     until every running server routes to every other running one
//   startHaproxy(backends) -> Haproxy  deploy/haproxy.cfg.in in front of [{name, port}]
//   discovery(server)                  GET /v1/discovery -> {ws_url, node, nodes}
//   waitForNodes(server, n, timeoutMs) poll discovery until nodes.length === n
//   natsBinary(), haproxyBinary()      the programs' paths, or null when not installed
//   iyagidHasBus()                     does `iyagid --help` mention --bus
//   freeStablePort()                   a free port below the ephemeral range (safe to restart on)
//
//   nats1 ◄─routes─► nats2 ◄─routes─► nats3          (client, cluster and monitoring ports
//     ▲                 ▲                 ▲            free, on 127.0.0.1; -m = the monitoring
//     └──── --bus nats://…,nats://…,nats://… ─┘        port, polled on /routez)
//   iyagid n1      iyagid n2      iyagid n3          --store: one database of their own PostgreSQL
//
// Everything lives in one temporary directory (the root): nats<i>/ (config and log of each NATS
// server), n<i>/ (each node's --data), haproxy/. stop() kills every process and removes the root;
// the same happens when the test process exits (like the harness's servers). IYAGI_E2E_KEEP=1
// keeps the root (its path is printed). Every node gets --bus with every NATS URL, --node n<i>,
// --public-url its own http://127.0.0.1:PORT; its port, data dir and store are kept, so
// node.start() after node.kill() or node.stop() brings it back as the same node. Nats servers
// likewise restart on their ports and config. Ports are picked below the kernel's ephemeral
// range, so that no outgoing connection takes one while its server is down.
//
// Environment: NATS_SERVER, HAPROXY (the programs; default from PATH, /usr/sbin, /usr/bin).

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  Server, IYAGID, REPO, api, freePort, ms, sleep, startPg, stopPg, pgCreateDb, show,
} from './harness.mjs';

export const NATS_TEMPLATE = path.join(REPO, 'deploy', 'nats-cluster.conf.in');
export const HAPROXY_TEMPLATE = path.join(REPO, 'deploy', 'haproxy.cfg.in');
const KEEP = !!process.env.IYAGI_E2E_KEEP;
const LOG_KEEP = 64 * 1024;

// ---------------------------------------------------------------- small tools

/** the path of program `name` (env override, then PATH, /usr/sbin, /usr/bin), or null */
function findProgram(name, envVar) {
  const dirs = [...(process.env.PATH || '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin'];
  const candidates = process.env[envVar] ? [process.env[envVar]] : dirs.filter(Boolean).map((d) => path.join(d, name));
  for (const p of candidates) {
    try { fs.accessSync(p, fs.constants.X_OK); return p; } catch { /* next */ }
  }
  return null;
}
export const natsBinary = () => findProgram('nats-server', 'NATS_SERVER');
export const haproxyBinary = () => findProgram('haproxy', 'HAPROXY');

/** true when the iyagid under test takes --bus (its --help says so) */
export function iyagidHasBus() {
  try {
    const out = execFileSync(IYAGID, ['--help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return out.includes('--bus');
  } catch (e) {
    // --help may exit non-zero; what it printed still counts.
    return `${e.stdout || ''}${e.stderr || ''}`.includes('--bus');
  }
}

/**
 * The deploy/ templates' rendering: @KEY@ replaced by values[KEY] on every line that is not a
 * comment; a placeholder left without a value throws (scripts/cluster.sh renders the same way).
 */
export function render(templateText, values) {
  return templateText.split('\n').map((line) => {
    if (/^\s*#/.test(line)) return line;
    const out = line.replace(/@([A-Z_]+)@/g, (m, k) => {
      if (!(k in values)) throw new Error(`template: no value for ${m}`);
      return String(values[k]);
    });
    return out;
  }).join('\n');
}

// Ports for servers that restart on the same port are taken below the kernel's ephemeral range:
// while a killed server is down, its port is free, and an outgoing connection (thousands of them
// in a load test) could otherwise be given it as its local port, so that the restart cannot bind.
const EPHEMERAL_LOW = (() => {
  try { return Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768; } catch { return 32768; }
})();
const TAKEN = new Set();

function canBind(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.unref();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** a free loopback port below the ephemeral range (any free port if that range is too small) */
export async function freeStablePort() {
  const lo = 20000;
  const hi = EPHEMERAL_LOW - 1;
  if (hi - lo < 2000) return freePort();
  for (let i = 0; i < 200; i++) {
    const p = lo + Math.floor(Math.random() * (hi - lo));
    if (TAKEN.has(p) || !(await canBind(p))) continue;
    TAKEN.add(p);
    return p;
  }
  return freePort();
}

/** n distinct free loopback ports (below the ephemeral range) */
async function freePorts(n) {
  const set = new Set();
  while (set.size < n) set.add(await freeStablePort());
  return [...set];
}

async function getJson(url, timeoutMs = 1000) {
  const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (r.status !== 200) throw new Error(`GET ${url}: ${r.status}`);
  return r.json();
}

function tcpOpen(port, timeoutMs = 500) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const done = (ok) => { clearTimeout(t); s.destroy(); resolve(ok); };
    const t = setTimeout(() => done(false), timeoutMs);
    s.on('connect', () => done(true));
    s.on('error', () => done(false));
  });
}

// Every process started here, killed if the test process exits without stop().
const LIVE = new Set();
const ROOTS = new Set();
process.on('exit', () => {
  for (const p of LIVE) { try { p.kill('SIGKILL'); } catch { /* gone */ } }
  if (!KEEP) for (const r of ROOTS) { try { fs.rmSync(r, { recursive: true, force: true }); } catch { /* best effort */ } }
});

/**
 * A child process with its output kept (tail in memory, all of it in logFile): the common part of
 * Nats and Haproxy. start() spawns and waits for ready(); an early exit rejects with the log.
 */
class Proc {
  constructor(label, logFile) {
    this.label = label;
    this.logFile = logFile;
    this.proc = null;
    this.exit = null;
    this.logBuf = '';
    this.starts = 0;
  }

  get running() { return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null; }

  logTail(n = 3000) { return this.logBuf.slice(-n); }

  _log(s) {
    this.logBuf += s;
    if (this.logBuf.length > LOG_KEEP) this.logBuf = this.logBuf.slice(-LOG_KEEP);
    try { fs.appendFileSync(this.logFile, s); } catch { /* the root is gone */ }
  }

  /** spawn bin args; resolves once ready() is true, rejects (process killed) otherwise */
  async _spawn(bin, args, ready, timeoutMs) {
    this.starts++;
    this._log(`\n[e2e] start #${this.starts}: ${bin} ${args.join(' ')}\n`);
    const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    LIVE.add(proc);
    for (const s of [proc.stdout, proc.stderr]) { s.setEncoding('utf8'); s.on('data', (d) => this._log(d)); }
    let exited = null;
    this.exit = new Promise((resolve) => {
      proc.on('error', (err) => this._log(`[e2e] spawn error: ${err.message}\n`));
      proc.on('close', (code, signal) => {
        LIVE.delete(proc);
        exited = { code, signal };
        this._log(`[e2e] exited code=${code} signal=${signal}\n`);
        resolve(exited);
      });
    });
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (exited) {
        const e = new Error(`${this.label} exited while starting (code=${exited.code} signal=${exited.signal})\n--- log ---\n${this.logTail()}`);
        e.earlyExit = true;
        throw e;
      }
      if (await ready().catch(() => false)) return;
      await sleep(50);
    }
    await this.kill();
    throw new Error(`${this.label} not ready within ${timeoutMs} ms\n--- log ---\n${this.logTail()}`);
  }

  /** SIGKILL, and wait until the process is gone */
  async kill() {
    if (!this.proc) return null;
    if (this.running) this.proc.kill('SIGKILL');
    return this.exit;
  }

  /** SIGTERM, wait for the exit (SIGKILL after timeoutMs) */
  async stop(timeoutMs = ms(10000)) {
    if (!this.proc) return null;
    if (!this.running) return this.exit;
    this.proc.kill('SIGTERM');
    let timer;
    const r = await Promise.race([this.exit, new Promise((res) => { timer = setTimeout(() => res(null), timeoutMs); })]);
    clearTimeout(timer);
    if (r === null) { this.proc.kill('SIGKILL'); return this.exit; }
    return r;
  }
}

const bindFailed = (e, p) => e.earlyExit && /address already in use|cannot bind|bind:|EADDRINUSE/i.test(p.logTail(2000));

// ---------------------------------------------------------------- NATS

/** One nats-server of the cluster: deploy/nats-cluster.conf.in rendered into its directory. */
export class Nats extends Proc {
  /** ports: {client, cluster, http}; routes: every member's cluster port (its own included) */
  constructor({ name, dir, ports, routes }) {
    super(`nats-server ${name}`, path.join(dir, 'log'));
    this.name = name;
    this.dir = dir;
    this.ports = ports;
    this.routes = routes;
    this.conf = path.join(dir, 'nats.conf');
  }

  get url() { return `nats://127.0.0.1:${this.ports.client}`; }
  get monitorUrl() { return `http://127.0.0.1:${this.ports.http}`; }

  /** start (or start again after kill/stop) on the same ports and config; resolves once /varz answers */
  async start() {
    const bin = natsBinary();
    if (!bin) throw new Error('nats-server not found: apt-get install nats-server (scripts/deps.sh cluster)');
    await fsp.mkdir(this.dir, { recursive: true });
    const tpl = await fsp.readFile(NATS_TEMPLATE, 'utf8');
    await fsp.writeFile(this.conf, render(tpl, {
      NAME: this.name, HOST: '127.0.0.1', CLIENT_PORT: this.ports.client, CLUSTER_PORT: this.ports.cluster,
      HTTP_PORT: this.ports.http, ROUTES: this.routes.map((p) => `nats-route://127.0.0.1:${p}`).join(', '),
    }));
    // -m: the monitoring port, also in the config (http:); the flag wins should they differ.
    await this._spawn(bin, ['-c', this.conf, '-m', String(this.ports.http)],
      async () => { this.serverId = (await getJson(`${this.monitorUrl}/varz`)).server_id; return true; }, ms(10000));
    return this;
  }

  /** kill (if running) and start again: same ports, same config */
  async restart() {
    await this.kill();
    return this.start();
  }

  /** GET /routez */
  routez() { return getJson(`${this.monitorUrl}/routez`); }
}

/** n nats-server with routes to each other, on free ports; resolves once the routes are up */
export async function startNatsCluster(n = 3, { root } = {}) {
  const dir = root || await mkRoot();
  for (let attempt = 0; ; attempt++) {
    const ports = await freePorts(3 * n);
    const clusterPorts = Array.from({ length: n }, (_, i) => ports[3 * i + 1]);
    const nats = Array.from({ length: n }, (_, i) => new Nats({
      name: `nats${i + 1}`, dir: path.join(dir, `nats${i + 1}`),
      ports: { client: ports[3 * i], cluster: ports[3 * i + 1], http: ports[3 * i + 2] }, routes: clusterPorts,
    }));
    const res = await Promise.allSettled(nats.map((x) => x.start()));
    const failed = res.findIndex((r) => r.status === 'rejected');
    if (failed < 0) {
      await waitForRoutes(nats);
      return nats;
    }
    await Promise.all(nats.map((x) => x.kill()));
    // A port taken between freePort() and the server's bind: all new ports (the routes name them).
    if (attempt < 3 && bindFailed(res[failed].reason, nats[failed])) continue;
    throw res[failed].reason;
  }
}

/** Resolves once every running server routes to every other running server (by /routez). */
export async function waitForRoutes(nats, timeoutMs = ms(15000)) {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const live = nats.filter((x) => x.running);
    try {
      const zs = await Promise.all(live.map((x) => x.routez()));
      const ids = zs.map((z) => z.server_id);
      const missing = [];
      zs.forEach((z, i) => {
        const remote = new Set((z.routes || []).map((r) => r.remote_id));
        for (let j = 0; j < ids.length; j++) if (j !== i && !remote.has(ids[j])) missing.push(`${live[i].name}->${live[j].name}`);
      });
      if (missing.length === 0) return;
      last = `missing routes ${missing.join(' ')}`;
    } catch (e) { last = e.message; }
    if (Date.now() > deadline) {
      throw new Error(`NATS routes not up within ${timeoutMs} ms (${last})\n${live.map((x) => `--- ${x.name} ---\n${x.logTail(1500)}`).join('\n')}`);
    }
    await sleep(100);
  }
}

// ---------------------------------------------------------------- HAProxy

/** HAProxy in front of backends [{name, port}]: deploy/haproxy.cfg.in rendered into dir. */
export class Haproxy extends Proc {
  constructor({ dir, port, backends }) {
    super('haproxy', path.join(dir, 'log'));
    this.dir = dir;
    this.port = port;
    this.backends = backends;
    this.cfg = path.join(dir, 'haproxy.cfg');
  }

  get url() { return `http://127.0.0.1:${this.port}`; }

  async start() {
    const bin = haproxyBinary();
    if (!bin) throw new Error('haproxy not found: apt-get install haproxy (scripts/deps.sh cluster)');
    await fsp.mkdir(this.dir, { recursive: true });
    const tpl = await fsp.readFile(HAPROXY_TEMPLATE, 'utf8');
    await fsp.writeFile(this.cfg, render(tpl, {
      BIND: `127.0.0.1:${this.port}`,
      SERVERS: this.backends.map((b) => `    server ${b.name} 127.0.0.1:${b.port}`).join('\n'),
    }));
    // -db: foreground, no daemon; logs (servers going DOWN/UP) on stdout.
    await this._spawn(bin, ['-db', '-f', this.cfg], () => tcpOpen(this.port), ms(10000));
    return this;
  }

  async restart() { await this.kill(); return this.start(); }
}

/** HAProxy on a free port in front of [{name, port}]; dir defaults to a new temporary one */
export async function startHaproxy(backends, { dir } = {}) {
  const d = dir || path.join(await mkRoot(), 'haproxy');
  for (let attempt = 0; ; attempt++) {
    const h = new Haproxy({ dir: d, port: await freeStablePort(), backends });
    try {
      return await h.start();
    } catch (e) {
      if (attempt < 3 && bindFailed(e, h)) continue;
      throw e;
    }
  }
}

// ---------------------------------------------------------------- iyagid nodes

/** A harness Server that joins the cluster: --bus, --node, --public-url (its own port), --capacity. */
class ClusterNode extends Server {
  constructor(opts, { name, busUrls, capacity }) {
    super(opts);
    this.name = name;
    this.busUrls = busUrls;
    this.capacity = capacity;
  }

  args() {
    const a = [...super.args(), '--bus', this.busUrls, '--node', this.name, '--public-url', this.url];
    if (this.capacity !== undefined) a.push('--capacity', String(this.capacity));
    return a;
  }
}

async function mkRoot() {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'iyagi-cluster-'));
  await fsp.chmod(root, 0o755);
  ROOTS.add(root);
  if (KEEP) process.stderr.write(`[e2e] cluster dir ${root}\n`);
  return root;
}

/**
 * Starts `nats` NATS servers (routes up), a PostgreSQL of its own with one database, and `nodes`
 * iyagid nodes on them (each answering /healthz 200); with haproxy: true, HAProxy in front too.
 * capacity: --capacity of every node (a number) or of each (an array). On failure everything
 * started is stopped before the error is thrown.
 */
export async function startCluster({
  nodes = 3, nats = 3, capacity, presenceTimeout, threads, extraArgs = [], haproxy = false,
} = {}) {
  const root = await mkRoot();
  const c = {
    root, nodes: [], nats: [], pgDir: null, storeUrl: null, busUrls: '', haproxy: null,
    stop: () => stopCluster(c),
    annotate: (e) => annotateCluster(c, e),
  };
  try {
    const [n, pg] = await Promise.allSettled([startNatsCluster(nats, { root }), startPg()]);
    if (pg.status === 'fulfilled') c.pgDir = pg.value;
    if (n.status === 'fulfilled') c.nats = n.value;
    if (n.status === 'rejected') throw n.reason;
    if (pg.status === 'rejected') throw pg.reason;
    c.storeUrl = await pgCreateDb(c.pgDir);
    c.busUrls = c.nats.map((x) => x.url).join(',');
    for (let i = 0; i < nodes; i++) {
      const node = new ClusterNode(
        { storeUrl: c.storeUrl, presenceTimeout, threads, extraArgs },
        { name: `n${i + 1}`, busUrls: c.busUrls, capacity: Array.isArray(capacity) ? capacity[i] : capacity },
      );
      node.dataDir = path.join(root, `n${i + 1}`);
      node.port = await freeStablePort();   // kept across restarts (harness Server.start)
      await fsp.mkdir(node.dataDir);
      c.nodes.push(node);
    }
    // Together, as a deployment starts them (the schema migration is theirs to serialize).
    const started = await Promise.allSettled(c.nodes.map((x) => x.start()));
    const bad = started.find((r) => r.status === 'rejected');
    if (bad) throw bad.reason;
    if (haproxy) c.haproxy = await startHaproxy(c.nodes.map((x) => ({ name: x.name, port: x.port })), { dir: path.join(root, 'haproxy') });
    return c;
  } catch (e) {
    await stopCluster(c).catch(() => {});
    throw e;
  }
}

/** Kills everything of cluster c, removes its directories; throws a node's sanitizer report if any. */
async function stopCluster(c) {
  const errors = [];
  if (c.haproxy) await c.haproxy.kill();
  for (const r of await Promise.allSettled(c.nodes.map((x) => x.cleanup()))) if (r.status === 'rejected') errors.push(r.reason);
  await Promise.all(c.nats.map((x) => x.kill()));
  if (c.pgDir) { stopPg(c.pgDir); c.pgDir = null; }
  if (!KEEP) await fsp.rm(c.root, { recursive: true, force: true });
  ROOTS.delete(c.root);
  if (errors.length) throw errors[0];
}

/** Adds every node's stderr tail (and which processes are down) to an error. */
function annotateCluster(c, err) {
  if (!err || typeof err !== 'object' || err.__iyagiCluster) return err;
  err.__iyagiCluster = true;
  const parts = c.nodes.map((x) => `--- node ${x.name} (${x.running ? 'running' : `not running: ${JSON.stringify(x.lastExit)}`}) ---\n${x.stderrTail(1500)}`);
  const down = c.nats.filter((x) => !x.running).map((x) => x.name);
  if (down.length) parts.push(`--- NATS servers not running: ${down.join(' ')}`);
  try { err.message += `\n${parts.join('\n')}`; } catch { /* frozen */ }
  return err;
}

// ---------------------------------------------------------------- discovery

/** GET /v1/discovery on server (a Server or a base URL): {ws_url, node, nodes} */
export async function discovery(server) {
  const r = await api(server, 'GET', '/v1/discovery', { timeoutMs: ms(5000) });
  if (r.status !== 200) throw new Error(`GET /v1/discovery: ${show(r)}`);
  return r.body;
}

/** Polls server's discovery until it lists exactly n nodes; resolves with that answer. */
export async function waitForNodes(server, n, timeoutMs = ms(15000)) {
  const deadline = Date.now() + timeoutMs;
  let last = null;
  for (;;) {
    try {
      last = await discovery(server);
      if (Array.isArray(last.nodes) && last.nodes.length === n) return last;
    } catch (e) { last = e.message; }
    if (Date.now() > deadline) throw new Error(`discovery did not list ${n} nodes within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
    await sleep(100);
  }
}
