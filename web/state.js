// state.js — the web client's state, under every view (list.js, conversation.js, composer.js,
// settings.js; app.js boots and wires them): the one state object S, what this browser keeps in
// localStorage (store, keys K: the session, read markers, the push subscription; what is kept in
// IndexedDB is saved.js's), and the small helpers all views use: building the DOM (el, $,
// showError), users and their names (nameOf, loadUser, userByName), and what S knows of a channel
// (peerOf, titleOf, directWith, upsertChannel). It imports no view: what the views redraw when a
// user arrives is handed in by app.js (onUserLoaded).
import { api, ApiError, describeError } from './net.js';

export const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- state
export const S = {
  session: null,          // {token, user, device, ws_url}
  me: null,               // user
  sock: null,
  pos: 0,                 // inbox pos: every pos up to this one has been seen by this tab
  posSeen: new Set(),     // pos seen above S.pos (out of order)
  channels: new Map(),    // id -> {channel, last, unread}
  caches: new Map(),      // channel id -> {bySeq: Map, min, top, complete, loading, filling, stale}
  users: new Map(),       // id -> user
  userReq: new Map(),     // id -> Promise
  presence: new Map(),    // user id -> {status, last_active_at}
  receipts: new Map(),    // channel id -> Map(user id -> seq)
  typing: new Map(),      // channel id -> Map(user id -> until)
  current: null,          // open conversation: channel id, or "u:<user id>" for a new direct chat
  drafts: new Map(),      // "u:<id>" -> user (direct chats with no message yet)
  replyTo: null,          // the reply being written: {channel, id, seq, from, text} (composer.js)
  outbox: [],             // [{cmid, channel?, to?, text, ts, owner, failed?}], oldest first (kept by saved.js)
  sentGen: new Map(),     // cmid -> connection generation it was last sent on
  readSent: new Map(),    // channel id -> seq we last reported read
  localRead: {},          // channel id -> seq read (persisted, shared by tabs)
  lastTypingSent: 0,
  friends: null,          // {friends, incoming, outgoing} or null
  muted: new Set(),       // channel ids this user muted
  blocked: new Set(),     // user ids this user blocked
  tab: 'chats',
  tabId: Math.random().toString(36).slice(2),
};

export const store = {
  get(k, d) { try { const v = localStorage.getItem(k); return v == null ? d : JSON.parse(v); } catch { return d; } },
  set(k, v) { try { localStorage.setItem(k, JSON.stringify(v)); } catch { /* full or disabled */ } },
  del(k) { try { localStorage.removeItem(k); } catch { /* disabled */ } },
};
export const K = {
  session: 'iyagi.session',
  read: (uid = S.me.id) => `iyagi.read.${uid}`,
  push: (uid = S.me.id) => `iyagi.push.${uid}`,   // {id, endpoint}: this browser's push subscription
};

export function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'hidden') e.hidden = !!v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

export function showError(id, e) {
  const t = e ? (typeof e === 'string' ? e : describeError(e)) : '';
  const n = $(id);
  n.textContent = t;
  if (t) { clearTimeout(n._t); n._t = setTimeout(() => { if (n.textContent === t) n.textContent = ''; }, 8000); }
}

export const codepoints = (s) => { let n = 0; for (const _ of s) n++; return n; };

export function fmtTime(ts) {
  const d = new Date(ts);
  const now = new Date();
  const hm = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toDateString() === now.toDateString() ? hm : `${d.toLocaleDateString()} ${hm}`;
}

// ---------------------------------------------------------------- users
export function nameOf(id) {
  if (S.me && id === S.me.id) return S.me.display_name || S.me.username;
  const u = S.users.get(id);
  if (u) return u.display_name || u.username;
  loadUser(id);
  return '…';
}

/** what the views redraw when a user arrives: set once by app.js, as this module imports no view */
let userLoaded = () => {};
export function onUserLoaded(fn) { userLoaded = fn; }

export function loadUser(id) {
  if (S.users.has(id)) return Promise.resolve(S.users.get(id));
  if (S.userReq.has(id)) return S.userReq.get(id);
  const p = api('GET', `/v1/users/${encodeURIComponent(id)}`, { token: S.session.token })
    .then((r) => {
      S.users.set(id, r.user);
      for (const n of document.querySelectorAll(`[data-uid="${CSS.escape(id)}"]`)) n.textContent = nameOf(id);
      userLoaded();
      return r.user;
    })
    .catch(() => { S.userReq.delete(id); return null; });
  S.userReq.set(id, p);
  return p;
}

export async function userByName(username) {
  const name = username.trim().replace(/^@/, '').toLowerCase();
  if (!name) throw new ApiError(400, 'bad_request', 'Type a username.');
  try {
    const r = await api('GET', `/v1/users?username=${encodeURIComponent(name)}`, { token: S.session.token });
    S.users.set(r.user.id, r.user);
    return r.user;
  } catch (e) {
    if (e.status === 404) throw new ApiError(404, 'not_found', `No user called “${name}”.`);
    throw e;
  }
}

export const nameSpan = (id, cls = 'who') => el('span', { class: cls, dataset: { uid: id }, text: nameOf(id) });

// ---------------------------------------------------------------- channels
export function peerOf(ch) {
  if (!ch || ch.kind !== 'direct') return null;
  const m = ch.members || [];
  return m.find((x) => x !== S.me.id) || m[0] || null;
}

export function titleOf(key) {
  if (key && key.startsWith('u:')) return nameOf(key.slice(2));
  const c = S.channels.get(key);
  if (!c) return 'Conversation';
  if (c.channel.kind === 'group') return c.channel.name || 'Group';
  const p = peerOf(c.channel);
  return p ? nameOf(p) : 'Direct chat';
}

export function directWith(userId) {
  for (const [id, c] of S.channels) {
    if (c.channel.kind === 'direct' && (c.channel.members || []).includes(userId) &&
        (userId !== S.me.id || c.channel.members.every((m) => m === S.me.id))) return id;
  }
  return null;
}

export function upsertChannel(channel, last, unread) {
  let c = S.channels.get(channel.id);
  if (!c) { c = { channel, last: null, unread: 0 }; S.channels.set(channel.id, c); }
  else c.channel = { ...c.channel, ...channel };
  if (last !== undefined && last && (!c.last || last.seq >= c.last.seq)) c.last = last;
  if (unread !== undefined) c.unread = unread;
  return c;
}
