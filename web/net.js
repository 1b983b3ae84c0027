// net.js — the iyagi client protocol (shared/PROTOCOL.md, version 1): the HTTP API and the
// chat WebSocket with heartbeat, discovery, reconnect with backoff and request/answer matching
// by rid.
//
// The socket's life (ChatSocket), one node of a cluster at a time:
//
//      start / connectNow / retry timer
//              |
//              v
//   DISCOVER  GET /v1/discovery -> the node with the most spare capacity (skipping nodes that
//      |      failed us in the last SUSPECT_MS); if discovery itself fails: the last URL, then
//      |      the page's own host. (Skipped once, for the ws_url login has just handed out.)
//      v
//   CONNECT   WebSocket open, {"op":"auth"} sent; not ready within CONNECT_MS: a failure
//      |  \___ closed before ready -----------------------------.
//      v                                                        |
//   ONLINE    ready: attempt = 0, gen++; the app syncs from its   |
//      |      pos and resends its unacknowledged sends (same cmid)|
//      |                                                          v
//      +-- close 1012 (node draining) ------------------> DISCOVER at once (no back-off)
//      +-- any other loss (kill, network, silence) -----> WAIT: 250 ms x 2^attempt, <= 10 s,
//      |                                                  ±30 % jitter, then DISCOVER
//      +-- 1008 before/at auth -------------------------> onAuthFailed (the app checks the token)
//
// Invariants: at most one socket or discovery request at a time (`busy`); a close or answer
// from an abandoned attempt is ignored (compared against `this.ws` / `this.tryId`); the URL a
// socket was lost on is never reused blindly: discovery is asked first.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** one HTTP call: JSON in, JSON out; throws ApiError (status 0 when the server is unreachable) */
export async function api(method, path, { body, token } = {}) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  let r;
  try {
    r = await fetch(path, {
      method, headers, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'network', 'Cannot reach the server.');
  }
  if (r.status === 204) return null;
  let data = null;
  try { data = await r.json(); } catch { /* no JSON body */ }
  if (!r.ok) {
    const e = data && data.error;
    throw new ApiError(r.status, (e && e.code) || `http_${r.status}`, (e && e.message) || `HTTP ${r.status}`);
  }
  return data;
}

/** an error answer (JSON {error:{code,message}} or not) as an ApiError */
async function errorOf(r) {
  let data = null;
  try { data = await r.json(); } catch { /* no JSON body */ }
  const e = data && data.error;
  return new ApiError(r.status, (e && e.code) || `http_${r.status}`, (e && e.message) || `HTTP ${r.status}`);
}

/** GET of bytes that need the token (an attachment, its thumbnail): a Blob; throws ApiError */
export async function apiBlob(path, { token, signal } = {}) {
  let r;
  try {
    r = await fetch(path, { headers: token ? { Authorization: `Bearer ${token}` } : {}, cache: 'no-store', signal });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'Cannot reach the server.');
  }
  if (!r.ok) throw await errorOf(r);
  return r.blob();
}

/** the server's default --max-upload (25 MB, as MiB): larger files are refused before uploading */
export const MAX_UPLOAD = 25 * 1024 * 1024;

/**
 * POST /v1/uploads?name=… with a File (or Blob) as the raw body: {promise, abort}. The promise
 * resolves with the attachment ({id, name, type, size, thumb?}) and rejects with an ApiError
 * (code 'aborted' after abort()). XMLHttpRequest rather than fetch for the one thing fetch does
 * not give: upload progress, onProgress(fraction); like fetch it streams the file from disk, it
 * never reads it into memory.
 */
export function uploadFile(file, name, { token, onProgress } = {}) {
  const x = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    x.open('POST', `/v1/uploads?name=${encodeURIComponent(name)}`);
    if (token) x.setRequestHeader('Authorization', `Bearer ${token}`);
    // the server sniffs the type from the bytes; the browser's guess is only a hint
    x.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
    x.responseType = 'json';
    if (onProgress) x.upload.onprogress = (e) => { if (e.lengthComputable && e.total) onProgress(e.loaded / e.total); };
    x.onload = () => {
      const data = x.response;
      if (x.status === 201 && data && data.attachment) { resolve(data.attachment); return; }
      const e = data && data.error;
      reject(new ApiError(x.status, (e && e.code) || `http_${x.status}`, (e && e.message) || `HTTP ${x.status}`));
    };
    // a 413 is answered before the body has all gone and the connection closed: some browsers
    // report that as a network error, so a refusal of size still reads as one
    x.onerror = () => reject(file.size > MAX_UPLOAD
      ? new ApiError(413, 'too_large', 'The file is too large.')
      : new ApiError(0, 'network', 'Cannot reach the server.'));
    x.onabort = () => reject(new ApiError(0, 'aborted', 'Cancelled.'));
    x.send(file);
  });
  return { promise, abort: () => x.abort() };
}

/** a human sentence for an error, with "not available yet" for features the server lacks */
export function describeError(e) {
  if (!e) return 'Something went wrong.';
  if (e.code === 'unavailable') return 'This is not available on this server yet.';
  if (e.code === 'network') return 'Cannot reach the server. Check your connection.';
  return e.message || String(e);
}

const HEARTBEAT_MS = 5000;      // the contract: a heartbeat every 5 s
const SILENCE_MS = 15000;       // nothing heard for this long: the connection is dead
const REQUEST_MS = 15000;
const BACKOFF_MIN = 250;        // first wait after a loss, doubling per failed attempt...
const BACKOFF_MAX = 10000;      // ...up to this
const JITTER = 0.3;             // ±30 %, so that the clients of a dead node do not come back together
const DISCOVERY_MS = 4000;      // a discovery answer slower than this counts as a failure
const CONNECT_MS = 8000;        // open + ready slower than this: give up on that node
const SUSPECT_MS = 15000;       // a node that failed us is skipped for this long (discovery drops
                                // a dead node within 10 s; until then it may still be named)
const CLOSE_SERVICE_RESTART = 1012;

/**
 * Asks the server which chat node to use: {ws_url, node, nodes?} (nodes: [{node, ws_url,
 * connections, capacity}], in a cluster). Null when discovery cannot be reached or answers
 * nonsense; never throws.
 */
export async function discover(timeoutMs = DISCOVERY_MS) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  try {
    const r = await fetch('/v1/discovery', { cache: 'no-store', signal: ctl.signal });
    if (!r.ok) return null;
    const d = await r.json();
    return d && typeof d.ws_url === 'string' && /^wss?:\/\//.test(d.ws_url) ? d : null;
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The ws_url to use from a discovery answer: its own choice unless that node failed us
 * recently, else the live node with the most spare capacity that did not; the answer's choice
 * when every node is suspect.
 */
export function pickNode(d, suspect = new Map(), now = Date.now()) {
  const bad = (u) => (suspect.get(u) || 0) > now;
  if (!bad(d.ws_url)) return d.ws_url;
  const nodes = Array.isArray(d.nodes) ? d.nodes.filter((n) => n && typeof n.ws_url === 'string' && !bad(n.ws_url)) : [];
  const spare = (n) => (Number(n.capacity) || 0) - (Number(n.connections) || 0);
  nodes.sort((a, b) => spare(b) - spare(a));
  return nodes.length ? nodes[0].ws_url : d.ws_url;
}

/**
 * The chat socket. Callbacks: onReady(readyFrame, isReconnect), onFrame(frame),
 * onState({state, retryAt}), onAuthFailed(). Reconnects by itself until stop().
 * `url` is the ws_url login answered; `fresh` says it was just handed out, so the first
 * connection uses it without asking discovery again.
 */
export class ChatSocket {
  constructor({ token, url, fresh = false, onReady, onFrame, onState, onAuthFailed }) {
    this.token = token;
    this.url = url || sameHostUrl();   // the node used last: the fallback when discovery fails
    this.fresh = !!url && fresh;
    this.suspect = new Map();          // ws_url -> time (ms) until which it is not chosen
    this.fallback = 0;                 // discovery down: alternate the last URL and the page's host
    this.node = null;                  // discovery's name of the node in use, when it said
    this.lastClose = null;             // {code, reason, at}: how the last socket ended
    this.onReady = onReady;
    this.onFrame = onFrame;
    this.onState = onState;
    this.onAuthFailed = onAuthFailed;
    this.ws = null;
    this.busy = false;       // a discovery request or a socket is under way
    this.tryId = 0;          // one per attempt; answers of an abandoned attempt are dropped
    this.ready = false;
    this.everReady = false;
    this.gen = 0;            // one per authenticated connection
    this.attempt = 0;
    this.stopped = false;
    this.pending = new Map(); // rid -> {resolve, reject, timer}
    this.ridSeq = 0;
    this.retryTimer = null;
    this.hbTimer = null;
    this.lastHeard = 0;
    this.state = 'connecting';
    this._onOnline = () => this.connectNow();
    window.addEventListener('online', this._onOnline);
  }

  start() { this._connect(); }

  stop() {
    this.stopped = true;
    this.tryId++;
    window.removeEventListener('online', this._onOnline);
    clearTimeout(this.retryTimer);
    clearInterval(this.hbTimer);
    if (this.ws) { try { this.ws.close(1000, 'bye'); } catch { /* closed */ } }
    this._failPending('closed');
  }

  /** reconnect now if waiting for a retry */
  connectNow() {
    if (this.stopped || this.busy) return;
    clearTimeout(this.retryTimer);
    this.attempt = 0;
    this._connect();
  }

  _setState(state, retryAt = 0) {
    this.state = state;
    this.onState && this.onState({ state, retryAt });
  }

  _suspectUrl(url) { this.suspect.set(url, Date.now() + SUSPECT_MS); }

  /** DISCOVER, then CONNECT (see the diagram at the top) */
  async _connect() {
    if (this.stopped || this.busy) return;
    this.busy = true;
    const id = ++this.tryId;
    clearTimeout(this.retryTimer);
    this._setState('connecting');
    let url;
    if (this.fresh) {
      url = this.url;
      this.fresh = false;
    } else {
      const d = await discover();
      if (id !== this.tryId || this.stopped) return;
      if (d) {
        url = pickNode(d, this.suspect);
        const n = Array.isArray(d.nodes) && d.nodes.find((x) => x && x.ws_url === url);
        this.node = n ? n.node : url === d.ws_url ? d.node || null : null;
        // every node failed us lately: try the page's own host every other time
        if ((this.suspect.get(url) || 0) > Date.now() && this.fallback++ % 2) url = sameHostUrl();
      } else {
        // discovery itself is down: the node used last, then the page's own host
        const urls = [...new Set([this.url, sameHostUrl()])];
        url = urls[this.fallback++ % urls.length];
      }
    }
    this._open(url);
  }

  _open(url) {
    let ws;
    try { ws = new WebSocket(url); } catch {
      this.busy = false;
      this._suspectUrl(url);
      this._scheduleRetry();
      return;
    }
    this.ws = ws;
    this.url = url;
    let authFailed = false;
    // a node that accepts nothing (dead machine, full backlog) must not hold us
    const guard = setTimeout(() => {
      if (ws !== this.ws || this.ready) return;
      this._suspectUrl(url);
      try { ws.close(4001, 'connect timeout'); } catch { /* closed */ }
      this._dropped(ws);
    }, CONNECT_MS);
    ws.onopen = () => {
      this.lastHeard = Date.now();
      ws.send(JSON.stringify({ op: 'auth', token: this.token }));
      clearInterval(this.hbTimer);
      this.hbTimer = setInterval(() => {
        if (ws.readyState !== WebSocket.OPEN) return;
        if (Date.now() - this.lastHeard > SILENCE_MS) {
          this._suspectUrl(url);
          ws.close(4000, 'silent');
          this._dropped(ws);
          return;
        }
        ws.send('{"op":"hb"}');
      }, HEARTBEAT_MS);
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this.lastHeard = Date.now();
      let f;
      try { f = JSON.parse(ev.data); } catch { return; }
      if (!f || typeof f.op !== 'string') return;
      if (f.op === 'hb') return;
      if (f.op === 'ready') {
        clearTimeout(guard);
        const again = this.everReady;
        this.ready = true;
        this.everReady = true;
        this.attempt = 0;
        this.fallback = 0;
        this.suspect.delete(url);
        this.gen++;
        this._setState('online');
        this.onReady && this.onReady(f, again);
        return;
      }
      if (!this.ready && f.op === 'error' && f.code === 'unauthorized') authFailed = true;
      if (f.rid !== undefined && this.pending.has(f.rid) && f.op !== 'ack') {
        const p = this.pending.get(f.rid);
        this.pending.delete(f.rid);
        clearTimeout(p.timer);
        if (f.op === 'error') p.reject(Object.assign(new Error(f.message || f.code), { code: f.code }));
        else p.resolve(f);
        return;
      }
      this.onFrame && this.onFrame(f);
    };
    ws.onclose = (ev) => {
      clearTimeout(guard);
      if (ws !== this.ws) return;
      const wasReady = this.ready;
      this.lastClose = { code: ev.code, reason: ev.reason || '', at: Date.now() };
      if (ev.code === 1008 && (authFailed || /auth|logged out/i.test(ev.reason || '') || !wasReady)) {
        // the token may be dead (logout elsewhere): let the app check before retrying
        this._dropped(ws);
        this.onAuthFailed && this.onAuthFailed();
        return;
      }
      // the node went away (killed, draining, unreachable): do not pick it again blindly
      if (ev.code !== 1000) this._suspectUrl(url);
      // 1012 "service restart": the node drains; another one is ready, go at once
      this._dropped(ws, { now: ev.code === CLOSE_SERVICE_RESTART && wasReady });
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  _dropped(ws, { now = false } = {}) {
    if (ws !== this.ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    this.ws = null;
    this.ready = false;
    this.busy = false;
    clearInterval(this.hbTimer);
    this._failPending('disconnected');
    if (now && !this.stopped) {
      this.attempt = 0;
      this._connect();
    } else {
      this._scheduleRetry();
    }
  }

  _scheduleRetry() {
    if (this.stopped) return;
    const base = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** this.attempt);
    const delay = Math.round(base * (1 - JITTER + Math.random() * 2 * JITTER));
    this.attempt++;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this._connect(), delay);
    this._setState('offline', Date.now() + delay);
  }

  _failPending(why) {
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(Object.assign(new Error(why), { code: why }));
    }
    this.pending.clear();
  }

  /** send a frame if authenticated; false otherwise */
  send(obj) {
    if (!this.ready || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  /** send a frame with a fresh rid and wait for its answer */
  request(obj) {
    return new Promise((resolve, reject) => {
      const rid = `r${++this.ridSeq}`;
      if (!this.send({ ...obj, rid })) { reject(Object.assign(new Error('offline'), { code: 'offline' })); return; }
      const timer = setTimeout(() => {
        this.pending.delete(rid);
        reject(Object.assign(new Error('timeout'), { code: 'timeout' }));
      }, REQUEST_MS);
      this.pending.set(rid, { resolve, reject, timer });
    });
  }
}

function sameHostUrl() {
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/v1/ws`;
}
