// composer.js — writing a message. What is sent waits in the outbox (S.outbox, kept in
// IndexedDB by saved.js, so that a reload, another tab or the next start of the app sends it on,
// even one opened without network), shown as a pending bubble until the server's ack (or the
// message from another tab's resend) replaces it; the socket resends what is unacknowledged once
// per connection (flushOutbox, by cmid, so the server keeps one copy).
// Also: the draft text of each conversation, the reply being written, and @ completion.
// Attachments are uploaded by attach.js before Send; an outbox entry keeps them as the server
// described them ({id, name, type, size, thumb?}): the socket sends their ids, the pending bubble
// and the message made from the ack show them.
import { describeError } from './net.js';
import { $, S, codepoints, directWith, el, nameOf, showError, upsertChannel } from './state.js';
import { cacheOf, fillGap, ingest, messageBody } from './conversation.js';
import { readOutbox, storeOutbox } from './saved.js';
import { attachSummary, readyAttachments, renderUploads, takeUploads, uploadsBusy } from './attach.js';

const MAX_CODEPOINTS = 100000;   // the contract's limit for text
const TYPING_SEND_MS = 3000;     // send typing at most this often (server allows 1/s)

/** the text being written in each conversation (by S.current), kept while another one is open */
const draftText = new Map();

/** the outbox is kept in order of `ts` (IndexedDB hands it back by cmid): strictly increasing in a tab */
let lastTs = 0;

const newCmid = () => {
  const b = crypto.getRandomValues(new Uint8Array(12));
  return 'w' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
};

// ---------------------------------------------------------------- sending
export function saveOutbox() { if (S.me) storeOutbox(S.outbox); }

export function outboxKey(o) {
  if (o.channel) return o.channel;
  const d = directWith(o.to);
  return d || `u:${o.to}`;
}

export function pendingEl(o) {
  const li = el('li', { class: 'msg mine pending', dataset: { cmid: o.cmid, state: o.failed ? 'failed' : 'sending' } });
  li.append(el('div', { class: 'bubble' }, ...messageBody(o)));
  const meta = el('div', { class: 'meta' }, el('span', { class: 'state', text: o.failed ? `Not sent: ${o.failed}` : 'Sending…' }));
  if (o.failed) {
    meta.append(el('button', { type: 'button', class: 'link', text: 'Discard', onclick: () => {
      S.outbox = S.outbox.filter((x) => x.cmid !== o.cmid); saveOutbox(); li.remove();
    } }));
  }
  li.append(meta);
  return li;
}

/** text (empty when attachments go alone) with attachments ([{id, name, type, size, thumb?}]) */
function sendText(text, attachments = []) {
  if (!S.current) return;
  const n = codepoints(text);
  if (n > MAX_CODEPOINTS) {
    showError('chat-error', `That message is ${n.toLocaleString()} characters long; the limit is ${MAX_CODEPOINTS.toLocaleString()}.`);
    return false;
  }
  lastTs = Math.max(Date.now(), lastTs + 1);
  const o = { cmid: newCmid(), text, ts: lastTs, owner: S.tabId };
  if (attachments.length) o.attachments = attachments;
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

export function flushOutbox() {
  if (!S.sock || !S.sock.ready) return;
  const gen = S.sock.gen;
  for (const o of S.outbox) {
    if (o.failed || o.owner !== S.tabId || S.sentGen.get(o.cmid) === gen) continue;
    const f = { op: 'send', rid: `s:${o.cmid}`, cmid: o.cmid, text: o.text };
    if (o.channel) f.channel = o.channel; else f.to = o.to;
    if (o.reply_to) f.reply_to = o.reply_to;
    if (Array.isArray(o.attachments) && o.attachments.length) f.attachments = o.attachments.map((a) => a.id);
    if (S.sock.send(f)) S.sentGen.set(o.cmid, gen);
  }
}

export function onAck(a) {
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
  if (Array.isArray(o.attachments) && o.attachments.length) m.attachments = o.attachments;
  ingest(m);
}

export function onSendError(f) {
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

/** another tab's outbox changed: show its pending messages; keep our own ownership */
export async function syncOutbox() {
  const me = S.me;
  const theirs = await readOutbox();
  if (!theirs || S.me !== me) return;
  const mine = new Map(S.outbox.map((o) => [o.cmid, o]));
  S.outbox = theirs.map((o) => mine.get(o.cmid) || o);
  // ours that are not there yet stay; another tab's that it took out (sent) go
  for (const o of mine.values()) if (o.owner === S.tabId && !S.outbox.includes(o)) S.outbox.push(o);
  S.outbox.sort((a, b) => (a.ts || 0) - (b.ts || 0));
  if (S.current) {
    for (const o of S.outbox) {
      if (outboxKey(o) === S.current && !document.querySelector(`#msgs li[data-cmid="${CSS.escape(o.cmid)}"]`)) $('msgs').append(pendingEl(o));
    }
  }
}

// ---------------------------------------------------------------- replies
/** the reply being written: {channel, id, seq, from, text} or null */
export function setReply(m) {
  S.replyTo = m ? { channel: m.channel, id: m.id, seq: m.seq, from: m.from, text: m.text || attachSummary(m.attachments) } : null;
  const bar = $('replying');
  bar.hidden = !m;
  if (m) {
    $('replying-text').textContent = `Replying to ${nameOf(m.from)}: ${S.replyTo.text.slice(0, 100)}`;
    $('input').focus();
  }
}

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

/** the composer of conversation id: its draft and its uploads, no offers open */
export function showDraft(id) {
  $('input').value = draftText.get(id) || '';
  $('mention-list').hidden = true;
  renderUploads();
  autosize();
}

export function wireComposer() {
  const input = $('input');
  $('reply-cancel').addEventListener('click', () => { setReply(null); input.focus(); });
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const id = S.current;
    if (!id || uploadsBusy(id)) return;   // Enter as well as the (disabled) button
    const text = input.value;
    const atts = readyAttachments(id);
    if (!text.trim() && !atts.length) return;
    $('mention-list').hidden = true;
    if (sendText(text.trim() ? text : '', atts) !== false) {
      input.value = '';
      draftText.delete(id);
      takeUploads(id);
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
}
