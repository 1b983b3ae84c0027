// push_receivers.mjs — the far side of push notifications, for the e2e tests.
//
//   startReceiver({script, port, name}) -> Receiver   an HTTP server on 127.0.0.1 that records
//       every request (method, path, headers, raw body, the status it answered) and answers per a
//       programmable script
//   browserKeys() -> {ecdh, auth, keys:{p256dh, auth}}  what a browser's PushManager.subscribe makes
//   decryptAes128gcm(body, {ecdh, auth})             RFC 8291 / RFC 8188 decryption, as a browser does
//   verifyVapid(authorization, {audience})           RFC 8292 check, as a push service does
//   webhookSignature(secret, body) / checkWebhookSignature(secret, req)
//   RFC8291_VECTOR                                    RFC 8291 Appendix A, to check the above
//
// Everything cryptographic is node:crypto; nothing here shares code with the server.

import http from 'node:http';
import crypto from 'node:crypto';
import { freePort, ms, sleep } from './harness.mjs';

// ---------------------------------------------------------------- base64url

export const b64u = (buf) => Buffer.from(buf).toString('base64url');

/** strict base64url (no padding, url alphabet) -> Buffer; throws on anything else */
export function fromB64u(s, what = 'value') {
  if (typeof s !== 'string' || !/^[A-Za-z0-9_-]*$/.test(s)) throw new Error(`${what} is not base64url: ${JSON.stringify(s)}`);
  return Buffer.from(s, 'base64url');
}

// ---------------------------------------------------------------- receiver

/**
 * A scripted HTTP receiver. script(req, n) decides the answer to the n-th request (0-based) and
 * returns a status number, or {status, body, headers, delayMs}, or 'drop' (destroy the socket
 * without answering). An array of statuses is also accepted: request n gets script[n] (the last one
 * repeats). setScript() changes it at any time. Every request is recorded in .requests as
 * {n, method, path, headers (lower-case), body (Buffer), at (ms), status (answered, or 'drop')}.
 */
export class Receiver {
  constructor({ script = 200, name = 'receiver' } = {}) {
    this.name = name;
    this.requests = [];
    this.waiters = [];
    this.setScript(script);
    this.server = http.createServer((req, res) => this._handle(req, res));
    this.server.keepAliveTimeout = 2000;
    this.sockets = new Set();
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.port = 0;
  }

  setScript(script) {
    if (Array.isArray(script)) {
      const a = script;
      this.script = (_req, n) => a[Math.min(n, a.length - 1)];
    } else if (typeof script === 'function') {
      this.script = script;
    } else {
      this.script = () => script;
    }
  }

  /** base URL: http://127.0.0.1:PORT */
  get origin() { return `http://127.0.0.1:${this.port}`; }

  /** a URL on this receiver */
  url(p = '/hook') { return `${this.origin}${p}`; }

  async listen(port = 0) {
    const want = port || await freePort();
    await new Promise((resolve, reject) => {
      const onErr = (e) => { this.server.off('listening', onOk); reject(e); };
      const onOk = () => { this.server.off('error', onErr); resolve(); };
      this.server.once('error', onErr);
      this.server.once('listening', onOk);
      this.server.listen(want, '127.0.0.1');
    });
    this.port = this.server.address().port;
    return this;
  }

  _handle(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('error', () => { /* client went away */ });
    req.on('end', async () => {
      const rec = {
        n: this.requests.length,
        method: req.method,
        path: req.url,
        headers: { ...req.headers },
        body: Buffer.concat(chunks),
        at: Date.now(),
        status: undefined,
      };
      this.requests.push(rec);
      let ans;
      try { ans = this.script(rec, rec.n); } catch (e) { ans = { status: 500, body: String(e) }; }
      if (ans === 'drop') {
        rec.status = 'drop';
        req.socket.destroy();
      } else {
        if (typeof ans === 'number') ans = { status: ans };
        ans ??= { status: 200 };
        if (ans.delayMs) await sleep(ans.delayMs);
        rec.status = ans.status;
        const body = ans.body ?? '';
        res.writeHead(ans.status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), ...(ans.headers || {}) });
        res.end(body);
      }
      this._wake();
    });
  }

  _wake() {
    for (const w of [...this.waiters]) {
      const hits = this.requests.filter(w.pred);
      if (hits.length >= w.count) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.resolve(hits);
      }
    }
  }

  /** the recorded requests that match pred */
  matching(pred = () => true) { return this.requests.filter(pred); }

  /** requests answered with a 2xx */
  delivered() { return this.requests.filter((r) => typeof r.status === 'number' && r.status >= 200 && r.status < 300); }

  /**
   * Resolves with the matching requests once at least `count` were received (and answered);
   * rejects after timeoutMs with what arrived.
   */
  waitFor(pred = () => true, { count = 1, timeoutMs = ms(15000), what = 'a request' } = {}) {
    return new Promise((resolve, reject) => {
      const w = { pred, count, resolve };
      w.timer = setTimeout(() => {
        const k = this.waiters.indexOf(w);
        if (k >= 0) this.waiters.splice(k, 1);
        reject(new Error(`${this.name}: timed out after ${timeoutMs} ms waiting for ${count} x ${what}; got ${this.describe()}`));
      }, timeoutMs);
      this.waiters.push(w);
      this._wake();
    });
  }

  /** a short description of every request, for failure messages */
  describe(max = 30) {
    const items = this.requests.slice(-max).map((r) => {
      let b = r.body.toString('utf8');
      if (r.headers['content-encoding'] === 'aes128gcm') b = `<${r.body.length} bytes aes128gcm>`;
      return `#${r.n} ${r.method} ${r.path} -> ${r.status} nid=${r.headers['x-iyagi-notification-id']} ${b.slice(0, 300)}`;
    });
    return `${this.requests.length} request(s)${items.length ? `:\n  ${items.join('\n  ')}` : ''}`;
  }

  async close() {
    for (const w of this.waiters.splice(0)) clearTimeout(w.timer);
    await new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
      this.server.closeAllConnections?.();
    });
  }
}

/** new Receiver(opts).listen(opts.port) */
export async function startReceiver(opts = {}) {
  const r = new Receiver(opts);
  await r.listen(opts.port || 0);
  return r;
}

/** parse a recorded request's body as JSON (throws with context) */
export function jsonOf(req) {
  try {
    return JSON.parse(req.body.toString('utf8'));
  } catch (e) {
    throw new Error(`request #${req.n} body is not JSON (${e.message}): ${req.body.toString('utf8').slice(0, 300)}`);
  }
}

// ---------------------------------------------------------------- webhook signature

/** "sha256=" + lowercase hex HMAC-SHA256 of body under the secret (the 64-hex-char string as the key) */
export function webhookSignature(secret, body) {
  return `sha256=${crypto.createHmac('sha256', Buffer.from(secret, 'utf8')).update(body).digest('hex')}`;
}

/** null when req carries the right X-Iyagi-Signature, else a message saying what is wrong */
export function checkWebhookSignature(secret, req) {
  const got = req.headers['x-iyagi-signature'];
  const want = webhookSignature(secret, req.body);
  if (got === want) return null;
  let hint = '';
  const alt = `sha256=${crypto.createHmac('sha256', Buffer.from(secret, 'hex')).update(req.body).digest('hex')}`;
  if (got === alt) hint = ' (it is the HMAC under the hex-DECODED secret bytes; expected the secret string as the key)';
  return `request #${req.n}: X-Iyagi-Signature is ${JSON.stringify(got)}, expected ${want}${hint}`;
}

// ---------------------------------------------------------------- Web Push: the browser's side

/** a fresh P-256 key pair and 16-byte auth secret, as PushManager.subscribe() makes them */
export function browserKeys() {
  const ecdh = crypto.createECDH('prime256v1');
  ecdh.generateKeys();
  const auth = crypto.randomBytes(16);
  return { ecdh, auth, keys: { p256dh: b64u(ecdh.getPublicKey(null, 'uncompressed')), auth: b64u(auth) } };
}

function hkdfExtract(salt, ikm) { return crypto.createHmac('sha256', salt).update(ikm).digest(); }
function hkdfExpand(prk, info, len) {
  // one block is enough for every length used here (<= 32)
  return crypto.createHmac('sha256', prk).update(Buffer.concat([info, Buffer.from([1])])).digest().subarray(0, len);
}

/**
 * Decrypts an RFC 8291 "aes128gcm" body with the subscription's private key (ecdh) and auth
 * secret. Returns {plaintext: Buffer, salt, rs, keyid, records}. Throws with a precise reason.
 */
export function decryptAes128gcm(body, { ecdh, auth }) {
  body = Buffer.from(body);
  if (body.length < 21) throw new Error(`aes128gcm body too short for its header: ${body.length} bytes`);
  const salt = body.subarray(0, 16);
  const rs = body.readUInt32BE(16);
  const idlen = body[20];
  if (rs < 18) throw new Error(`aes128gcm record size ${rs} < 18`);
  if (idlen !== 65) throw new Error(`aes128gcm idlen is ${idlen}, expected 65 (keyid = the sender's uncompressed P-256 public key)`);
  if (body.length < 21 + idlen) throw new Error(`aes128gcm body shorter than its keyid: ${body.length} bytes`);
  const keyid = body.subarray(21, 21 + idlen);
  if (keyid[0] !== 0x04) throw new Error(`aes128gcm keyid does not start with 0x04: ${keyid.toString('hex').slice(0, 20)}`);
  const ct = body.subarray(21 + idlen);
  if (ct.length === 0) throw new Error('aes128gcm body has no record');

  const uaPublic = ecdh.getPublicKey(null, 'uncompressed');
  let ecdhSecret;
  try { ecdhSecret = ecdh.computeSecret(keyid); } catch (e) { throw new Error(`aes128gcm keyid is not a P-256 point: ${e.message}`); }
  // RFC 8291 section 3.4
  const prkKey = hkdfExtract(auth, ecdhSecret);
  const keyInfo = Buffer.concat([Buffer.from('WebPush: info\0', 'latin1'), uaPublic, keyid]);
  const ikm = hkdfExpand(prkKey, keyInfo, 32);
  const prk = hkdfExtract(salt, ikm);
  const cek = hkdfExpand(prk, Buffer.from('Content-Encoding: aes128gcm\0', 'latin1'), 16);
  const nonce = hkdfExpand(prk, Buffer.from('Content-Encoding: nonce\0', 'latin1'), 12);

  const out = [];
  let records = 0;
  for (let off = 0, seq = 0; off < ct.length; off += rs, seq++) {
    const rec = ct.subarray(off, Math.min(off + rs, ct.length));
    const last = off + rs >= ct.length;
    if (rec.length < 17) throw new Error(`aes128gcm record ${seq} is ${rec.length} bytes (< 17)`);
    const iv = Buffer.from(nonce);
    // nonce XOR seq (big-endian, in the low 48 bits is plenty here)
    for (let i = 0, s = seq; i < 6; i++, s = Math.floor(s / 256)) iv[11 - i] ^= s & 0xff;
    const d = crypto.createDecipheriv('aes-128-gcm', cek, iv);
    d.setAuthTag(rec.subarray(rec.length - 16));
    let plain;
    try {
      plain = Buffer.concat([d.update(rec.subarray(0, rec.length - 16)), d.final()]);
    } catch (e) {
      throw new Error(`aes128gcm record ${seq}: authentication failed (wrong key derivation or ciphertext): ${e.message}`);
    }
    let end = plain.length;
    while (end > 0 && plain[end - 1] === 0) end--;
    if (end === 0) throw new Error(`aes128gcm record ${seq} has no padding delimiter`);
    const delim = plain[end - 1];
    if (last && delim !== 0x02) throw new Error(`aes128gcm last record's padding delimiter is 0x${delim.toString(16)}, expected 0x02`);
    if (!last && delim !== 0x01) throw new Error(`aes128gcm record ${seq}'s padding delimiter is 0x${delim.toString(16)}, expected 0x01`);
    out.push(plain.subarray(0, end - 1));
    records++;
  }
  return { plaintext: Buffer.concat(out), salt, rs, keyid, records };
}

/** a KeyObject for a raw 65-byte uncompressed P-256 public key (throws if it is not one) */
export function p256PublicKey(raw) {
  raw = Buffer.from(raw);
  if (raw.length !== 65 || raw[0] !== 0x04) throw new Error(`not a 65-byte uncompressed P-256 point (${raw.length} bytes, first 0x${raw[0]?.toString(16)})`);
  return crypto.createPublicKey({
    key: { kty: 'EC', crv: 'P-256', x: b64u(raw.subarray(1, 33)), y: b64u(raw.subarray(33, 65)) },
    format: 'jwk',
  });
}

/**
 * Checks an RFC 8292 "Authorization: vapid t=<JWT>, k=<key>" header the way a push service does.
 * Returns {header, claims, k}; throws with the reason. audience: the endpoint's origin.
 */
export function verifyVapid(authorization, { audience, now = Date.now() }) {
  if (typeof authorization !== 'string') throw new Error(`no Authorization header (got ${authorization})`);
  const m = authorization.match(/^vapid\s+(.*)$/i);
  if (!m) throw new Error(`Authorization is not "vapid t=..., k=...": ${JSON.stringify(authorization)}`);
  const params = {};
  for (const part of m[1].split(',')) {
    const kv = part.trim().match(/^([a-z]+)=(.*)$/i);
    if (!kv) throw new Error(`Authorization parameter ${JSON.stringify(part)} is not name=value in ${JSON.stringify(authorization)}`);
    params[kv[1].toLowerCase()] = kv[2];
  }
  if (!params.t || !params.k) throw new Error(`Authorization lacks t= or k=: ${JSON.stringify(authorization)}`);
  const k = params.k;
  const key = p256PublicKey(fromB64u(k, 'k='));
  const parts = params.t.split('.');
  if (parts.length !== 3) throw new Error(`t= is not a JWS compact serialization (3 parts): ${params.t}`);
  const header = JSON.parse(fromB64u(parts[0], 'JWT header').toString('utf8'));
  const claims = JSON.parse(fromB64u(parts[1], 'JWT claims').toString('utf8'));
  const sig = fromB64u(parts[2], 'JWT signature');
  const hdrOk = header && header.typ === 'JWT' && header.alg === 'ES256' && Object.keys(header).length === 2;
  if (!hdrOk) throw new Error(`JWT header is ${JSON.stringify(header)}, expected {"typ":"JWT","alg":"ES256"}`);
  if (sig.length !== 64) throw new Error(`JWT signature is ${sig.length} bytes, expected 64 (raw r||s)`);
  const ok = crypto.verify('sha256', Buffer.from(`${parts[0]}.${parts[1]}`, 'ascii'), { key, dsaEncoding: 'ieee-p1363' }, sig);
  if (!ok) throw new Error('JWT ES256 signature does not verify against the k= key');
  if (claims.aud !== audience) throw new Error(`JWT aud is ${JSON.stringify(claims.aud)}, expected ${JSON.stringify(audience)}`);
  const nowS = now / 1000;
  if (!Number.isInteger(claims.exp)) throw new Error(`JWT exp is not an integer: ${JSON.stringify(claims.exp)}`);
  if (!(claims.exp > nowS)) throw new Error(`JWT exp ${claims.exp} is not in the future (now ${Math.floor(nowS)})`);
  if (!(claims.exp <= Math.ceil(nowS) + 86400)) throw new Error(`JWT exp ${claims.exp} is more than 24 h ahead (now ${Math.floor(nowS)})`);
  if (typeof claims.sub !== 'string' || claims.sub.length === 0) throw new Error(`JWT sub missing or empty: ${JSON.stringify(claims.sub)}`);
  return { header, claims, k };
}

/** RFC 8291 Appendix A: a known message, to prove decryptAes128gcm right */
export const RFC8291_VECTOR = {
  plaintext: 'When I grow up, I want to be a watermelon',
  uaPrivate: 'q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94',
  uaPublic: 'BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4',
  auth: 'BTBZMqHH6r4Tts7J_aSIgg',
  body: 'DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN',
};

/** decrypts the RFC 8291 vector with decryptAes128gcm; returns the plaintext string */
export function decryptRfc8291Vector() {
  const ecdh = crypto.createECDH('prime256v1');
  ecdh.setPrivateKey(Buffer.from(RFC8291_VECTOR.uaPrivate, 'base64url'));
  if (b64u(ecdh.getPublicKey(null, 'uncompressed')) !== RFC8291_VECTOR.uaPublic) throw new Error('RFC 8291 vector: ua key mismatch');
  const r = decryptAes128gcm(Buffer.from(RFC8291_VECTOR.body, 'base64url'), { ecdh, auth: Buffer.from(RFC8291_VECTOR.auth, 'base64url') });
  return r.plaintext.toString('utf8');
}

// ---------------------------------------------------------------- Prometheus text

/** sum of every sample of metric `name` (any labels) in Prometheus text; undefined if absent */
export function metricSum(text, name, labelPred = () => true) {
  let sum;
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/);
    if (!m || m[1] !== name) continue;
    if (!labelPred(m[3] || '')) continue;
    const v = Number(m[4]);
    sum = (sum ?? 0) + v;
  }
  return sum;
}
