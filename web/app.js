// app.js — the iyagi web client's entry. Plain ES modules, no framework, no build step.
// This module boots the client and wires it together: the login and sign-up screen, the life of a
// session (startApp, logout, sessionDead), the chat socket (net.js) and its frames, the connection
// line (with "Offline — showing saved messages"), routing by the URL's hash (#/c/<channel>), and
// the page-wide events (visibility, other tabs' storage and outbox).
// The views, each holding its part of the page, over one client state (state.js):
//   list.js          the conversation list, the Friends tab, presence, starting conversations
//   conversation.js  the open conversation: its messages (cache, history, rendering), receipts,
//                    typing, its header, the group members dialog
//   composer.js      writing: the outbox and sending, the reply, @ completion
//   attach.js        attachments: uploads as chips in the composer (the Attach button, drop,
//                    paste), a message's thumbnails and files, the image viewer, downloads
//   settings.js      the Settings dialog, Mute and Block, the push notifications switch
//   search.js        message search: the field above the list, its results, a conversation's own search
// Under them: net.js (the API, the socket), push.js (Web Push opt-in), saved.js (what this browser
// keeps of the signed-in user in IndexedDB — profile, list, newest messages, outbox — restored at
// start, wiped at logout) over idb.js (a promise wrapper of IndexedDB). Beside the page, sw.js, the
// service worker: the app shell from its cache (so the app opens without network) and Web Push.
// The views call each other, so some modules import each other in a cycle; no module uses an
// imported binding at its top level, so the order they are evaluated in does not matter.
// Every piece of user data (names, messages) reaches the DOM through textContent or
// attributes set with setAttribute/dataset: never as markup.
//
// Opening without network: the shell comes from sw.js's cache, startApp draws what saved.js
// restored (the list, then the open conversation's saved messages) before any answer, the
// connection line says so, and messages written go to the outbox; when the socket gets through,
// onReady refreshes the list and the open conversation (reviveCaches) and sends the outbox.
import { api, ApiError, ChatSocket } from './net.js';
import { disablePush, unsubscribeBrowser } from './push.js';
import { $, K, S, directWith, nameOf, onUserLoaded, showError, store } from './state.js';
import { loadChannels, loadFriends, queryPresence, renderList, selectTab, setPresence, wireList } from './list.js';
import {
  cacheOf, closeChat, fillGap, go, ingest, markRead, onReceipt, onTyping, openChat, renderHeader, reviveCaches, syncRead,
  wireConversation,
} from './conversation.js';
import { flushOutbox, onAck, onSendError, saveOutbox, syncOutbox, wireComposer } from './composer.js';
import { closeSaved, onOutboxChange, openSaved, saveList, wipeSaved } from './saved.js';
import { loadBlocked, renderChatActions, renderPush, syncPush, wireSettings } from './settings.js';
import { closeSearch, wireSearch } from './search.js';
import { resetAttach, wireAttach } from './attach.js';

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

/** one per session started in this tab (resetState): a start still reading what was saved when
 * the user logs out (or another tab logs in) stops there */
let run = 0;

function resetState() {
  run++;
  closeSaved();
  savedView = false;
  lost = false;
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
  closeSearch();
  resetAttach();
  document.body.classList.remove('chat-open');
}

/** everything this browser keeps of user `uid` besides the session: what saved.js keeps in
 * IndexedDB (the list, messages, the outbox) and the read markers. A shared phone must not keep
 * someone's messages after they logged out, or after their session was ended from elsewhere
 * (Settings on another device: the phone may be lost). */
function forget(uid) {
  store.del(K.read(uid));
  wipeSaved(uid);
}

export function sessionDead() {
  if (!S.session) return;
  store.del(K.session);
  const me = S.me;
  if (me && store.get(K.push(me.id), null)) {
    // the server dropped the subscription with the session; drop the browser's side too
    store.del(K.push(me.id));
    unsubscribeBrowser();
  }
  S.session = null;
  resetState();
  if (me) forget(me.id);
  history.replaceState(null, '', location.pathname);
  showAuth();
  showError('auth-error', 'Your session has ended. Please log in again.');
}

async function logout() {
  const s = S.session;
  const me = S.me;
  const push = me ? store.get(K.push(me.id), null) : null;
  store.del(K.session);
  if (me) store.del(K.push(me.id));
  S.session = null;
  resetState();
  if (me) forget(me.id);
  history.replaceState(null, '', location.pathname);
  showAuth();
  if (!s) return;
  // the push subscription first: it needs the session's token
  if (push) await disablePush(s.token, push.id).catch(() => {});
  api('DELETE', '/v1/sessions/current', { token: s.token }).catch(() => {});
}

/** `fresh`: the session was just made, so its ws_url is discovery's choice of a moment ago */
async function startApp(fresh = false) {
  resetState();
  const mine = run;
  S.me = S.session.user;
  S.users.set(S.me.id, S.me);
  S.localRead = store.get(K.read(), {});
  $('auth').hidden = true;
  $('app').hidden = false;
  $('me-name').textContent = nameOf(S.me.id);
  renderPush();
  showError('push-error', '');
  closeChat(true);
  selectTab('chats');
  // what this browser saved of this user: drawn now, before the server answers (without network
  // it is all there is); a few milliseconds, so the socket waits for it rather than race it
  const saved = await openSaved(S.me.id);
  if (mine !== run) return;   // logged out, or another tab logged in, meanwhile
  savedView = !!saved;
  $('me-name').textContent = nameOf(S.me.id);
  renderList();
  // adopt what is waiting to be sent (this tab's earlier life, or a closed tab's)
  S.outbox = (saved ? saved.outbox : []).map((o) => ({ ...o, owner: S.tabId }));
  saveOutbox();
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
    saveList();
  }).catch((e) => { if (e.status === 401) sessionDead(); });
}

// ---------------------------------------------------------------- the socket
function onReady(f, again) {
  if (f.user) { S.me = { ...S.me, ...f.user }; $('me-name').textContent = nameOf(S.me.id); }
  if (!again) {
    S.pos = Math.max(S.pos, f.pos || 0);
    for (const p of S.posSeen) if (p <= S.pos) S.posSeen.delete(p);
    // the list, then what the page drew from what was saved, fresh from the server
    loadChannels().then(reviveCaches);
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
  if (S.current && cacheOf(S.current) && !cacheOf(S.current).stale) fillGap(S.current);
  reviveCaches();   // a conversation opened while away, from what was saved (or not at all)
  loadBlocked().then(renderChatActions).catch(() => {});
}

function onFrame(f) {
  switch (f.op) {
    case 'msg': ingest(f); break;
    case 'ack': onAck(f); break;
    case 'friend':   // a request, an acceptance or an end, live from the other side
      loadFriends();
      break;
    case 'receipt': onReceipt(f); break;
    case 'typing': onTyping(f); break;
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

/** the page shows what was saved and has not reached the server since it opened */
let savedView = false;
/** the connection failed since it was last online (a first attempt still says "Connecting…") */
let lost = false;

function setConn({ state, retryAt }) {
  const c = $('conn');
  c.dataset.state = state;
  clearInterval(c._t);
  if (state === 'online') { savedView = false; lost = false; }
  else if (state === 'offline') lost = true;
  // on a phone the open conversation hides #conn: it shows #chat-conn while offline instead
  const cc = $('chat-conn');
  const say = (t) => { c.textContent = t; cc.textContent = t; cc.hidden = !lost && !t.startsWith('Offline'); };
  if (state === 'online') say('Online');
  // opened without network (or with the server down): said once, not a countdown on every retry
  else if (savedView && (lost || !navigator.onLine)) say('Offline — showing saved messages');
  else if (state === 'connecting') say('Connecting…');
  else {
    const tick = () => {
      const s = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
      say(s > 0 ? `Offline — retrying in ${s} s` : 'Offline — retrying…');
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

// ---------------------------------------------------------------- routing
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

// ---------------------------------------------------------------- wiring
function wire() {
  $('tab-login').addEventListener('click', () => setAuthMode(false));
  $('tab-signup').addEventListener('click', () => setAuthMode(true));
  $('auth-form').addEventListener('submit', submitAuth);
  $('logout').addEventListener('click', logout);
  if ('serviceWorker' in navigator) {
    // the service worker keeps the app shell so that the app opens without network, and shows
    // push notifications; registered on every start, which also picks up a changed sw.js
    navigator.serviceWorker.register('/sw.js', { scope: '/', updateViaCache: 'none' }).catch(() => { /* online only */ });
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
  for (const [a, b] of [['tab-chats', 'tab-friends'], ['tab-login', 'tab-signup']]) {
    for (const [x, y] of [[a, b], [b, a]]) {
      $(x).addEventListener('keydown', (e) => {
        if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') { e.preventDefault(); $(y).click(); $(y).focus(); }
      });
    }
  }
  wireList();
  wireConversation();
  wireComposer();
  wireAttach();
  wireSettings();
  wireSearch();
  for (const b of document.querySelectorAll('dialog [data-close]')) b.addEventListener('click', () => b.closest('dialog').close());
  document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'visible') { markRead(); S.sock && S.sock.connectNow(); } });
  window.addEventListener('focus', markRead);
  window.addEventListener('hashchange', route);

  // other tabs of this browser: logout, login, read markers (localStorage), messages waiting to be
  // sent (IndexedDB, told on a BroadcastChannel)
  onOutboxChange(syncOutbox);
  window.addEventListener('storage', (e) => {
    if (e.key === K.session) {
      const s = store.get(K.session, null);
      if (!s && S.session) { S.session = null; resetState(); showAuth(); }
      else if (s && (!S.session || s.token !== S.session.token)) { S.session = s; startApp(); }
      return;
    }
    if (!S.me) return;
    if (e.key === K.push()) syncPush();
    else if (e.key === K.read()) syncRead();
  });
}

function boot() {
  onUserLoaded(() => { renderList(); if (S.current) renderHeader(); });   // renderList saves the names too
  wire();
  setAuthMode(false);
  S.session = store.get(K.session, null);
  if (S.session && S.session.token && S.session.user) startApp();
  else showAuth();
}

boot();
