// saved.js — what this browser keeps of the signed-in user in IndexedDB (idb.js), so that the app
// opens without network on what was last seen (the app itself is kept by the service worker,
// sw.js): the user's profile, the people met (for their names), the conversation list, the newest
// messages of each conversation opened, and the outbox (composer.js). Data is written through as
// it arrives, each record at most every SAVE_MS, and bounded (the MAX_ figures). The server stays
// the source of truth: what is restored is shown at once and then caught up (app.js,
// conversation.js); a failed write only means that less is there offline.
//
// One database per user, "iyagi.<user id>", deleted whole when that user logs out or the session
// ends (wipeSaved): a shared phone keeps nothing of someone who signed out. Its stores:
//   meta    'me' (the profile), 'users' ([user]), 'list' ([{channel, last, unread, mentions, muted, read}])
//   convs   {id, at, min, top, complete, messages}: a channel's newest messages, oldest first;
//           `at` (last written) picks the MAX_CONVS kept
//   outbox  the messages waiting to be sent, by cmid
// Tabs of one browser share the database; a tab that changed the outbox tells the others on a
// BroadcastChannel (onOutboxChange), as localStorage's storage event did before.
import { S, store, upsertChannel } from './state.js';
import { deleteDb, openDb, req, tx } from './idb.js';

const DB_VERSION = 1;
const dbName = (uid) => `iyagi.${uid}`;
const legacyOutboxKey = (uid) => `iyagi.outbox.${uid}`;   // where versions before this one kept it

const MAX_CHANNELS = 500;      // the conversation list, newest first
const MAX_USERS = 1000;
const MAX_CONVS = 50;          // conversations with their messages, the most recently written
const MAX_MESSAGES = 200;      // a conversation's newest messages...
const MAX_CHARS = 250000;      // ...and at most this much text (one message may be 100,000 characters)
const PREVIEW = 300;           // the list keeps this much of each last message (it shows 120)
const SAVE_MS = 300;           // a record is written at most this often (the list changes with every message)

let db = null;                 // S.me's open database; null: nothing is read or written
let dbUser = null;
let openGen = 0;               // bumped by closeSaved: an open still under way is dropped
let listTimer = 0;
const convTimers = new Map();  // channel id -> timer
let written = new Set();       // the cmids this tab last wrote to the outbox
const bc = typeof BroadcastChannel === 'function' ? new BroadcastChannel('iyagi.saved') : null;

function upgrade(d, old) {
  if (old < 1) {
    d.createObjectStore('meta');
    d.createObjectStore('convs', { keyPath: 'id' }).createIndex('at', 'at');
    d.createObjectStore('outbox', { keyPath: 'cmid' });
  }
}

const byTs = (a, b) => (a.ts || 0) - (b.ts || 0);

/**
 * Opens user `uid`'s database and loads what it holds into S (the profile, users, the
 * conversation list with unread counts, mutes and read markers); moves an outbox left in
 * localStorage by an earlier version into it, once. Returns {outbox} (oldest first), or null when
 * this browser cannot keep anything (then the app works as before, online only). Never throws.
 */
export async function openSaved(uid) {
  closeSaved();
  const gen = openGen;
  let d;
  try { d = await openDb(dbName(uid), DB_VERSION, upgrade); } catch { return null; }
  if (gen !== openGen) { d.close(); return null; }   // logged out (or in as someone else) meanwhile
  // another tab deletes it (logout) or opens a newer version: let go at once, write nothing more
  d.onversionchange = () => { d.close(); if (db === d) { db = null; dbUser = null; } };
  try {
    await migrateOutbox(d, uid);
    const [me, users, list, outbox] = await tx(d, ['meta', 'outbox'], 'readonly', (meta, ob) =>
      Promise.all([req(meta.get('me')), req(meta.get('users')), req(meta.get('list')), req(ob.getAll())]));
    if (gen !== openGen) { d.close(); return null; }
    if (me && me.id === uid && S.me) { S.me = { ...S.me, ...me }; S.users.set(uid, S.me); }
    for (const u of Array.isArray(users) ? users : []) if (u && u.id && !S.users.has(u.id)) S.users.set(u.id, u);
    for (const it of Array.isArray(list) ? list : []) {
      if (!it || !it.channel || !it.channel.id) continue;
      const c = upsertChannel(it.channel, it.last || null, it.unread || 0);
      c.mentions = it.mentions || 0;
      if (it.muted) S.muted.add(it.channel.id);
      if (Array.isArray(it.read)) S.receipts.set(it.channel.id, new Map(it.read));
    }
    db = d;
    dbUser = uid;
    const box = (Array.isArray(outbox) ? outbox : []).sort(byTs);
    written = new Set(box.map((o) => o.cmid));
    return { outbox: box };
  } catch {
    d.close();
    return null;
  }
}

/** the outbox of localStorage (before IndexedDB) into the database; the key goes once it is written */
async function migrateOutbox(d, uid) {
  const old = store.get(legacyOutboxKey(uid), null);
  if (!Array.isArray(old)) return;
  await tx(d, 'outbox', 'readwrite', (ob) => {
    for (const o of old) if (o && typeof o.cmid === 'string' && typeof o.text === 'string') ob.put(o);
  });
  store.del(legacyOutboxKey(uid));
}

/** stops saving (logout, another user): pending writes are dropped, the database is closed */
export function closeSaved() {
  openGen++;
  clearTimeout(listTimer);
  listTimer = 0;
  for (const t of convTimers.values()) clearTimeout(t);
  convTimers.clear();
  written = new Set();
  if (db) db.close();
  db = null;
  dbUser = null;
}

/** deletes everything kept for user `uid` (their database, and a never-migrated outbox); resolves when gone */
export async function wipeSaved(uid) {
  if (dbUser === uid) closeSaved();
  store.del(legacyOutboxKey(uid));
  try { await deleteDb(dbName(uid)); } catch { /* nothing was there, or storage is off */ }
}

/** writes what is waiting now (the page is being hidden or closed) */
export function flushSaved() {
  if (listTimer) { clearTimeout(listTimer); writeList(); }
  for (const [id, t] of convTimers) { clearTimeout(t); convTimers.delete(id); writeConv(id); }
}
addEventListener('pagehide', flushSaved);
document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'hidden') flushSaved(); });

// ---------------------------------------------------------------- the profile, users, the list
/** the profile, the users and the conversation list changed: written within SAVE_MS */
export function saveList() {
  if (!db || listTimer) return;
  listTimer = setTimeout(writeList, SAVE_MS);
}

const clip = (m) => (m && typeof m.text === 'string' && m.text.length > PREVIEW ? { ...m, text: m.text.slice(0, PREVIEW) } : m);

async function writeList() {
  listTimer = 0;
  const d = db;
  if (!d || !S.me) return;
  const items = [...S.channels.values()]
    .sort((a, b) => (b.last ? b.last.ts : 0) - (a.last ? a.last.ts : 0))
    .slice(0, MAX_CHANNELS)
    .map((c) => {
      const id = c.channel.id;
      const r = S.receipts.get(id);
      return { channel: c.channel, last: clip(c.last), unread: c.unread || 0, mentions: c.mentions || 0,
        muted: S.muted.has(id), read: r ? [...r] : undefined };
    });
  const users = [...S.users.values()].filter((u) => u && u.id).slice(-MAX_USERS);
  try {
    await tx(d, 'meta', 'readwrite', (meta) => { meta.put(S.me, 'me'); meta.put(users, 'users'); meta.put(items, 'list'); });
  } catch { /* full, or closed meanwhile: the next change tries again */ }
}

// ---------------------------------------------------------------- conversations
/** conversation `id`'s cache (S.caches) changed: its newest messages are written within SAVE_MS */
export function saveConv(id) {
  if (!db || convTimers.has(id)) return;
  convTimers.set(id, setTimeout(() => { convTimers.delete(id); writeConv(id); }, SAVE_MS));
}

/** the newest messages up to the cache's contiguous top, within MAX_MESSAGES and MAX_CHARS */
function convRecord(id, cache) {
  const seqs = [...cache.bySeq.keys()].filter((s) => s <= cache.top).sort((a, b) => b - a);
  const out = [];
  let chars = 0;
  for (const s of seqs) {
    const m = cache.bySeq.get(s);
    chars += typeof m.text === 'string' ? m.text.length : 0;
    if (out.length >= MAX_MESSAGES || (out.length && chars > MAX_CHARS)) break;
    out.push(m);
  }
  if (!out.length) return null;
  out.reverse();
  return { id, at: Date.now(), min: out[0].seq, top: cache.top, complete: !!cache.complete && out.length === seqs.length, messages: out };
}

async function writeConv(id) {
  const d = db;
  const cache = S.caches.get(id);
  if (!d || !cache || cache.initializing) return;
  const rec = convRecord(id, cache);
  if (!rec) return;
  try {
    // the record alone first: committed at once, which counts when the page is being closed
    await tx(d, 'convs', 'readwrite', (convs) => { convs.put(rec); });
    // then the least recently written beyond MAX_CONVS go (keys come oldest `at` first)
    await tx(d, 'convs', 'readwrite', (convs) => req(convs.index('at').getAllKeys()).then((keys) => {
      for (const k of keys.slice(0, Math.max(0, keys.length - MAX_CONVS))) convs.delete(k);
    }));
  } catch { /* full, or closed meanwhile: the next change tries again */ }
}

/** what was saved of conversation `id`: {min, top, complete, messages} or null */
export async function loadConv(id) {
  const d = db;
  if (!d) return null;
  try {
    const rec = await tx(d, 'convs', 'readonly', (convs) => req(convs.get(id)));
    return rec && Array.isArray(rec.messages) && rec.messages.length ? rec : null;
  } catch { return null; }
}

/** conversation `id` is gone for this user (left, removed): its messages go from here too */
export function dropConv(id) {
  const d = db;
  clearTimeout(convTimers.get(id));
  convTimers.delete(id);
  if (d) tx(d, 'convs', 'readwrite', (convs) => { convs.delete(id); }).catch(() => {});
}

// ---------------------------------------------------------------- the outbox
/**
 * The outbox is now `list`: its messages are written, and the ones this tab wrote before and that
 * are gone (sent) deleted; a message only another tab wrote is left to that tab. Other tabs are told.
 */
export function storeOutbox(list) {
  const d = db;
  if (!d) return;
  const now = new Set(list.map((o) => o.cmid));
  const gone = [...written].filter((c) => !now.has(c));
  written = now;
  const user = dbUser;
  tx(d, 'outbox', 'readwrite', (ob) => { for (const o of list) ob.put(o); for (const c of gone) ob.delete(c); })
    .then(() => { if (bc) bc.postMessage({ what: 'outbox', user }); })
    .catch(() => { /* full, or closed meanwhile */ });
}

/** the outbox as saved (all tabs'), oldest first; null when nothing can be read */
export async function readOutbox() {
  const d = db;
  if (!d) return null;
  try { return (await tx(d, 'outbox', 'readonly', (ob) => req(ob.getAll()))).sort(byTs); } catch { return null; }
}

/** fn() when another tab of this browser changed this user's outbox */
export function onOutboxChange(fn) {
  if (!bc) return;
  bc.addEventListener('message', (e) => {
    const m = e.data;
    if (m && m.what === 'outbox' && S.me && m.user === S.me.id) fn();
  });
}
