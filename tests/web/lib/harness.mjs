// harness.mjs — the web client's browser tests: one iyagid per test file (free port, fresh
// data directory), Debian's Chromium driven by playwright-core, and helpers that act like a person.
//
// Environment: IYAGID (server binary, default <repo>/build/rel/iyagid), CHROMIUM (default
// /usr/bin/chromium), IYAGI_WEB_VERBOSE=1 (server stderr and page console to ours),
// IYAGI_WEB_HEADFUL=1 (show the browser).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..', '..');
export const IYAGID = path.resolve(REPO, process.env.IYAGID || 'build/rel/iyagid');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const VERBOSE = !!process.env.IYAGI_WEB_VERBOSE;
export const sleep = (n) => new Promise((r) => setTimeout(r, n));

const LIVE = new Set();
process.on('exit', () => { for (const p of LIVE) { try { p.kill('SIGKILL'); } catch { /* gone */ } } });

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

export class Server {
  constructor(opts = {}) { this.opts = opts; this.port = 0; this.dir = null; this.proc = null; this.log = ''; }
  get url() { return `http://127.0.0.1:${this.port}`; }
  get running() { return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null; }

  async start() {
    if (!fs.existsSync(IYAGID)) throw new Error(`iyagid not found at ${IYAGID}: run make first`);
    if (!this.dir) this.dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'iyagi-web-'));
    for (let attempt = 0; ; attempt++) {
      if (!this.port) this.port = await freePort();
      try { await this._spawn(); return this; } catch (e) {
        if (attempt < 3 && /in use|bind/i.test(this.log.slice(-2000))) { this.port = 0; continue; }
        throw e;
      }
    }
  }

  async _spawn() {
    // Every person of a suite signs up from 127.0.0.1: the per-address limits would stop the
    // eleventh; tests/e2e/ratelimit.test.mjs covers the limits themselves.
    const args = ['--listen', `127.0.0.1:${this.port}`, '--data', this.dir, '--rate-limits', 'off', ...(this.opts.args || [])];
    const proc = spawn(IYAGID, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    LIVE.add(proc);
    const onData = (d) => { this.log = (this.log + d).slice(-100000); if (VERBOSE) process.stderr.write(d); };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    this.exited = new Promise((res) => proc.on('close', (code, signal) => { LIVE.delete(proc); res({ code, signal }); }));
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`iyagid exited early:\n${this.log.slice(-3000)}`);
      try {
        const r = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(1000) });
        await r.arrayBuffer();
        if (r.status === 200) return;
      } catch { /* not yet */ }
      await sleep(50);
    }
    proc.kill('SIGKILL');
    throw new Error(`iyagid did not become healthy:\n${this.log.slice(-3000)}`);
  }

  /** SIGTERM, wait (SIGKILL after 20 s) */
  async stop() {
    if (!this.running) return;
    this.proc.kill('SIGTERM');
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 20000);
    await this.exited;
    clearTimeout(t);
  }

  /** start again after stop(), on the same port with the same data */
  async up() { await this._spawn(); }

  /** stop, then start again on the same port with the same data */
  async restart(downMs = 0) {
    await this.stop();
    if (downMs) await sleep(downMs);
    await this._spawn();
  }

  async close() {
    await this.stop();
    if (this.dir) await fsp.rm(this.dir, { recursive: true, force: true });
  }
}

export async function startServer(opts) { return new Server(opts).start(); }

export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: !process.env.IYAGI_WEB_HEADFUL,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 800 };

/** a new browser context (one "person") with a page on the server's /; `permissions` are granted
 * to it; `bypassCSP` only for injecting a test tool (axe-core) into the page */
export async function newPerson(browser, server, { viewport = DESKTOP, mobile = false, permissions, bypassCSP = false } = {}) {
  const context = await browser.newContext({ viewport, isMobile: mobile, hasTouch: mobile, deviceScaleFactor: 1, bypassCSP });
  if (permissions) await context.grantPermissions(permissions, { origin: server.url });
  context.setDefaultTimeout(10000);
  const page = await context.newPage();
  watch(page);
  await page.goto(server.url + '/');
  return { context, page };
}

/** collect page errors so that a test can assert none happened */
export function watch(page) {
  page.errors = [];
  page.on('pageerror', (e) => { page.errors.push(String(e)); if (VERBOSE) console.error('[pageerror]', e); });
  page.on('console', (m) => {
    if (VERBOSE) console.error(`[console.${m.type()}]`, m.text());
    // The page is served with a strict CSP: anything it blocks is a defect of the client or the policy.
    if (/Content.Security.Policy/i.test(m.text())) page.errors.push(`CSP: ${m.text()}`);
  });
  page.on('dialog', (d) => { page.errors.push(`unexpected dialog: ${d.message()}`); d.dismiss().catch(() => {}); });
}

let uniq = 0;
export const uname = (base) => `${base}${process.pid % 1000}${++uniq}`.slice(0, 32);
export const PASSWORD = 'correct horse 1';

/** sign up through the form; waits for the app to be shown and connected */
export async function signUp(page, username, displayName) {
  await page.getByRole('tab', { name: 'Sign up' }).click();
  await page.getByLabel('Username', { exact: true }).fill(username);
  if (displayName) await page.getByLabel(/Display name/).fill(displayName);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.locator('#app').waitFor({ state: 'visible' });
  await waitOnline(page);
  return page.evaluate(() => JSON.parse(localStorage.getItem('iyagi.session')));
}

export async function logIn(page, username) {
  await page.getByRole('tab', { name: 'Log in' }).click();
  await page.getByLabel('Username', { exact: true }).fill(username);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator('#app').waitFor({ state: 'visible' });
  await waitOnline(page);
}

export async function waitOnline(page, timeout = 15000) {
  await page.locator('#conn[data-state="online"]').waitFor({ timeout });
}

/** start a direct chat by username from the sidebar */
export async function openDirect(page, username) {
  await page.getByLabel('Start a chat with (username)').fill(username);
  await page.getByRole('button', { name: 'Chat', exact: true }).click();
  await page.locator('#composer').waitFor({ state: 'visible' });
}

/** open a conversation from the list by its title */
export async function openChat(page, title) {
  await page.locator('#chat-list .chat-item', { has: page.locator('.ci-name', { hasText: title }) }).first().click();
  await page.locator('#composer').waitFor({ state: 'visible' });
}

/** type and send with the Enter key */
export async function send(page, text) {
  const box = page.getByLabel('Message', { exact: true });
  await box.fill(text);
  await box.press('Enter');
}

/** the texts of the stored (seq-numbered) messages in the open conversation, in order */
export async function texts(page) {
  return page.locator('#msgs li.msg .text').allTextContents();
}

/** wait until the open conversation shows a message whose text equals `text` */
export async function waitForText(page, text, timeout = 10000) {
  await page.locator('#msgs li.msg[data-seq] .text', { hasText: text }).first().waitFor({ timeout });
}

/** HTTP helper for setting the scene (not for what the tests check) */
export async function api(server, method, p, { body, token } = {}) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(server.url + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  return { status: r.status, data };
}

/** true when the server answers this endpoint with anything but 503 unavailable */
export async function httpFeature(server, token, method, p, body) {
  const r = await api(server, method, p, { token, body });
  return !(r.status === 503 && r.data && r.data.error && r.data.error.code === 'unavailable');
}

/**
 * Whether the server implements a WebSocket op: sends `frame` (with a rid) on a fresh socket
 * from inside the page and reports false if it answers error "unavailable" within 1.5 s.
 */
export async function wsFeature(page, token, frame) {
  return page.evaluate(async ({ token, frame }) => new Promise((resolve) => {
    const ws = new WebSocket(`ws://${location.host}/v1/ws`);
    const done = (v) => { try { ws.close(); } catch { /* closed */ } resolve(v); };
    const timer = setTimeout(() => done(true), 1500);
    ws.onopen = () => ws.send(JSON.stringify({ op: 'auth', token }));
    ws.onmessage = (ev) => {
      const f = JSON.parse(ev.data);
      if (f.op === 'ready') ws.send(JSON.stringify({ ...frame, rid: 'probe' }));
      else if (f.rid === 'probe') { clearTimeout(timer); done(!(f.op === 'error' && f.code === 'unavailable')); }
    };
    ws.onerror = () => { clearTimeout(timer); done(true); };
  }), { token, frame });
}

/** no horizontal overflow: the page is not wider than its viewport */
export async function noHorizontalOverflow(page) {
  return page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1 &&
    document.body.scrollWidth <= window.innerWidth + 1 &&
    [...document.querySelectorAll('.sidebar, .chat, .composer, .chat-head, .side-head')]
      .every((e) => e.offsetParent === null || e.getBoundingClientRect().right <= window.innerWidth + 1));
}

export const SHOTS = path.join(REPO, 'docs', 'screenshots');
