// app.js — the iyagi web client. Plain ES module, no framework, no build step.
// Every piece of user data (names, messages) reaches the DOM through textContent or
// attributes set with setAttribute/dataset: never as markup.
import { api, ApiError, ChatSocket, describeError } from './net.js';
import { disablePush, enablePush, pushErrorText, pushSupported, unsubscribeBrowser } from './push.js';

const $ = (id) => document.getElementById(id);
const LONG_TEXT = 3000;          // longer messages are shown folded, with "Show all"
const MAX_CODEPOINTS = 100000;   // the contract's limit for text
const PAGE = 50;                 // history page
const TYPING_SEND_MS = 3000;     // send typing at most this often (server allows 1/s)
const TYPING_SHOW_MS = 6000;     // show someone's typing for this long after their frame

// ---------------------------------------------------------------- state
const S = {
  session: null,          // {token, user, device, ws_url}
  me: null,               // user
  sock: null,
  pos: 0,                 // inbox pos: every pos up to this one has been seen by this tab
  posSeen: new Set(),     // pos seen above S.pos (out of order)
  channels: new Map(),    // id -> {channel, last, unread}
  caches: new Map(),      // channel id -> {bySeq: Map, min, top, complete, loading, filling}
  users: new Map(),       // id -> user
  userReq: new Map(),     // id -> Promise
  presence: new Map(),    // user id -> {status, last_active_at}
  receipts: new Map(),    // channel id -> Map(user id -> seq)
  typing: new Map(),      // channel id -> Map(user id -> until)
  current: null,          // open conversation: channel id, or "u:<user id>" for a new direct chat
  drafts: new Map(),      // "u:<id>" -> user (direct chats with no message yet)
  outbox: [],             // [{cmid, channel?, to?, text, ts, failed?}]
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

const store = {
  get(k, d) { try { const v = localStorage.getItem(k); return v == null ? d : JSON.parse(v); } catch { return d; } },
  set(k, v) { try { localStorage.setItem(k, JSON.stringify(v)); } catch { /* full or disabled */ } },
  del(k) { try { localStorage.removeItem(k); } catch { /* disabled */ } },
};
const K = {
  session: 'iyagi.session',
  outbox: () => `iyagi.outbox.${S.me.id}`,
  read: () => `iyagi.read.${S.me.id}`,
  push: (uid = S.me.id) => `iyagi.push.${uid}`,   // {id, endpoint}: this browser's push subscription
};

function el(tag, props = {}, ...children) {
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

function showError(id, e) {
  const t = e ? (typeof e === 'string' ? e : describeError(e)) : '';
  const n = $(id);
  n.textContent = t;
  if (t) { clearTimeout(n._t); n._t = setTimeout(() => { if (n.textContent === t) n.textContent = ''; }, 8000); }
}

const codepoints = (s) => { let n = 0; for (const _ of s) n++; return n; };
const newCmid = () => {
  const b = crypto.getRandomValues(new Uint8Array(12));
  return 'w' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
};

// ---------------------------------------------------------------- users
function nameOf(id) {
  if (S.me && id === S.me.id) return S.me.display_name || S.me.username;
  const u = S.users.get(id);
  if (u) return u.display_name || u.username;
  loadUser(id);
  return '…';
}

function loadUser(id) {
  if (S.users.has(id)) return Promise.resolve(S.users.get(id));
  if (S.userReq.has(id)) return S.userReq.get(id);
  const p = api('GET', `/v1/users/${encodeURIComponent(id)}`, { token: S.session.token })
    .then((r) => {
      S.users.set(id, r.user);
      for (const n of document.querySelectorAll(`[data-uid="${CSS.escape(id)}"]`)) n.textContent = nameOf(id);
      renderList();
      if (S.current) renderHeader();
      return r.user;
    })
    .catch(() => { S.userReq.delete(id); return null; });
  S.userReq.set(id, p);
  return p;
}

async function userByName(username) {
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

const nameSpan = (id, cls = 'who') => el('span', { class: cls, dataset: { uid: id }, text: nameOf(id) });

// ---------------------------------------------------------------- channels
function peerOf(ch) {
  if (!ch || ch.kind !== 'direct') return null;
  const m = ch.members || [];
  return m.find((x) => x !== S.me.id) || m[0] || null;
}

function titleOf(key) {
  if (key && key.startsWith('u:')) return nameOf(key.slice(2));
  const c = S.channels.get(key);
  if (!c) return 'Conversation';
  if (c.channel.kind === 'group') return c.channel.name || 'Group';
  const p = peerOf(c.channel);
  return p ? nameOf(p) : 'Direct chat';
}

function directWith(userId) {
  for (const [id, c] of S.channels) {
    if (c.channel.kind === 'direct' && (c.channel.members || []).includes(userId) &&
        (userId !== S.me.id || c.channel.members.every((m) => m === S.me.id))) return id;
  }
  return null;
}

function upsertChannel(channel, last, unread) {
  let c = S.channels.get(channel.id);
  if (!c) { c = { channel, last: null, unread: 0 }; S.channels.set(channel.id, c); }
  else c.channel = { ...c.channel, ...channel };
  if (last !== undefined && last && (!c.last || last.seq >= c.last.seq)) c.last = last;
  if (unread !== undefined) c.unread = unread;
  return c;
}

async function loadChannels() {
  try {
    const r = await api('GET', '/v1/channels', { token: S.session.token });
    const seen = new Set();
    for (const it of r.channels || []) {
      seen.add(it.channel.id);
      let unread = it.unread || 0;
      const lr = S.localRead[it.channel.id];
      if (it.last_message) {
        if (it.last_message.from === S.me.id) unread = 0;
        else if (lr !== undefined) unread = Math.max(0, Math.min(unread, it.last_message.seq - lr));
      }
      if (S.current === it.channel.id) unread = 0;
      upsertChannel(it.channel, it.last_message, unread);
      if (it.muted) S.muted.add(it.channel.id); else S.muted.delete(it.channel.id);
      S.channels.get(it.channel.id).mentions = it.mentions || 0;
    }
    for (const id of [...S.channels.keys()]) if (!seen.has(id)) S.channels.delete(id);
    showError('side-error', '');
    renderList();
    queryPresence();
    if (S.current && !S.current.startsWith('u:') && S.channels.has(S.current)) renderHeader();
  } catch (e) {
    if (e.status === 401) return sessionDead();
    showError('side-error', e);
  }
}

async function refreshChannel(id) {
  try {
    const r = await api('GET', `/v1/channels/${encodeURIComponent(id)}`, { token: S.session.token });
    upsertChannel(r.channel);
    if (Array.isArray(r.read)) mergeReads(id, r.read);
    renderList();
    if (S.current === id) { renderHeader(); if ($('dlg-members').open) renderMembers(); }
    return r.channel;
  } catch (e) {
    if (e.status === 403 || e.status === 404) {
      // no longer a member
      S.channels.delete(id);
      S.caches.delete(id);
      renderList();
      if (S.current === id) { closeChat(); showError('side-error', 'You are no longer in that conversation.'); }
    }
    return null;
  }
}

/** every member's read seq, as the server keeps it: "Read by" survives a reload */
function mergeReads(id, list) {
  let m = S.receipts.get(id);
  if (!m) { m = new Map(); S.receipts.set(id, m); }
  for (const x of list) if (x && typeof x.user_id === 'string' && (m.get(x.user_id) || 0) < x.seq) m.set(x.user_id, x.seq);
  if (S.current === id) refreshReceipts();
}

// ---------------------------------------------------------------- messages
function cacheOf(id) { return S.caches.get(id); }

/** contiguous tracking of inbox positions, so that a reconnect syncs from the first hole */
function seePos(p) {
  if (typeof p !== 'number' || p <= S.pos) return;
  S.posSeen.add(p);
  while (S.posSeen.delete(S.pos + 1)) S.pos++;
}

/** one message from anywhere (ack, msg frame, sync, history): deduplicated by (channel, seq) */
function ingest(m, { fromHistory = false } = {}) {
  if (!m || !m.channel) return;
  seePos(m.pos);
  let c = S.channels.get(m.channel);
  const known = !!c;
  if (!c) { c = upsertChannel({ id: m.channel, kind: 'direct' }); refreshChannel(m.channel); }
  const isNew = !c.last || m.seq > c.last.seq;
  if (isNew) {
    c.last = m;
    if (m.from !== S.me.id && !fromHistory && !isChange(m) && !(S.current === m.channel && isReading())) {
      if (!m.event && document.visibilityState === 'hidden') notifyHidden(m, c);
      c.unread++;
      if (Array.isArray(m.mentions) && m.mentions.includes(S.me.id)) c.mentions = (c.mentions || 0) + 1;
    }
    if (m.from === S.me.id) c.unread = 0;
  }
  if (isChange(m)) applyChange(m);
  else if (m.event) {
    if (!fromHistory && isNew && known) refreshChannel(m.channel);
    if (m.event === 'member_removed' && m.user === S.me.id && !fromHistory) refreshChannel(m.channel);
  }
  // own message: drop it from the outbox (this tab's or another's), replace its pending bubble
  if (m.cmid && m.from === S.me.id) {
    const i = S.outbox.findIndex((o) => o.cmid === m.cmid);
    if (i >= 0) { S.outbox.splice(i, 1); saveOutbox(); }
    S.sentGen.delete(m.cmid);
    const p = document.querySelector(`#msgs li[data-cmid="${CSS.escape(m.cmid)}"][data-state="sending"], #msgs li[data-cmid="${CSS.escape(m.cmid)}"][data-state="failed"]`);
    if (p) p.remove();
    if (S.current && S.current.startsWith('u:') && peerOf(c.channel) && S.current === `u:${peerOf(c.channel)}`) {
      // the first message of a new direct chat: move to the real channel
      S.current = m.channel;
      location.hash = `#/c/${m.channel}`;
    }
  }
  const t = S.typing.get(m.channel);
  if (t) t.delete(m.from);
  const cache = cacheOf(m.channel);
  if (cache && cache.initializing) cache.refill = true;
  else if (cache && !cache.bySeq.has(m.seq)) {
    if (m.seq >= cache.min || cache.bySeq.size === 0) {
      cache.bySeq.set(m.seq, m);
      if (cache.bySeq.size === 1 && cache.min > m.seq) cache.min = m.seq;
      if (m.seq === cache.top + 1) { while (cache.bySeq.has(cache.top + 1)) cache.top++; }
      else if (m.seq > cache.top + 1) fillGap(m.channel);
      if (S.current === m.channel) placeMessage(m);
    }
  }
  scheduleList();
  if (S.current === m.channel) { renderTyping(); markRead(); }
}

/** an edit or a delete: an event of its channel that changes an earlier message */
const isChange = (m) => m.event === 'edited' || m.event === 'deleted' || m.event === 'reaction';

/** applies an edit or delete to the message it changes, if loaded (history shows the current
 * state anyway); an older edit never overwrites a newer state */
function applyChange(e) {
  const cache = cacheOf(e.channel);
  const c = S.channels.get(e.channel);
  let target = null;
  if (cache) for (const m of cache.bySeq.values()) if (m.id === e.target) { target = m; break; }
  if (c && c.last && c.last.id === e.target) target = target || c.last;
  if (!target || target.deleted) return;
  if (e.event === 'deleted') {
    target.deleted = true;
    target.text = '';
    delete target.mentions;
    delete target.reactions;
  } else if (e.event === 'reaction') {
    const list = target.reactions || (target.reactions = []);
    let r = list.find((x) => x.emoji === e.emoji);
    if (e.on) {
      if (!r) list.push(r = { emoji: e.emoji, count: 0, users: [] });
      if (!r.users.includes(e.from)) r.users.push(e.from);
    } else if (r) {
      r.users = r.users.filter((u) => u !== e.from);
      if (!r.users.length) list.splice(list.indexOf(r), 1);
    }
    if (r) r.count = r.users.length;
  } else if (!(target.edited_at > e.ts)) {
    target.text = e.text;
    target.edited_at = e.ts;
  }
  const li = document.querySelector(`#msgs li[data-id="${CSS.escape(e.target)}"]`);
  if (li && S.current === e.channel) { li.replaceWith(messageEl(target)); refreshReceipts(); }
  scheduleList();
}

/** a new message while this tab is hidden: a notification (if the user allowed them, which the
 * Notifications switch asks), unless the conversation is muted and does not mention them. A push
 * notification is not sent meanwhile: this tab is an online device. */
function notifyHidden(m, c) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  const mentioned = Array.isArray(m.mentions) && m.mentions.includes(S.me.id);
  if (S.muted.has(m.channel) && !mentioned) return;
  const group = c.channel.kind === 'group';
  try {
    const n = new Notification(group ? `${nameOf(m.from)} in ${titleOf(m.channel)}` : nameOf(m.from),
      { body: m.text.slice(0, 100), tag: `iyagi-${m.channel}` });
    n.onclick = () => { window.focus(); go(m.channel); n.close(); };
  } catch { /* some browsers show notifications only from a service worker: the title still counts */ }
}

let listTimer = 0;
function scheduleList() {
  if (listTimer) return;
  listTimer = requestAnimationFrame(() => { listTimer = 0; renderList(); });
}

async function fillGap(id) {
  const cache = cacheOf(id);
  if (!cache || cache.filling) { if (cache) cache.refill = true; return; }
  cache.filling = true;
  try {
    do {
      cache.refill = false;
      for (let i = 0; i < 100; i++) {
        const r = await fetchHistory(id, { after_seq: cache.top, limit: 200 });
        for (const m of r) ingest(m, { fromHistory: true });
        if (r.length < 200) break;
      }
    } while (cache.refill);
  } catch { /* retried on the next reconnect */ } finally { cache.filling = false; }
}

async function fetchHistory(id, q) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) qs.set(k, String(v));
  const r = await api('GET', `/v1/channels/${encodeURIComponent(id)}/messages?${qs}`, { token: S.session.token });
  return r.messages || [];
}

async function openCache(id) {
  let cache = cacheOf(id);
  if (cache) return cache;
  const c = S.channels.get(id);
  const newest = c && c.last ? c.last.seq : 0;
  cache = { bySeq: new Map(), min: newest ? newest + 1 : Number.MAX_SAFE_INTEGER, top: 0, complete: false,
    loading: false, filling: false, initializing: true };
  S.caches.set(id, cache);
  await loadOlder(id);
  cache.initializing = false;
  fillGap(id);   // anything newer than the first page
  return cache;
}

async function loadOlder(id) {
  const cache = cacheOf(id);
  if (!cache || cache.loading || cache.complete) return;
  cache.loading = true;
  renderLogTop();
  try {
    const before = cache.min;
    const r = await fetchHistory(id, { before_seq: before, limit: PAGE });
    const log = $('log');
    const keep = S.current === id ? log.scrollHeight - log.scrollTop : 0;
    const frag = document.createDocumentFragment();
    const older = r.filter((m) => !cache.bySeq.has(m.seq)).sort((a, b) => a.seq - b.seq);
    if (cache.initializing) cache.top = older.length ? older[older.length - 1].seq : 0;
    for (const m of older) {
      cache.bySeq.set(m.seq, m);
      if (m.seq < cache.min) cache.min = m.seq;
      seePos(m.pos);
      if (S.current === id) frag.append(messageEl(m));
    }
    if (r.length < PAGE || cache.min <= 1) cache.complete = true;
    if (S.current === id) {
      $('msgs').prepend(frag);
      renderDays();
      refreshReceipts();
      log.scrollTop = log.scrollHeight - keep;
    }
  } catch (e) {
    if (S.current === id) showError('chat-error', e);
    if (cache.initializing) { S.caches.delete(id); }
  } finally {
    cache.loading = false;
    if (S.current === id) renderLogTop();
  }
}

function renderLogTop() {
  const cache = cacheOf(S.current);
  const t = $('log-top');
  if (!cache) { t.textContent = ''; return; }
  t.textContent = cache.loading ? 'Loading…' : cache.complete ? 'This is the beginning of the conversation.' : '';
}

// ---------------------------------------------------------------- rendering messages
function fmtTime(ts) {
  const d = new Date(ts);
  const now = new Date();
  const hm = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toDateString() === now.toDateString() ? hm : `${d.toLocaleDateString()} ${hm}`;
}

function eventText(m) {
  const who = nameOf(m.from);
  const whom = m.user ? nameOf(m.user) : '';
  if (m.event === 'member_added') return `${who} added ${whom}`;
  if (m.event === 'member_removed') return m.user === m.from ? `${who} left` : `${who} removed ${whom}`;
  if (m.event === 'renamed') return `${who} renamed the group to “${m.text}”`;
  if (m.event === 'edited') return `${who} edited a message`;
  if (m.event === 'deleted') return `${who} deleted a message`;
  if (m.event === 'reaction') return m.on ? `${who} reacted ${m.emoji}` : `${who} took back ${m.emoji}`;
  return `${who}: ${m.event}`;
}

function textBody(text) {
  const body = el('div', { class: 'text' });
  if (text.length > LONG_TEXT) {
    const n = codepoints(text);
    body.textContent = text.slice(0, LONG_TEXT) + '…';
    const more = el('button', { type: 'button', class: 'link more', text: `Show all (${n.toLocaleString()} characters)` });
    more.addEventListener('click', () => { body.textContent = text; more.remove(); });
    return [body, more];
  }
  body.append(...linkify(text));
  return [body];
}

/** text nodes and links: only http(s) URLs become links, opened apart, with no referrer */
const URL_RE = /\bhttps?:\/\/[^\s<>"']+/gi;
function linkify(text) {
  const out = [];
  let at = 0;
  for (const m of text.matchAll(URL_RE)) {
    let href = m[0].replace(/[.,;:!?)\]]+$/, '');   // trailing punctuation is the sentence's
    let url = null;
    try { url = new URL(href); } catch { /* not a URL after all */ }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) continue;
    if (m.index > at) out.push(document.createTextNode(text.slice(at, m.index)));
    out.push(el('a', { href: url.href, target: '_blank', rel: 'noopener noreferrer', text: href }));
    at = m.index + href.length;
  }
  if (at < text.length) out.push(document.createTextNode(text.slice(at)));
  return out;
}

/** "Today", "Yesterday", or the date */
function dayLabel(ts) {
  const d = new Date(ts);
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (d.toDateString() === today.toDateString()) return 'Today';
  if (d.toDateString() === yesterday.toDateString()) return 'Yesterday';
  return d.toLocaleDateString([], { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });
}

const GROUP_MS = 5 * 60 * 1000;   // one sender's messages this close together show one name

/** a separator before the first message of each day, and consecutive messages of one sender
 * grouped under one name (redrawn after every change of the log) */
function renderDays() {
  const msgs = $('msgs');
  for (const d of msgs.querySelectorAll('li.day')) d.remove();
  let last = '';
  let prev = null;
  for (const li of [...msgs.children]) {
    if (li.hidden) continue;
    const ts = Number(li.dataset.ts || 0);
    if (li.classList.contains('msg')) {
      const cont = !!prev && prev.dataset.from === li.dataset.from && ts && Number(prev.dataset.ts) > ts - GROUP_MS &&
        new Date(Number(prev.dataset.ts)).toDateString() === new Date(ts).toDateString();
      li.classList.toggle('cont', cont);
      prev = li;
    } else {
      prev = null;   // an event between them starts a new group
    }
    if (!ts) continue;
    const day = new Date(ts).toDateString();
    if (day === last) continue;
    msgs.insertBefore(el('li', { class: 'day', text: dayLabel(ts) }), li);   // a list item (axe: no other role in a list)
    last = day;
  }
}

function messageEl(m) {
  if (isChange(m)) {
    // shown on the message it changes; kept in the log (hidden) for the order of seq
    return el('li', { class: 'change', hidden: true, dataset: { seq: m.seq, id: m.id } });
  }
  if (m.event) {
    const li = el('li', { class: 'sys', dataset: { seq: m.seq, id: m.id, ts: m.ts } });
    li.append(el('span', { text: eventText(m) }));
    for (const id of [m.from, m.user]) if (id && !S.users.has(id) && id !== S.me.id) loadUser(id).then(() => { li.firstChild.textContent = eventText(m); });
    return li;
  }
  const mine = m.from === S.me.id;
  const li = el('li', { class: mine ? 'msg mine' : 'msg', dataset: { seq: m.seq, id: m.id, ts: m.ts, state: 'sent', from: m.from } });
  if (!mine && Array.isArray(m.mentions) && m.mentions.includes(S.me.id)) {
    li.classList.add('mentioned');
    li.setAttribute('aria-label', `${nameOf(m.from)} mentioned you`);
  }
  if (m.cmid) li.dataset.cmid = m.cmid;
  const c = S.channels.get(m.channel);
  // who sent it: shown in groups (once per run of one sender's messages), told to screen readers always
  if (!mine && c && c.channel.kind === 'group') li.append(nameSpan(m.from));
  else li.append(el('span', { class: 'sr-only', text: mine ? 'You:' : `${nameOf(m.from)}:` }));
  if (m.reply_to) li.append(quoteEl(m));
  if (m.deleted) {
    li.classList.add('deleted');
    li.append(el('div', { class: 'bubble' }, el('div', { class: 'text', text: 'This message was deleted' })));
  } else {
    li.append(el('div', { class: 'bubble' }, ...textBody(m.text)));
  }
  if (!m.deleted && Array.isArray(m.reactions) && m.reactions.length) li.append(reactionsEl(m));
  const meta = el('div', { class: 'meta' }, el('time', { datetime: new Date(m.ts).toISOString(), text: fmtTime(m.ts) }));
  if (m.edited_at && !m.deleted) meta.append(el('span', { class: 'edited', title: `Edited ${fmtTime(m.edited_at)}`, text: 'edited' }));
  if (mine) meta.append(el('span', { class: 'state', text: 'Sent' }));
  const acts = messageActions(m, li);
  if (acts) meta.append(acts);
  li.append(meta);
  return li;
}

/** the quote of the message m replies to: its author and first words, from the cache or asked
 * from the server (around its seq); a click jumps to it */
function quoteEl(m) {
  // its name is what it shows, after "In reply to" for screen readers; the title says what a click does
  const q = el('button', { type: 'button', class: 'quote', title: 'Go to the message this replies to' });
  const fill = (o) => {
    q.textContent = '';
    q.append(el('span', { class: 'sr-only', text: 'In reply to ' }));
    if (!o) { q.append(el('span', { class: 'quote-text', text: 'Original message not found' })); return; }
    q.append(el('span', { class: 'who', text: nameOf(o.from) }), el('span', { class: 'sr-only', text: ': ' }),
      el('span', { class: 'quote-text', text: o.deleted ? 'This message was deleted' : o.text.slice(0, 100) }));
  };
  const cache = cacheOf(m.channel);
  const known = cache && cache.bySeq.get(m.reply_seq);
  if (known && known.id === m.reply_to) fill(known);
  else {
    q.textContent = '…';
    fetchHistory(m.channel, { around_seq: m.reply_seq, limit: 1 })
      .then((r) => fill(r.find((x) => x.id === m.reply_to))).catch(() => fill(null));
  }
  q.addEventListener('click', () => jumpTo(m.channel, m.reply_seq));
  return q;
}

/** scrolls to message seq of the open conversation, loading older pages until it is there */
async function jumpTo(channel, seq) {
  if (S.current !== channel) return;
  const cache = cacheOf(channel);
  for (let i = 0; cache && !cache.bySeq.has(seq) && !cache.complete && i < 40; i++) await loadOlder(channel);
  const li = document.querySelector(`#msgs li[data-seq="${seq}"]`);
  if (!li) return;
  li.scrollIntoView({ block: 'center' });
  li.classList.add('flash');
  setTimeout(() => li.classList.remove('flash'), 1500);
}

/** the reactions under a message: one toggle per emoji, pressed when it is mine */
function reactionsEl(m) {
  const box = el('div', { class: 'reactions', role: 'group', 'aria-label': 'Reactions' });
  for (const r of m.reactions) {
    const mine = r.users.includes(S.me.id);
    const who = r.users.map((u) => nameOf(u)).join(', ');
    box.append(el('button', { type: 'button', class: 'reaction', 'aria-pressed': String(mine),
      title: who, 'aria-label': `${r.emoji} ${r.count}: ${who}`, onclick: () => react(m, r.emoji, !mine) },
    el('span', { text: r.emoji }), el('span', { class: 'count', text: String(r.count) })));
  }
  return box;
}

const QUICK_REACTIONS = ['👍', '❤️', '😂', '😮', '😢', '🙏'];

/** a few reactions to choose from, in place of the message's actions */
function reactionPicker(m, li) {
  const acts = li.querySelector('.msg-actions');
  if (!acts) return;
  const pick = el('span', { class: 'msg-actions picker', role: 'group', 'aria-label': 'Choose a reaction' });
  for (const e of QUICK_REACTIONS) {
    pick.append(el('button', { type: 'button', class: 'link', text: e, 'aria-label': `React with ${e}`,
      onclick: () => { pick.replaceWith(messageActions(m, li) || ''); react(m, e, true); } }));
  }
  pick.append(el('button', { type: 'button', class: 'link', text: 'Cancel', onclick: () => pick.replaceWith(messageActions(m, li) || '') }));
  acts.replaceWith(pick);
  pick.querySelector('button').focus();
}

async function react(m, emoji, on) {
  try {
    await api(on ? 'PUT' : 'DELETE', `/v1/messages/${encodeURIComponent(m.id)}/reactions/${encodeURIComponent(emoji)}`,
      { token: S.session.token });
  } catch (e) {
    const li = document.querySelector(`#msgs li[data-id="${CSS.escape(m.id)}"]`);
    if (li) changeFailed(li, on ? 'reacted' : 'taken back', e);
  }
}

/** the reply being written: {channel, id, seq, from, text} or null */
function setReply(m) {
  S.replyTo = m ? { channel: m.channel, id: m.id, seq: m.seq, from: m.from, text: m.text } : null;
  const bar = $('replying');
  bar.hidden = !m;
  if (m) {
    $('replying-text').textContent = `Replying to ${nameOf(m.from)}: ${m.text.slice(0, 100)}`;
    $('input').focus();
  }
}

/** Reply (anyone), Edit (the author, within the window) and Delete (the author, or a group's owner) */
const EDIT_WINDOW_MS = 24 * 3600 * 1000;
function messageActions(m, li) {
  if (m.deleted) return null;
  const c = S.channels.get(m.channel);
  const mine = m.from === S.me.id;
  const canEdit = mine && Date.now() - m.ts < EDIT_WINDOW_MS;
  const canDelete = mine || (c && c.channel.kind === 'group' && c.channel.owner === S.me.id);
  const box = el('span', { class: 'msg-actions' });
  box.append(el('button', { type: 'button', class: 'link', text: 'Reply', 'aria-label': 'Reply to this message', onclick: () => setReply(m) }));
  box.append(el('button', { type: 'button', class: 'link', text: 'React', 'aria-label': 'React to this message', onclick: () => reactionPicker(m, li) }));
  if (canEdit) box.append(el('button', { type: 'button', class: 'link', text: 'Edit', 'aria-label': 'Edit this message', onclick: () => startEdit(m, li) }));
  if (canDelete) box.append(el('button', { type: 'button', class: 'link', text: 'Delete', 'aria-label': 'Delete this message', onclick: () => deleteMessage(m, li) }));
  return box;
}

function changeFailed(li, what, e) {
  const meta = li.querySelector('.meta');
  if (meta) meta.append(el('span', { class: 'error', role: 'alert', text: `Not ${what}: ${describeError(e)}` }));
}

/** asks in place ("Delete for everyone?" Yes / No), then deletes; the event redraws the message */
function deleteMessage(m, li) {
  const acts = li.querySelector('.msg-actions');
  if (!acts) return;
  let ask = null;
  const no = el('button', { type: 'button', class: 'link', text: 'No', onclick: () => ask.replaceWith(messageActions(m, li)) });
  const yes = el('button', { type: 'button', class: 'link danger', text: 'Yes, delete', onclick: async () => {
    yes.disabled = no.disabled = true;
    try {
      await api('DELETE', `/v1/messages/${encodeURIComponent(m.id)}`, { token: S.session.token });
    } catch (e) {
      ask.replaceWith(messageActions(m, li) || '');
      changeFailed(li, 'deleted', e);
    }
  } });
  ask = el('span', { class: 'msg-actions asking', role: 'group', 'aria-label': 'Delete for everyone?' },
    el('span', { text: 'Delete for everyone?' }), yes, no);
  acts.replaceWith(ask);
  no.focus();
}

/** edits in place: Enter saves, Escape (or an unchanged text) cancels */
function startEdit(m, li) {
  const bubble = li.querySelector('.bubble');
  if (!bubble || li.querySelector('textarea')) return;
  const box = el('textarea', { class: 'edit-box', 'aria-label': 'Edit message', rows: 2 });
  box.value = m.text;
  const done = () => { li.replaceWith(messageEl(m)); };
  const save = async () => {
    const text = box.value;
    if (!text.trim() || text === m.text) { done(); return; }
    box.disabled = true;
    try {
      const r = await api('PATCH', `/v1/messages/${encodeURIComponent(m.id)}`, { token: S.session.token, body: { text } });
      if (!m.deleted && !(m.edited_at > r.message.edited_at)) { m.text = r.message.text; m.edited_at = r.message.edited_at; }
      done();
    } catch (e) { box.disabled = false; changeFailed(li, 'edited', e); }
  };
  box.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey) { ev.preventDefault(); save(); }
    else if (ev.key === 'Escape') { ev.preventDefault(); ev.stopPropagation(); done(); }   // not the phone's "close the chat"
  });
  bubble.replaceWith(el('div', { class: 'bubble editing' }, box,
    el('div', { class: 'edit-actions' },
      el('button', { type: 'button', class: 'link', text: 'Save', onclick: save }),
      el('button', { type: 'button', class: 'link', text: 'Cancel', onclick: done }))));
  box.focus();
  box.setSelectionRange(box.value.length, box.value.length);
}

function pendingEl(o) {
  const li = el('li', { class: 'msg mine pending', dataset: { cmid: o.cmid, state: o.failed ? 'failed' : 'sending' } });
  li.append(el('div', { class: 'bubble' }, ...textBody(o.text)));
  const meta = el('div', { class: 'meta' }, el('span', { class: 'state', text: o.failed ? `Not sent: ${o.failed}` : 'Sending…' }));
  if (o.failed) {
    meta.append(el('button', { type: 'button', class: 'link', text: 'Discard', onclick: () => {
      S.outbox = S.outbox.filter((x) => x.cmid !== o.cmid); saveOutbox(); li.remove();
    } }));
  }
  li.append(meta);
  return li;
}

/** insert a stored message at its place (by seq), before the pending ones */
function placeMessage(m) {
  const msgs = $('msgs');
  if (msgs.querySelector(`li[data-seq="${m.seq}"]`)) return;
  const log = $('log');
  const stick = atBottom();
  for (const d of msgs.querySelectorAll('li.day')) d.remove();
  const node = messageEl(m);
  let before = null;
  for (let n = msgs.lastElementChild; n; n = n.previousElementSibling) {
    if (n.dataset.seq === undefined) { before = n; continue; }   // pending
    if (Number(n.dataset.seq) > m.seq) { before = n; continue; }
    break;
  }
  msgs.insertBefore(node, before);
  renderDays();
  refreshReceipts();
  if (stick || m.from === S.me.id) log.scrollTop = log.scrollHeight;
}

function atBottom() {
  const log = $('log');
  return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
}

function isReading() {
  return document.visibilityState === 'visible' && !$('log').hidden && atBottom();
}

function renderMessages() {
  const msgs = $('msgs');
  msgs.textContent = '';
  const frag = document.createDocumentFragment();
  const cache = cacheOf(S.current);
  if (cache) {
    const seqs = [...cache.bySeq.keys()].sort((a, b) => a - b);
    for (const s of seqs) frag.append(messageEl(cache.bySeq.get(s)));
  }
  for (const o of S.outbox) if (outboxKey(o) === S.current) frag.append(pendingEl(o));
  msgs.append(frag);
  renderDays();
  refreshReceipts();
  renderLogTop();
  const log = $('log');
  log.scrollTop = log.scrollHeight;
}

function outboxKey(o) {
  if (o.channel) return o.channel;
  const d = directWith(o.to);
  return d || `u:${o.to}`;
}

/** "Sent" / "Read" / "Read by N" on my messages from the receipts we know */
function refreshReceipts() {
  if (!S.current || S.current.startsWith('u:')) return;
  const r = S.receipts.get(S.current);
  const c = S.channels.get(S.current);
  const others = r ? [...r.entries()].filter(([u]) => u !== S.me.id) : [];
  const group = c && c.channel.kind === 'group';
  for (const li of $('msgs').querySelectorAll('li.msg.mine[data-seq]')) {
    const seq = Number(li.dataset.seq);
    const readers = others.filter(([, s]) => s >= seq).map(([u]) => u);
    const st = li.querySelector('.state');
    if (!st) continue;
    if (readers.length) {
      li.dataset.state = 'read';
      st.textContent = group ? `Read by ${readers.map(nameOf).join(', ')}` : 'Read';
    } else {
      li.dataset.state = 'sent';
      st.textContent = 'Sent';
    }
  }
}

// ---------------------------------------------------------------- reading, typing
function markRead() {
  const id = S.current;
  if (!id || id.startsWith('u:') || !isReading()) return;
  const c = S.channels.get(id);
  if (!c) return;
  const cache = cacheOf(id);
  const seq = Math.max(cache ? cache.top : 0, c.last ? c.last.seq : 0);
  if (c.unread) { c.unread = 0; scheduleList(); }
  if (!seq || (S.readSent.get(id) || 0) >= seq) return;
  if (S.sock && S.sock.send({ op: 'read', channel: id, seq })) S.readSent.set(id, seq);
  if ((S.localRead[id] || 0) < seq) {
    S.localRead[id] = seq;
    store.set(K.read(), S.localRead);
  }
}

function renderTyping() {
  const line = $('typing');
  const t = S.current && S.typing.get(S.current);
  const now = Date.now();
  const who = t ? [...t.entries()].filter(([u, until]) => until > now && u !== S.me.id).map(([u]) => nameOf(u)) : [];
  line.textContent = who.length === 0 ? '' : who.length === 1 ? `${who[0]} is typing…` : `${who.join(', ')} are typing…`;
}
setInterval(renderTyping, 1000);

// ---------------------------------------------------------------- sending
function saveOutbox() { if (S.me) store.set(K.outbox(), S.outbox); }

function sendText(text) {
  if (!S.current) return;
  const n = codepoints(text);
  if (n > MAX_CODEPOINTS) {
    showError('chat-error', `That message is ${n.toLocaleString()} characters long; the limit is ${MAX_CODEPOINTS.toLocaleString()}.`);
    return false;
  }
  const o = { cmid: newCmid(), text, ts: Date.now(), owner: S.tabId };
  if (S.current.startsWith('u:')) o.to = S.current.slice(2);
  else o.channel = S.current;
  if (S.replyTo && S.replyTo.channel === S.current) { o.reply_to = S.replyTo.id; o.reply_seq = S.replyTo.seq; }
  setReply(null);
  S.outbox.push(o);
  saveOutbox();
  $('msgs').append(pendingEl(o));
  $('log').scrollTop = $('log').scrollHeight;
  flushOutbox();
  return true;
}

function flushOutbox() {
  if (!S.sock || !S.sock.ready) return;
  const gen = S.sock.gen;
  for (const o of S.outbox) {
    if (o.failed || o.owner !== S.tabId || S.sentGen.get(o.cmid) === gen) continue;
    const f = { op: 'send', rid: `s:${o.cmid}`, cmid: o.cmid, text: o.text };
    if (o.channel) f.channel = o.channel; else f.to = o.to;
    if (o.reply_to) f.reply_to = o.reply_to;
    if (S.sock.send(f)) S.sentGen.set(o.cmid, gen);
  }
}

function onAck(a) {
  const o = S.outbox.find((x) => x.cmid === a.cmid);
  const text = o ? o.text : null;
  if (o && o.to && !S.channels.has(a.channel)) {
    upsertChannel({ id: a.channel, kind: 'direct', members: o.to === S.me.id ? [S.me.id] : [S.me.id, o.to] });
  }
  if (text === null) {
    // acked by another tab's resend, or already handled; make sure the list is right
    if (cacheOf(a.channel) && !cacheOf(a.channel).bySeq.has(a.seq)) fillGap(a.channel);
    return;
  }
  const m = { id: a.id, channel: a.channel, seq: a.seq, pos: a.pos, from: S.me.id, text, ts: a.ts, cmid: a.cmid };
  if (o.reply_to) { m.reply_to = o.reply_to; m.reply_seq = o.reply_seq; }
  ingest(m);
}

function onSendError(f) {
  const cmid = f.rid.slice(2);
  const o = S.outbox.find((x) => x.cmid === cmid);
  if (!o) return;
  if (['rate_limited', 'unavailable', 'internal'].includes(f.code)) {
    S.sentGen.delete(cmid);
    setTimeout(flushOutbox, 2000);
    return;
  }
  o.failed = describeError(f);
  saveOutbox();
  const li = document.querySelector(`#msgs li[data-cmid="${CSS.escape(cmid)}"]`);
  if (li) li.replaceWith(pendingEl(o));
}

// ---------------------------------------------------------------- the socket
function onReady(f, again) {
  if (f.user) { S.me = { ...S.me, ...f.user }; $('me-name').textContent = nameOf(S.me.id); }
  if (!again) {
    S.pos = Math.max(S.pos, f.pos || 0);
    for (const p of S.posSeen) if (p <= S.pos) S.posSeen.delete(p);
    loadChannels();
  } else {
    catchUp(S.pos, f.pos || 0);
  }
  S.readSent.clear();
  flushOutbox();
  queryPresence();
  loadFriends();
  markRead();
}

/** after a reconnect: everything after our pos, page by page; then the open channel's tail */
async function catchUp(from, readyPos) {
  let cursor = from;
  try {
    for (let pages = 0; cursor < readyPos && pages < 20; pages++) {
      const b = await S.sock.request({ op: 'sync', after: cursor, limit: 500 });
      const ms = b.messages || [];
      for (const m of ms) { ingest(m); if (m.pos > cursor) cursor = m.pos; }
      if (!ms.length || !b.more) break;
    }
  } catch { /* the next reconnect tries again */ }
  if (cursor < readyPos) {
    // too far behind (or sync failed): start over from the channel list
    S.caches.clear();
    S.pos = Math.max(S.pos, readyPos);
    for (const p of S.posSeen) if (p <= S.pos) S.posSeen.delete(p);
    if (S.current && !S.current.startsWith('u:')) openChat(S.current);
  }
  await loadChannels();
  if (S.current && cacheOf(S.current)) fillGap(S.current);
  loadBlocked().then(renderChatActions).catch(() => {});
}

function onFrame(f) {
  switch (f.op) {
    case 'msg': ingest(f); break;
    case 'ack': onAck(f); break;
    case 'friend':   // a request, an acceptance or an end, live from the other side
      loadFriends();
      break;
    case 'receipt': {
      let r = S.receipts.get(f.channel);
      if (!r) { r = new Map(); S.receipts.set(f.channel, r); }
      if ((r.get(f.user) || 0) < f.seq) r.set(f.user, f.seq);
      if (f.channel === S.current) refreshReceipts();
      break;
    }
    case 'typing': {
      if (f.user === S.me.id) break;
      let t = S.typing.get(f.channel);
      if (!t) { t = new Map(); S.typing.set(f.channel, t); }
      t.set(f.user, Date.now() + TYPING_SHOW_MS);
      if (f.channel === S.current) renderTyping();
      break;
    }
    case 'channel':
      // a group we were just put in (created by someone): show it in the list at once
      loadChannels();
      break;
    case 'presence':
      if (f.user_id) setPresence(f);
      for (const p of f.presence || []) setPresence(p);
      break;
    case 'error':
      if (typeof f.rid === 'string' && f.rid.startsWith('s:')) onSendError(f);
      break;
    default: break;
  }
}

function setPresence(p) {
  S.presence.set(p.user_id, { status: p.status, last_active_at: p.last_active_at });
  for (const d of document.querySelectorAll(`[data-presence="${CSS.escape(p.user_id)}"]`)) paintDot(d, p.user_id);
  if (S.current) renderHeader();
}

function paintDot(d, uid) {
  const p = S.presence.get(uid);
  const st = p ? p.status : 'unknown';
  d.dataset.status = st;
  d.title = st === 'online' ? 'Online' : st === 'offline' ? lastSeen(p) : '';
  d.setAttribute('aria-label', st === 'unknown' ? '' : st);
  d.hidden = st === 'unknown';
}

function lastSeen(p) {
  return p && p.last_active_at ? `Offline, last seen ${fmtTime(p.last_active_at)}` : 'Offline';
}

let presenceWarned = false;
async function queryPresence() {
  if (!S.sock || !S.sock.ready) return;
  const ids = new Set();
  for (const c of S.channels.values()) { const p = peerOf(c.channel); if (p && p !== S.me.id) ids.add(p); }
  if (S.friends) for (const f of S.friends.friends) ids.add(f.user.id);
  if (!ids.size) return;
  try {
    const r = await S.sock.request({ op: 'presence', users: [...ids].slice(0, 200) });
    for (const p of r.presence || []) setPresence(p);
  } catch (e) {
    if (!presenceWarned && e.code === 'unavailable') { presenceWarned = true; console.info('presence is not available on this server yet'); }
  }
}

function setConn({ state, retryAt }) {
  const c = $('conn');
  c.dataset.state = state;
  clearInterval(c._t);
  if (state === 'online') c.textContent = 'Online';
  else if (state === 'connecting') c.textContent = 'Connecting…';
  else {
    const tick = () => {
      const s = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
      c.textContent = s > 0 ? `Offline — retrying in ${s} s` : 'Offline — retrying…';
    };
    tick();
    c._t = setInterval(tick, 1000);
  }
}

async function onAuthFailed() {
  try {
    await api('GET', '/v1/me', { token: S.session.token });
  } catch (e) {
    if (e.status === 401) sessionDead();
  }
}

// ---------------------------------------------------------------- friends
async function loadFriends() {
  try {
    const r = await api('GET', '/v1/friends', { token: S.session.token });
    S.friends = { friends: r.friends || [], incoming: r.incoming || [], outgoing: r.outgoing || [] };
    for (const f of S.friends.friends) {
      S.users.set(f.user.id, f.user);
      if (f.presence) setPresence({ user_id: f.user.id, ...f.presence });
    }
    for (const u of [...S.friends.incoming, ...S.friends.outgoing]) S.users.set(u.id, u);
    showError('friends-error', '');
  } catch (e) {
    if (e.status === 401) return sessionDead();
    S.friends = null;
    if (S.tab === 'friends') showError('friends-error', e);
  }
  renderFriends();
}

function renderFriends() {
  const reqs = $('friend-requests');
  const list = $('friend-list');
  reqs.textContent = '';
  list.textContent = '';
  const f = S.friends || { friends: [], incoming: [], outgoing: [] };
  for (const u of f.incoming) {
    reqs.append(el('li', { class: 'person', dataset: { user: u.username } },
      el('span', { class: 'pname', text: u.display_name || u.username }),
      el('span', { class: 'hint', text: 'wants to be friends' }),
      el('button', { type: 'button', text: 'Accept', 'aria-label': `Accept ${u.username}`, onclick: () => friendOp('PUT', u.id) }),
      el('button', { type: 'button', class: 'ghost', text: 'Decline', 'aria-label': `Decline ${u.username}`, onclick: () => friendOp('DELETE', u.id) })));
  }
  for (const u of f.outgoing) {
    reqs.append(el('li', { class: 'person', dataset: { user: u.username } },
      el('span', { class: 'pname', text: u.display_name || u.username }),
      el('span', { class: 'hint', text: 'request sent' }),
      el('button', { type: 'button', class: 'ghost', text: 'Cancel', 'aria-label': `Cancel request to ${u.username}`, onclick: () => friendOp('DELETE', u.id) })));
  }
  const sorted = [...f.friends].sort((a, b) => {
    const oa = S.presence.get(a.user.id)?.status === 'online' ? 0 : 1;
    const ob = S.presence.get(b.user.id)?.status === 'online' ? 0 : 1;
    return oa - ob || (a.user.display_name || a.user.username).localeCompare(b.user.display_name || b.user.username);
  });
  for (const { user: u } of sorted) {
    const dot = el('span', { class: 'dot', dataset: { presence: u.id } });
    paintDot(dot, u.id);
    list.append(el('li', { class: 'person', dataset: { user: u.username } }, dot,
      el('span', { class: 'pname', text: u.display_name || u.username }),
      el('button', { type: 'button', text: 'Message', 'aria-label': `Message ${u.username}`, onclick: () => startDirect(u) }),
      el('button', { type: 'button', class: 'ghost', text: 'Remove', 'aria-label': `Remove friend ${u.username}`, onclick: () => friendOp('DELETE', u.id) })));
  }
  $('friends-empty').hidden = f.friends.length > 0;
  $('requests-head').hidden = f.incoming.length + f.outgoing.length === 0;
  const b = $('friends-badge');
  b.textContent = String(f.incoming.length);
  b.hidden = f.incoming.length === 0;
}

async function friendOp(method, id) {
  try {
    await api(method, `/v1/friends/${encodeURIComponent(id)}`, { token: S.session.token });
    showError('friends-error', '');
  } catch (e) {
    showError('friends-error', e);
  }
  await loadFriends();
  queryPresence();
}

// ---------------------------------------------------------------- the conversation list
function renderList() {
  const ul = $('chat-list');
  const items = [...S.channels.values()].sort((a, b) => {
    const ta = a.last ? a.last.ts : 0;
    const tb = b.last ? b.last.ts : 0;
    return tb - ta || (b.channel.id > a.channel.id ? 1 : -1);
  });
  const frag = document.createDocumentFragment();
  for (const c of items) {
    const id = c.channel.id;
    const peer = peerOf(c.channel);
    const btn = el('button', { type: 'button', class: 'chat-item', 'aria-current': S.current === id ? 'true' : null, onclick: () => go(id) });
    const title = el('span', { class: 'ci-title' });
    if (c.channel.kind === 'direct' && peer) {
      const dot = el('span', { class: 'dot', dataset: { presence: peer } });
      paintDot(dot, peer);
      title.append(dot);
    } else {
      title.append(el('span', { class: 'group-mark', 'aria-hidden': 'true', text: '#' }));
    }
    title.append(el('span', { class: 'ci-name', text: titleOf(id) }));
    let preview = '';
    if (c.last) {
      const t = c.last.event ? eventText(c.last) : c.last.deleted ? 'Message deleted' : c.last.text;
      preview = (c.last.from === S.me.id && !c.last.event ? 'You: ' : c.channel.kind === 'group' && !c.last.event ? `${nameOf(c.last.from)}: ` : '') + t.slice(0, 120);
    }
    const row2 = el('span', { class: 'ci-row' }, el('span', { class: 'ci-last', text: preview || 'No messages yet' }));
    if (c.mentions > 0 && c.unread > 0) row2.append(el('span', { class: 'badge mention', 'aria-label': `${c.mentions} mentions of you`, text: '@' }));
    if (c.unread > 0) row2.append(el('span', { class: 'badge unread', 'aria-label': `${c.unread} unread`, text: c.unread > 999 ? '999+' : String(c.unread) }));
    btn.append(el('span', { class: 'ci-top' }, title, el('span', { class: 'ci-time', text: c.last ? fmtTime(c.last.ts) : '' })), row2);
    frag.append(el('li', { dataset: { channel: id } }, btn));
  }
  ul.textContent = '';
  ul.append(frag);
  $('chat-list-empty').hidden = items.length > 0;
  // the unread count in the tab's title, so a background tab tells there is something new
  const unread = items.reduce((n, c) => n + (c.unread > 0 ? c.unread : 0), 0);
  document.title = unread ? `(${unread > 999 ? '999+' : unread}) iyagi` : 'iyagi';
}

// ---------------------------------------------------------------- opening a conversation
function go(id) {
  const h = `#/c/${id}`;
  if (location.hash !== h) location.hash = h;
  else openChat(id);
}

function route() {
  if (!S.me) return;
  const pushed = /^#channel=(\d+)$/.exec(location.hash);
  if (pushed) { location.replace(`#/c/${pushed[1]}`); return; }
  const m = /^#\/c\/(u:)?(\d+)$/.exec(location.hash);
  if (!m) { closeChat(); return; }
  const id = (m[1] || '') + m[2];
  if (id.startsWith('u:')) {
    const d = directWith(id.slice(2));
    if (d) { location.replace(`#/c/${d}`); return; }
  }
  openChat(id);
}

async function openChat(id) {
  if (S.replyTo && S.replyTo.channel !== id) setReply(null);
  const switching = S.current !== id;
  S.current = id;
  document.body.classList.add('chat-open');
  $('chat-none').hidden = true;
  $('chat-head').hidden = false;
  $('log').hidden = false;
  $('composer').hidden = false;
  showError('chat-error', '');
  if (switching) {
    $('msgs').textContent = '';
    $('typing').textContent = '';
    $('input').value = draftText.get(id) || '';
    $('mention-list').hidden = true;
    autosize();
  }
  renderHeader();
  renderList();
  if (id.startsWith('u:')) {
    loadUser(id.slice(2));
    renderMessages();
  } else {
    if (!S.channels.has(id)) {
      const ch = await refreshChannel(id);
      if (!ch || S.current !== id) return;
    }
    const c = S.channels.get(id);
    for (const mId of c.channel.members || []) loadUser(mId);
    if (!c.channel.members || switching) refreshChannel(id);   // members, and who has read what
    renderMessages();
    await openCache(id);
    if (S.current !== id) return;
    renderMessages();
    markRead();
  }
  if (!matchMedia('(max-width: 700px)').matches || switching) $('input').focus({ preventScroll: true });
}

function closeChat(keepHash = false) {
  S.current = null;
  setReply(null);
  document.body.classList.remove('chat-open');
  $('chat-none').hidden = false;
  $('chat-head').hidden = true;
  $('log').hidden = true;
  $('composer').hidden = true;
  $('typing').textContent = '';
  renderList();
  if (!keepHash && location.hash.startsWith('#/c/')) history.replaceState(null, '', location.pathname);
}

function renderHeader() {
  const id = S.current;
  if (!id) return;
  $('chat-title').textContent = titleOf(id);
  const sub = $('chat-sub');
  const c = S.channels.get(id);
  const isGroup = c && c.channel.kind === 'group';
  $('group-info').hidden = !isGroup;
  if (isGroup) {
    const n = (c.channel.members || []).length;
    sub.textContent = n ? `${n} members` : 'Group';
  } else {
    const peer = id.startsWith('u:') ? id.slice(2) : peerOf(c && c.channel);
    const p = peer && S.presence.get(peer);
    const u = peer && S.users.get(peer);
    sub.textContent = p ? (p.status === 'online' ? 'Online' : lastSeen(p)) : u ? `@${u.username}` : '';
  }
  renderChatActions();
}

// ---------------------------------------------------------------- mute, block, settings
/** the conversation's Mute and Block buttons, from what the server said */
function renderChatActions() {
  const id = S.current;
  if (!id) return;
  const mute = $('mute');
  const block = $('block');
  mute.hidden = id.startsWith('u:');
  const muted = S.muted.has(id);
  mute.textContent = muted ? 'Unmute' : 'Mute';
  mute.setAttribute('aria-pressed', String(muted));
  const c = S.channels.get(id);
  const peer = id.startsWith('u:') ? id.slice(2) : c && c.channel.kind !== 'group' ? peerOf(c.channel) : null;
  block.hidden = !peer || peer === S.me.id;
  const blocked = !!peer && S.blocked.has(peer);
  block.textContent = blocked ? 'Unblock' : 'Block';
  block.setAttribute('aria-pressed', String(blocked));
  block.dataset.peer = peer || '';
}

async function loadBlocked() {
  const r = await api('GET', '/v1/blocks', { token: S.session.token });
  S.blocked.clear();
  for (const u of r.blocked || []) { S.blocked.add(u.id); S.users.set(u.id, u); }
  return r.blocked || [];
}

async function setBlocked(userId, on) {
  await api(on ? 'PUT' : 'DELETE', `/v1/blocks/${encodeURIComponent(userId)}`, { token: S.session.token });
  if (on) S.blocked.add(userId); else S.blocked.delete(userId);
  renderChatActions();
}

async function openSettings() {
  showError('settings-error', '');
  $('pw-status').textContent = '';
  $('dlg-settings').showModal();
  try {
    await Promise.all([renderSessions(), renderBlocked()]);
  } catch (e) { showError('settings-error', e); }
}

async function renderSessions() {
  const r = await api('GET', '/v1/sessions', { token: S.session.token });
  const ul = $('session-list');
  ul.textContent = '';
  for (const s of r.sessions || []) {
    const when = s.created_at ? fmtTime(s.created_at) : 'earlier';
    const li = el('li', { class: 'person' }, el('span', { class: 'pname', text: s.device || 'a device' }),
      el('span', { class: 'hint', text: s.current ? 'this one' : `since ${when}` }));
    if (!s.current) {
      li.append(el('button', { type: 'button', class: 'ghost', text: 'Log out', 'aria-label': `Log out ${s.device || 'that device'}`,
        onclick: async () => {
          try { await api('DELETE', `/v1/sessions/${encodeURIComponent(s.id)}`, { token: S.session.token }); await renderSessions(); } catch (e) { showError('settings-error', e); }
        } }));
    }
    ul.append(li);
  }
}

async function renderBlocked() {
  const list = await loadBlocked();
  const ul = $('blocked-list');
  ul.textContent = '';
  for (const u of list) {
    ul.append(el('li', { class: 'person' }, nameSpan(u.id, 'pname'),
      el('button', { type: 'button', class: 'ghost', text: 'Unblock', 'aria-label': `Unblock ${nameOf(u.id)}`,
        onclick: async () => {
          try { await setBlocked(u.id, false); await renderBlocked(); } catch (e) { showError('settings-error', e); }
        } })));
  }
  $('blocked-empty').hidden = list.length > 0;
}

async function startDirect(user) {
  if (user.id === S.me.id && !directWith(user.id)) { /* a chat with yourself is allowed */ }
  const d = directWith(user.id);
  selectTab('chats');
  if (d) go(d);
  else { S.drafts.set(`u:${user.id}`, user); go(`u:${user.id}`); }
}

// ---------------------------------------------------------------- groups
function openMembers() {
  renderMembers();
  $('dlg-members').showModal();
  $('add-member-user').focus();
}

function renderMembers() {
  const c = S.channels.get(S.current);
  if (!c) return;
  const ch = c.channel;
  const owner = ch.owner === S.me.id;
  $('dlg-members-title').textContent = `Members of ${ch.name || 'the group'}`;
  $('rename-form').hidden = !owner;
  if (owner && document.activeElement !== $('rename-input')) $('rename-input').value = ch.name || '';
  const ul = $('member-list');
  ul.textContent = '';
  for (const m of ch.members || []) {
    const li = el('li', { class: 'person' }, nameSpan(m, 'pname'));
    if (m === ch.owner) li.append(el('span', { class: 'hint', text: 'owner' }));
    if (m === S.me.id) li.append(el('span', { class: 'hint', text: 'you' }));
    if (owner && m !== S.me.id) {
      li.append(el('button', { type: 'button', class: 'ghost', text: 'Remove', 'aria-label': `Remove ${nameOf(m)}`, onclick: () => removeMember(ch.id, m) }));
    }
    ul.append(li);
  }
}

async function removeMember(chId, userId) {
  try {
    await api('DELETE', `/v1/channels/${encodeURIComponent(chId)}/members/${encodeURIComponent(userId)}`, { token: S.session.token });
    showError('members-error', '');
    if (userId === S.me.id) {
      $('dlg-members').close();
      S.channels.delete(chId);
      S.caches.delete(chId);
      closeChat();
      return;
    }
    const c = S.channels.get(chId);
    if (c && c.channel.members) c.channel.members = c.channel.members.filter((x) => x !== userId);
    renderMembers();
    renderHeader();
    refreshChannel(chId);
  } catch (e) {
    showError('members-error', e);
  }
}

// ---------------------------------------------------------------- auth
let signup = false;
function setAuthMode(s) {
  signup = s;
  $('tab-login').setAttribute('aria-selected', String(!s));
  $('tab-signup').setAttribute('aria-selected', String(s));
  $('auth-display-row').hidden = !s;
  $('auth-submit').textContent = s ? 'Create account' : 'Log in';
  $('auth-password').autocomplete = s ? 'new-password' : 'current-password';
  showError('auth-error', '');
}

async function submitAuth(ev) {
  ev.preventDefault();
  const username = $('auth-username').value.trim().toLowerCase();
  const password = $('auth-password').value;
  if (!/^[a-z0-9_.-]{3,32}$/.test(username)) return showError('auth-error', 'Usernames are 3–32 characters: a–z, 0–9, _ . -');
  if (password.length < 8) return showError('auth-error', 'Passwords have at least 8 characters.');
  const btn = $('auth-submit');
  btn.disabled = true;
  try {
    if (signup) {
      const body = { username, password };
      const dn = $('auth-display').value.trim();
      if (dn) body.display_name = dn;
      try { await api('POST', '/v1/users', { body }); } catch (e) {
        if (e.status === 409) throw new ApiError(409, 'conflict', 'That username is taken.');
        throw e;
      }
    }
    let r;
    try { r = await api('POST', '/v1/sessions', { body: { username, password } }); } catch (e) {
      if (e.status === 401) throw new ApiError(401, 'unauthorized', 'Wrong username or password.');
      throw e;
    }
    S.session = { token: r.token, user: r.user, device: r.device, ws_url: r.ws_url };
    store.set(K.session, S.session);
    $('auth-password').value = '';
    startApp(true);
  } catch (e) {
    showError('auth-error', e);
  } finally {
    btn.disabled = false;
  }
}

function showAuth() {
  $('app').hidden = true;
  $('auth').hidden = false;
  document.title = 'iyagi';
  $('auth-username').focus();
}

function resetState() {
  if (S.sock) S.sock.stop();
  S.sock = null;
  S.me = null;
  S.pos = 0;
  S.posSeen.clear();
  for (const k of ['channels', 'caches', 'users', 'userReq', 'presence', 'receipts', 'typing', 'drafts', 'sentGen', 'readSent', 'muted', 'blocked']) S[k].clear();
  S.outbox = [];
  S.current = null;
  S.friends = null;
  $('msgs').textContent = '';
  $('chat-list').textContent = '';
  document.body.classList.remove('chat-open');
}

function sessionDead() {
  if (!S.session) return;
  store.del(K.session);
  if (S.me && store.get(K.push(S.me.id), null)) {
    // the server dropped the subscription with the session; drop the browser's side too
    store.del(K.push(S.me.id));
    unsubscribeBrowser();
  }
  S.session = null;
  resetState();
  history.replaceState(null, '', location.pathname);
  showAuth();
  showError('auth-error', 'Your session has ended. Please log in again.');
}

async function logout() {
  const s = S.session;
  const me = S.me;
  const push = me ? store.get(K.push(me.id), null) : null;
  store.del(K.session);
  if (me) { store.del(`iyagi.outbox.${me.id}`); store.del(K.push(me.id)); }
  S.session = null;
  resetState();
  history.replaceState(null, '', location.pathname);
  showAuth();
  if (!s) return;
  // the push subscription first: it needs the session's token
  if (push) await disablePush(s.token, push.id).catch(() => {});
  api('DELETE', '/v1/sessions/current', { token: s.token }).catch(() => {});
}

/** `fresh`: the session was just made, so its ws_url is discovery's choice of a moment ago */
function startApp(fresh = false) {
  resetState();
  S.me = S.session.user;
  S.users.set(S.me.id, S.me);
  S.localRead = store.get(K.read(), {});
  // adopt what is waiting to be sent (this tab's earlier life, or a closed tab's)
  S.outbox = store.get(K.outbox(), []).map((o) => ({ ...o, owner: S.tabId }));
  saveOutbox();
  $('auth').hidden = true;
  $('app').hidden = false;
  $('me-name').textContent = nameOf(S.me.id);
  renderPush();
  showError('push-error', '');
  closeChat(true);
  selectTab('chats');
  S.sock = new ChatSocket({
    token: S.session.token, url: S.session.ws_url, fresh,
    onReady, onFrame, onState: setConn, onAuthFailed,
  });
  S.sock.start();
  route();
  // check the token in the background (also refreshes the user)
  api('GET', '/v1/me', { token: S.session.token }).then((r) => {
    if (!S.me) return;
    S.me = { ...S.me, ...r.user };
    S.users.set(S.me.id, S.me);
    $('me-name').textContent = nameOf(S.me.id);
  }).catch((e) => { if (e.status === 401) sessionDead(); });
}

// ---------------------------------------------------------------- push notifications
let pushBusy = false;

function renderPush() {
  const t = $('push-toggle');
  const ok = pushSupported();
  t.disabled = !ok;
  t.checked = ok && !!(S.me && store.get(K.push(), null));
  $('push-label').title = ok ? 'Notify me of new messages while iyagi is closed'
    : 'This browser does not support push notifications';
}

async function togglePush() {
  const t = $('push-toggle');
  if (!S.me || !S.session) { t.checked = false; return; }
  const want = t.checked;
  if (pushBusy) { t.checked = !want; return; }   // one change at a time
  pushBusy = true;
  t.setAttribute('aria-busy', 'true');
  const me = S.me;
  const token = S.session.token;
  showError('push-error', '');
  try {
    if (want) {
      const sub = await enablePush(token);
      if (S.me !== me) { disablePush(token, sub.id).catch(() => {}); return; }   // logged out meanwhile
      store.set(K.push(me.id), sub);
    } else {
      const old = store.get(K.push(me.id), null);
      store.del(K.push(me.id));
      try { await disablePush(token, old && old.id); } catch (e) {
        if (S.me === me) showError('push-error', `Notifications are off in this browser, but the server could not be told: ${describeError(e)}`);
      }
    }
  } catch (e) {
    if (S.me === me) showError('push-error', pushErrorText(e));
  } finally {
    pushBusy = false;
    t.removeAttribute('aria-busy');
    if (S.me === me) renderPush();
  }
}

// ---------------------------------------------------------------- wiring
const draftText = new Map();

// ---------------------------------------------------------------- @ completion
/** the "@name" being typed right before the caret, or null */
function mentionAtCaret() {
  const t = $('input');
  const before = t.value.slice(0, t.selectionStart);
  const m = /(^|[^A-Za-z0-9_.\-@])@([A-Za-z0-9_.-]{0,32})$/.exec(before);
  return m ? { start: before.length - m[2].length - 1, prefix: m[2].toLowerCase() } : null;
}

/** offers the conversation's members whose username starts with what follows "@" */
function renderMentionList() {
  const ul = $('mention-list');
  const at = mentionAtCaret();
  const c = S.current && S.channels.get(S.current);
  const members = at && c ? (c.channel.members || []).filter((id) => id !== S.me.id) : [];
  const found = members.map((id) => S.users.get(id)).filter((u) => u && u.username.startsWith(at.prefix)).slice(0, 6);
  ul.textContent = '';
  ul.hidden = found.length === 0;
  found.forEach((u, i) => {
    ul.append(el('li', { role: 'option', 'aria-selected': String(i === 0), dataset: { username: u.username },
      text: `@${u.username} — ${u.display_name || u.username}`,
      onmousedown: (e) => { e.preventDefault(); pickMention(u.username); } }));
  });
}

function pickMention(username) {
  const t = $('input');
  const at = mentionAtCaret();
  if (!at) return;
  const end = t.selectionStart;
  t.value = `${t.value.slice(0, at.start)}@${username} ${t.value.slice(end)}`;
  const caret = at.start + username.length + 2;
  t.setSelectionRange(caret, caret);
  $('mention-list').hidden = true;
  if (S.current) draftText.set(S.current, t.value);
}

/** Arrow keys move through the offers, Enter or Tab takes one, Escape closes: true if handled */
function mentionKey(e) {
  const ul = $('mention-list');
  if (ul.hidden) return false;
  const items = [...ul.children];
  const cur = Math.max(0, items.findIndex((li) => li.getAttribute('aria-selected') === 'true'));
  if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
    const next = (cur + (e.key === 'ArrowDown' ? 1 : items.length - 1)) % items.length;
    items.forEach((li, i) => li.setAttribute('aria-selected', String(i === next)));
    return true;
  }
  if (e.key === 'Enter' || e.key === 'Tab') { pickMention(items[cur].dataset.username); return true; }
  if (e.key === 'Escape') { ul.hidden = true; return true; }
  return false;
}

function autosize() {
  const t = $('input');
  t.style.height = 'auto';
  t.style.height = `${Math.min(t.scrollHeight, 160)}px`;
}

function selectTab(tab) {
  S.tab = tab;
  $('tab-chats').setAttribute('aria-selected', String(tab === 'chats'));
  $('tab-friends').setAttribute('aria-selected', String(tab === 'friends'));
  $('panel-chats').hidden = tab !== 'chats';
  $('panel-friends').hidden = tab !== 'friends';
  if (tab === 'friends' && S.me) loadFriends();
}

function wire() {
  $('tab-login').addEventListener('click', () => setAuthMode(false));
  $('tab-signup').addEventListener('click', () => setAuthMode(true));
  $('auth-form').addEventListener('submit', submitAuth);
  $('logout').addEventListener('click', logout);
  $('push-toggle').addEventListener('change', togglePush);
  if ('serviceWorker' in navigator) {
    // a notification was clicked (sw.js): open its conversation
    navigator.serviceWorker.addEventListener('message', (e) => {
      const d = e.data;
      if (!d || d.type !== 'iyagi.open-channel' || !S.me) return;
      const id = String(d.channel || '');
      if (!/^\d+$/.test(id)) return;
      selectTab('chats');
      go(id);
    });
    navigator.serviceWorker.startMessages();
  }
  $('tab-chats').addEventListener('click', () => selectTab('chats'));
  $('tab-friends').addEventListener('click', () => selectTab('friends'));
  for (const [a, b] of [['tab-chats', 'tab-friends'], ['tab-login', 'tab-signup']]) {
    for (const [x, y] of [[a, b], [b, a]]) {
      $(x).addEventListener('keydown', (e) => {
        if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') { e.preventDefault(); $(y).click(); $(y).focus(); }
      });
    }
  }
  $('back').addEventListener('click', () => { closeChat(); $('chat-list').querySelector('button')?.focus(); });
  $('group-info').addEventListener('click', openMembers);

  $('new-chat').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const u = await userByName($('new-chat-user').value);
      $('new-chat-user').value = '';
      showError('side-error', '');
      startDirect(u);
    } catch (err) { showError('side-error', err); }
  });

  $('add-friend').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const u = await userByName($('add-friend-user').value);
      const r = await api('PUT', `/v1/friends/${encodeURIComponent(u.id)}`, { token: S.session.token });
      $('add-friend-user').value = '';
      showError('friends-error', r && r.state === 'friends' ? '' : '');
      await loadFriends();
      queryPresence();
    } catch (err) { showError('friends-error', err); }
  });

  $('new-group').addEventListener('click', () => {
    $('group-name').value = '';
    $('group-members').value = '';
    showError('group-error', '');
    $('dlg-group').showModal();
    $('group-name').focus();
  });
  $('group-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('group-name').value.trim();
    if (!name) return showError('group-error', 'Give the group a name.');
    const btn = $('group-create');
    btn.disabled = true;
    try {
      const names = $('group-members').value.split(/[\s,]+/).filter(Boolean);
      const members = [];
      for (const n of names) { const u = await userByName(n); if (u.id !== S.me.id && !members.includes(u.id)) members.push(u.id); }
      const r = await api('POST', '/v1/groups', { token: S.session.token, body: { name, members } });
      upsertChannel(r.channel, null, 0);
      $('dlg-group').close();
      renderList();
      go(r.channel.id);
    } catch (err) { showError('group-error', err); } finally { btn.disabled = false; }
  });

  $('add-member').addEventListener('submit', async (e) => {
    e.preventDefault();
    const id = S.current;
    try {
      const u = await userByName($('add-member-user').value);
      const r = await api('POST', `/v1/channels/${encodeURIComponent(id)}/members`, { token: S.session.token, body: { user_id: u.id } });
      $('add-member-user').value = '';
      showError('members-error', '');
      if (r && r.channel) upsertChannel(r.channel);
      else await refreshChannel(id);
      renderMembers();
      renderHeader();
    } catch (err) { showError('members-error', err); }
  });
  $('rename-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const id = S.current;
    const name = $('rename-input').value.trim();
    if (!name) return;
    try {
      const r = await api('PATCH', `/v1/channels/${encodeURIComponent(id)}`, { token: S.session.token, body: { name } });
      showError('members-error', '');
      if (r && r.channel) upsertChannel(r.channel); else await refreshChannel(id);
      renderMembers(); renderHeader(); renderList();
    } catch (err) { showError('members-error', err); }
  });
  $('leave-group').addEventListener('click', () => { if (S.current) removeMember(S.current, S.me.id); });
  $('mute').addEventListener('click', async () => {
    const id = S.current;
    if (!id || id.startsWith('u:')) return;
    const on = !S.muted.has(id);
    try {
      await api(on ? 'PUT' : 'DELETE', `/v1/channels/${encodeURIComponent(id)}/mute`, { token: S.session.token });
      if (on) S.muted.add(id); else S.muted.delete(id);
      renderChatActions();
    } catch (err) { showError('chat-error', err); }
  });
  $('block').addEventListener('click', async () => {
    const peer = $('block').dataset.peer;
    if (!peer) return;
    try { await setBlocked(peer, !S.blocked.has(peer)); } catch (err) { showError('chat-error', err); }
  });
  $('settings').addEventListener('click', openSettings);
  $('password-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const oldPw = $('pw-old').value, newPw = $('pw-new').value;
    if (newPw.length < 8) { $('pw-status').textContent = 'The new password needs 8 characters or more.'; return; }
    $('pw-save').disabled = true;
    try {
      await api('PUT', '/v1/me/password', { token: S.session.token, body: { old_password: oldPw, new_password: newPw } });
      $('pw-old').value = '';
      $('pw-new').value = '';
      $('pw-status').textContent = 'Password changed. Your other sessions are logged out.';
      await renderSessions();
    } catch (err) {
      $('pw-status').textContent = err.status === 403 ? 'That is not your current password.' : err.message;
    } finally { $('pw-save').disabled = false; }
  });
  for (const b of document.querySelectorAll('dialog [data-close]')) b.addEventListener('click', () => b.closest('dialog').close());

  const input = $('input');
  $('reply-cancel').addEventListener('click', () => { setReply(null); input.focus(); });
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    $('mention-list').hidden = true;
    if (sendText(text) !== false) {
      input.value = '';
      draftText.delete(S.current);
      autosize();
    }
    input.focus();
  });
  input.addEventListener('keydown', (e) => {
    if (!e.isComposing && mentionKey(e)) { e.preventDefault(); e.stopPropagation(); return; }
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); $('composer').requestSubmit(); }
  });
  input.addEventListener('blur', () => { $('mention-list').hidden = true; });
  input.addEventListener('input', () => {
    renderMentionList();
    if (S.current) draftText.set(S.current, input.value);
    if (input.value.length < 20000) autosize();
    const now = Date.now();
    if (input.value && S.current && !S.current.startsWith('u:') && now - S.lastTypingSent > TYPING_SEND_MS && S.sock) {
      if (S.sock.send({ op: 'typing', channel: S.current })) S.lastTypingSent = now;
    }
  });

  const log = $('log');
  log.addEventListener('scroll', () => {
    if (log.scrollTop < 200 && S.current && !S.current.startsWith('u:')) loadOlder(S.current);
    if (atBottom()) markRead();
  }, { passive: true });
  document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'visible') { markRead(); S.sock && S.sock.connectNow(); } });
  window.addEventListener('focus', markRead);
  window.addEventListener('hashchange', route);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && S.current && !document.querySelector('dialog[open]') && matchMedia('(max-width: 700px)').matches) closeChat();
  });

  // other tabs of this browser: logout, login, read markers, messages waiting to be sent
  window.addEventListener('storage', (e) => {
    if (e.key === K.session) {
      const s = store.get(K.session, null);
      if (!s && S.session) { S.session = null; resetState(); showAuth(); }
      else if (s && (!S.session || s.token !== S.session.token)) { S.session = s; startApp(); }
      return;
    }
    if (!S.me) return;
    if (e.key === K.push()) { if (!pushBusy) renderPush(); return; }
    if (e.key === K.read()) {
      const r = store.get(K.read(), {});
      for (const [id, seq] of Object.entries(r)) {
        if ((S.localRead[id] || 0) < seq) {
          S.localRead[id] = seq;
          const c = S.channels.get(id);
          if (c && c.last && c.last.seq <= seq) c.unread = 0;
        }
      }
      scheduleList();
    } else if (e.key === K.outbox()) {
      // show another tab's pending messages; keep our own ownership
      const theirs = store.get(K.outbox(), []);
      const mine = new Map(S.outbox.map((o) => [o.cmid, o]));
      S.outbox = theirs.map((o) => mine.get(o.cmid) || o);
      for (const o of mine.values()) if (!S.outbox.includes(o)) S.outbox.push(o);
      if (S.current) {
        for (const o of S.outbox) {
          if (outboxKey(o) === S.current && !document.querySelector(`#msgs li[data-cmid="${CSS.escape(o.cmid)}"]`)) $('msgs').append(pendingEl(o));
        }
      }
    }
  });
}

function boot() {
  wire();
  setAuthMode(false);
  S.session = store.get(K.session, null);
  if (S.session && S.session.token && S.session.user) startApp();
  else showAuth();
}

boot();
