// push.js — Web Push opt-in (docs/PROTOCOL-ADDITIONS.md, "Push"): the service worker
// /sw.js, the browser's push subscription with the server's VAPID key, and the server's
// record of it (POST/DELETE /v1/push/subscriptions).
import { api, ApiError, describeError } from './net.js';

const SUBSCRIBE_MS = 20000;   // a push service that never answers is an error, not a hang
const READY_MS = 10000;

export const pushSupported = () => 'serviceWorker' in navigator && 'PushManager' in window;

/** the VAPID key, base64url of the 65-byte P-256 point, as bytes */
export function b64urlBytes(s) {
  const b64 = String(s).replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function sameBytes(a, b) {
  if (!a || !b) return false;
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

function within(ms, promise, what) {
  let t;
  const timeout = new Promise((_, reject) => {
    t = setTimeout(() => reject(Object.assign(new Error(what), { name: 'TimeoutError' })), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(t));
}

class PushError extends Error {}
const fail = (msg) => { throw new PushError(msg); };

/** a sentence for the person, whatever went wrong */
export function pushErrorText(e) {
  if (e instanceof PushError) return e.message;
  if (e instanceof ApiError) {
    if (e.code === 'unavailable') return 'Notifications are not available on this server yet.';
    return `Could not turn on notifications: ${describeError(e)}`;
  }
  const name = e && e.name;
  if (name === 'NotAllowedError') {
    return 'Notifications are blocked for this site. Allow them in the browser’s site settings, then try again.';
  }
  if (name === 'TimeoutError') return 'The browser’s push service did not answer. Try again later.';
  if (name === 'AbortError' || name === 'NotSupportedError' || name === 'InvalidStateError' || name === 'NotFoundError') {
    return 'This browser’s push service is unavailable or refused the subscription, so notifications stay off.';
  }
  return 'Could not turn on notifications in this browser.';
}

/**
 * Turn push on: permission, service worker, browser subscription, server record.
 * Returns {id, endpoint}; throws (use pushErrorText) when anything fails, leaving nothing behind
 * on the server.
 */
export async function enablePush(token) {
  if (!pushSupported()) fail('This browser does not support push notifications.');
  if ('Notification' in window) {
    // asked first, while the click still counts as the person's gesture
    if (Notification.permission === 'denied') fail(pushErrorText({ name: 'NotAllowedError' }));
    const perm = await Notification.requestPermission();
    if (perm !== 'granted') {
      fail(perm === 'denied' ? pushErrorText({ name: 'NotAllowedError' })
        : 'Notifications were not allowed. Turn the switch on again to be asked once more.');
    }
  }
  const keyReq = api('GET', '/v1/push/vapid');
  keyReq.catch(() => {});   // handled below; no unhandled rejection while the worker registers
  await navigator.serviceWorker.register('/sw.js', { scope: '/', updateViaCache: 'none' });
  const reg = await within(READY_MS, navigator.serviceWorker.ready, 'service worker not ready');
  const { public_key: key } = await keyReq;
  if (typeof key !== 'string' || !key) fail('The server has no push key configured.');
  let appKey;
  try { appKey = b64urlBytes(key); } catch { fail('The server’s push key is not valid.'); }

  let sub = await reg.pushManager.getSubscription();
  if (sub && !sameBytes(sub.options && sub.options.applicationServerKey, appKey)) {
    // made for another server key (the server's key changed): start again
    await sub.unsubscribe().catch(() => {});
    sub = null;
  }
  if (!sub) {
    sub = await within(SUBSCRIBE_MS,
      reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: appKey }), 'push subscribe');
  }
  const j = sub.toJSON();
  if (!j.endpoint || !j.keys || !j.keys.p256dh || !j.keys.auth) {
    await sub.unsubscribe().catch(() => {});
    fail('This browser’s push subscription is incomplete.');
  }
  try {
    const r = await api('POST', '/v1/push/subscriptions', {
      token, body: { kind: 'webpush', endpoint: j.endpoint, keys: { p256dh: j.keys.p256dh, auth: j.keys.auth } },
    });
    return { id: r.subscription.id, endpoint: j.endpoint };
  } catch (e) {
    await sub.unsubscribe().catch(() => {});
    throw e;
  }
}

/** the browser's side: drop this origin's push subscription, if any (never throws) */
export async function unsubscribeBrowser() {
  if (!pushSupported()) return;
  try {
    const reg = await navigator.serviceWorker.getRegistration('/');
    const sub = reg && await reg.pushManager.getSubscription();
    if (sub) await sub.unsubscribe();
  } catch { /* nothing to drop */ }
}

/**
 * Turn push off: the browser subscription, then the server's record (404: already gone).
 * Throws ApiError only when the server could not be told.
 */
export async function disablePush(token, id) {
  await unsubscribeBrowser();
  if (!id || !token) return;
  try {
    await api('DELETE', `/v1/push/subscriptions/${encodeURIComponent(id)}`, { token });
  } catch (e) {
    if (e.status !== 404 && e.status !== 401) throw e;
  }
}
