// net.js — the iyagi client protocol (shared/PROTOCOL.md, version 1): the HTTP API and the
// chat WebSocket with heartbeat, reconnect with backoff and request/answer matching by rid.

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
const BACKOFF_MIN = 500;
const BACKOFF_MAX = 15000;

/**
 * The chat socket. Callbacks: onReady(readyFrame, isReconnect), onFrame(frame),
 * onState({state, retryAt}), onAuthFailed(). Reconnects by itself until stop().
 */
export class ChatSocket {
  constructor({ token, url, onReady, onFrame, onState, onAuthFailed }) {
    this.token = token;
    this.urls = [...new Set([url, sameHostUrl()].filter(Boolean))];
    this.urlIndex = 0;
    this.onReady = onReady;
    this.onFrame = onFrame;
    this.onState = onState;
    this.onAuthFailed = onAuthFailed;
    this.ws = null;
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
    window.removeEventListener('online', this._onOnline);
    clearTimeout(this.retryTimer);
    clearInterval(this.hbTimer);
    if (this.ws) { try { this.ws.close(1000, 'bye'); } catch { /* closed */ } }
    this._failPending('closed');
  }

  /** reconnect now if waiting for a retry */
  connectNow() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.retryTimer);
    this.attempt = 0;
    this._connect();
  }

  _setState(state, retryAt = 0) {
    this.state = state;
    this.onState && this.onState({ state, retryAt });
  }

  _connect() {
    if (this.stopped) return;
    this._setState('connecting');
    const url = this.urls[this.urlIndex % this.urls.length];
    let ws;
    try { ws = new WebSocket(url); } catch { this._scheduleRetry(); return; }
    this.ws = ws;
    let opened = false;
    let authFailed = false;
    ws.onopen = () => {
      opened = true;
      this.lastHeard = Date.now();
      ws.send(JSON.stringify({ op: 'auth', token: this.token }));
      clearInterval(this.hbTimer);
      this.hbTimer = setInterval(() => {
        if (ws.readyState !== WebSocket.OPEN) return;
        if (Date.now() - this.lastHeard > SILENCE_MS) { ws.close(4000, 'silent'); this._dropped(ws); return; }
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
        const again = this.everReady;
        this.ready = true;
        this.everReady = true;
        this.attempt = 0;
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
      if (ws !== this.ws) return;
      const wasReady = this.ready;
      if (!opened) this.urlIndex++;   // could not connect at all: try the other address next time
      if (ev.code === 1008 && (authFailed || /auth|logged out/i.test(ev.reason || '') || !wasReady)) {
        // the token may be dead (logout elsewhere): let the app check before retrying
        this._dropped(ws);
        this.onAuthFailed && this.onAuthFailed();
        return;
      }
      this._dropped(ws);
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  _dropped(ws) {
    if (ws !== this.ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    this.ws = null;
    this.ready = false;
    clearInterval(this.hbTimer);
    this._failPending('disconnected');
    this._scheduleRetry();
  }

  _scheduleRetry() {
    if (this.stopped) return;
    const base = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** this.attempt);
    const delay = Math.round(base / 2 + Math.random() * base / 2);
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
