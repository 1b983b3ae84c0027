// conversation.js — the open conversation (S.current) and what it shows. Each channel opened has
// a cache of its messages by seq (S.caches): the newest page first, older pages as the log is
// scrolled up, gaps filled from the server; ingest() takes every message from anywhere (an ack, a
// msg frame, a sync after a reconnect, history), deduplicated by (channel, seq), and places it in
// the log. Every change of a cache is written through to IndexedDB (saved.js), and a channel
// opened again after a reload starts from what was saved there: shown at once (all there is
// without network), marked `stale` until filled from the server (reviveCaches, openCache).
// Also here: message rendering with its actions (reply, react, edit, delete) and attachments
// (attach.js draws them), read receipts and
// read markers, who is typing, the conversation's header, opening and closing it, and the group
// members dialog.
import { api, describeError } from './net.js';
import {
  $, K, S, codepoints, el, fmtTime, loadUser, nameOf, nameSpan, peerOf, showError, store, titleOf, upsertChannel, userByName,
} from './state.js';
import { lastSeen, renderList, scheduleList } from './list.js';
import { outboxKey, pendingEl, saveOutbox, setReply, showDraft } from './composer.js';
import { renderChatActions } from './settings.js';
import { dropConv, loadConv, saveConv } from './saved.js';
import { attachSummary, attachmentsEl, hasAttachments } from './attach.js';

const LONG_TEXT = 3000;          // longer messages are shown folded, with "Show all"
const PAGE = 50;                 // history page
const TYPING_SHOW_MS = 6000;     // show someone's typing for this long after their frame
const SAVED_BEHIND = 200;        // a saved cache further behind the channel than this starts over

// ---------------------------------------------------------------- the channel
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
      dropConv(id);
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
export function cacheOf(id) { return S.caches.get(id); }

/** contiguous tracking of inbox positions, so that a reconnect syncs from the first hole */
function seePos(p) {
  if (typeof p !== 'number' || p <= S.pos) return;
  S.posSeen.add(p);
  while (S.posSeen.delete(S.pos + 1)) S.pos++;
}

/** one message from anywhere (ack, msg frame, sync, history): deduplicated by (channel, seq) */
export function ingest(m, { fromHistory = false } = {}) {
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
      saveConv(m.channel);
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
    delete target.attachments;
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
  if (cache) saveConv(e.channel);
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
      { body: (m.text || attachSummary(m.attachments)).slice(0, 100), tag: `iyagi-${m.channel}` });
    n.onclick = () => { window.focus(); go(m.channel); n.close(); };
  } catch { /* some browsers show notifications only from a service worker: the title still counts */ }
}

export async function fillGap(id) {
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
    cache.stale = false;   // up to date with the server (what was saved is caught up)
  } catch { /* retried on the next reconnect */ } finally { cache.filling = false; }
}

async function fetchHistory(id, q) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) qs.set(k, String(v));
  const r = await api('GET', `/v1/channels/${encodeURIComponent(id)}/messages?${qs}`, { token: S.session.token });
  return r.messages || [];
}

/** a saved cache the channel has gone too far ahead of (as far as the list knows) */
function tooFarBehind(id, top) {
  const c = S.channels.get(id);
  return !!(c && c.last && c.last.seq - top > SAVED_BEHIND);
}

/** the channel whose first page could not be loaded (no network): opened again once connected */
let failedOpen = null;

async function openCache(id) {
  let cache = cacheOf(id);
  if (cache && cache.stale && tooFarBehind(id, cache.top)) { S.caches.delete(id); cache = null; }
  if (cache) {
    if (cache.stale) fillGap(id);   // restored earlier, not caught up yet: now, if the server can be reached
    return cache;
  }
  const c = S.channels.get(id);
  const newest = c && c.last ? c.last.seq : 0;
  cache = { bySeq: new Map(), min: newest ? newest + 1 : Number.MAX_SAFE_INTEGER, top: 0, complete: false,
    loading: false, filling: false, initializing: true, stale: false };
  S.caches.set(id, cache);
  const saved = await loadConv(id);
  if (saved && cacheOf(id) === cache && !tooFarBehind(id, saved.top)) {
    // what this browser saved: shown now; the server fills in what came since (when it can)
    for (const m of saved.messages) cache.bySeq.set(m.seq, m);
    cache.min = saved.min;
    cache.top = saved.top;
    cache.complete = !!saved.complete;
    cache.stale = true;
    cache.initializing = false;
    fillGap(id);
    return cache;
  }
  await loadOlder(id);
  cache.initializing = false;
  saveConv(id);
  fillGap(id);   // anything newer than the first page
  return cache;
}

/** connected, and the list is fresh from the server: the open conversation, if it shows what was
 * saved (or nothing, its first page having failed without network), catches up (or starts over
 * from the newest page when too far behind), and so do its header and read markers. Other
 * restored caches catch up when they are opened (openCache). */
export function reviveCaches() {
  const id = S.current;
  if (!id || id.startsWith('u:') || !S.channels.has(id)) return;
  const cache = cacheOf(id);
  if (cache ? !cache.stale : failedOpen !== id) return;   // loaded from the server in this page's life
  failedOpen = null;
  refreshChannel(id);
  if (cache && !tooFarBehind(id, cache.top)) { fillGap(id); return; }
  S.caches.delete(id);
  openChat(id);
}

async function loadOlder(id, limit = PAGE) {
  const cache = cacheOf(id);
  if (!cache || cache.loading || cache.complete) return;
  cache.loading = true;
  renderLogTop();
  try {
    const before = cache.min;
    const r = await fetchHistory(id, { before_seq: before, limit });
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
    if (r.length < limit || cache.min <= 1) cache.complete = true;
    if (!cache.initializing) saveConv(id);
    if (S.current === id) {
      $('msgs').prepend(frag);
      renderDays();
      refreshReceipts();
      log.scrollTop = log.scrollHeight - keep;
    }
  } catch (e) {
    if (S.current === id) showError('chat-error', e);
    if (cache.initializing) { S.caches.delete(id); failedOpen = id; }
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

export function eventText(m) {
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

/** what a bubble holds: the attachments, then the text (which may be empty when there are some) */
export function messageBody(m) {
  const out = [];
  if (hasAttachments(m)) out.push(attachmentsEl(m.attachments));
  if (m.text || !out.length) out.push(...textBody(m.text));
  return out;
}

export function textBody(text) {
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
    li.append(el('div', { class: 'bubble' }, ...messageBody(m)));
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
      el('span', { class: 'quote-text', text: o.deleted ? 'This message was deleted' : (o.text || attachSummary(o.attachments)).slice(0, 100) }));
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

/** scrolls to message seq of the open conversation, loading older pages until it is there (pages
 * as big as the distance, up to the server's 200); `focus`: the message takes the focus (a search
 * result was opened). False when it could not be shown. */
async function jumpTo(channel, seq, { focus = false } = {}) {
  if (S.current !== channel) return false;
  const cache = cacheOf(channel);
  for (let i = 0; cache && !cache.bySeq.has(seq) && !cache.complete && i < 40 && S.current === channel; i++) {
    while (cache.loading) await new Promise((r) => setTimeout(r, 50));   // a page on its way (scrolling)
    if (cache.bySeq.has(seq) || cache.complete) break;
    await loadOlder(channel, Math.min(200, Math.max(PAGE, cache.min - seq + 10)));
  }
  if (S.current !== channel) return false;
  const li = document.querySelector(`#msgs li[data-seq="${seq}"]`);
  if (!li) return false;
  li.scrollIntoView({ block: 'center' });
  li.classList.add('flash');
  setTimeout(() => li.classList.remove('flash'), 1500);
  if (focus) { li.tabIndex = -1; li.focus({ preventScroll: true }); }
  return true;
}

/** where to jump once the conversation being opened has its first page: {id, seq} */
let pendingJump = null;

/** opens a conversation scrolled to its message seq (a search result) */
export function openAt(id, seq) {
  const cache = cacheOf(id);
  if (S.current === id && cache && !cache.initializing) { jumpOrSay(id, seq); return; }
  pendingJump = { id, seq };
  go(id);
}

async function jumpOrSay(id, seq) {
  if (!(await jumpTo(id, seq, { focus: true })) && S.current === id) showError('chat-error', 'That message could not be shown: it may have been deleted, or it is too far back.');
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
export function markRead() {
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

/** another tab read: its read markers, and no unread count where all is read */
export function syncRead() {
  const r = store.get(K.read(), {});
  for (const [id, seq] of Object.entries(r)) {
    if ((S.localRead[id] || 0) < seq) {
      S.localRead[id] = seq;
      const c = S.channels.get(id);
      if (c && c.last && c.last.seq <= seq) c.unread = 0;
    }
  }
  scheduleList();
}

/** a member read up to f.seq (a receipt frame) */
export function onReceipt(f) {
  let r = S.receipts.get(f.channel);
  if (!r) { r = new Map(); S.receipts.set(f.channel, r); }
  if ((r.get(f.user) || 0) < f.seq) r.set(f.user, f.seq);
  if (f.channel === S.current) refreshReceipts();
}

function renderTyping() {
  const line = $('typing');
  const t = S.current && S.typing.get(S.current);
  const now = Date.now();
  const who = t ? [...t.entries()].filter(([u, until]) => until > now && u !== S.me.id).map(([u]) => nameOf(u)) : [];
  line.textContent = who.length === 0 ? '' : who.length === 1 ? `${who[0]} is typing…` : `${who.join(', ')} are typing…`;
}
setInterval(renderTyping, 1000);

/** someone is typing (a typing frame): shown for TYPING_SHOW_MS */
export function onTyping(f) {
  if (f.user === S.me.id) return;
  let t = S.typing.get(f.channel);
  if (!t) { t = new Map(); S.typing.set(f.channel, t); }
  t.set(f.user, Date.now() + TYPING_SHOW_MS);
  if (f.channel === S.current) renderTyping();
}

// ---------------------------------------------------------------- opening a conversation
export function go(id) {
  const h = `#/c/${id}`;
  if (location.hash !== h) location.hash = h;
  else openChat(id);
}

export async function openChat(id) {
  if (pendingJump && pendingJump.id !== id) pendingJump = null;
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
    showDraft(id);
  }
  renderHeader();
  renderList();
  if (id.startsWith('u:')) {
    loadUser(id.slice(2));
    renderMessages();
  } else {
    if (!S.channels.has(id)) {
      const ch = await refreshChannel(id);
      if (S.current !== id) return;
      if (!ch) { failedOpen = id; renderMessages(); return; }   // not reachable now: what waits to be sent to it
    }
    const c = S.channels.get(id);
    for (const mId of c.channel.members || []) loadUser(mId);
    if (!c.channel.members || switching) refreshChannel(id);   // members, and who has read what
    renderMessages();
    await openCache(id);
    if (S.current !== id) return;
    renderMessages();
    markRead();
    if (pendingJump && pendingJump.id === id) {
      const { seq } = pendingJump;
      pendingJump = null;
      jumpOrSay(id, seq);
      return;   // the focus goes to the message
    }
  }
  if (!matchMedia('(max-width: 700px)').matches || switching) $('input').focus({ preventScroll: true });
}

export function closeChat(keepHash = false) {
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

export function renderHeader() {
  const id = S.current;
  if (!id) return;
  $('chat-title').textContent = titleOf(id);
  $('chat-search').hidden = id.startsWith('u:');
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
      dropConv(chId);
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

export function wireConversation() {
  $('back').addEventListener('click', () => { closeChat(); $('chat-list').querySelector('button')?.focus(); });
  $('group-info').addEventListener('click', openMembers);

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

  const log = $('log');
  log.addEventListener('scroll', () => {
    if (log.scrollTop < 200 && S.current && !S.current.startsWith('u:')) loadOlder(S.current);
    if (atBottom()) markRead();
  }, { passive: true });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && S.current && !document.querySelector('dialog[open]') && matchMedia('(max-width: 700px)').matches) closeChat();
  });
}
