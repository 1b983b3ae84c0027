// list.js — the side panel: the conversation list (loadChannels asks the server, renderList draws
// it, newest first, with unread and mention badges), the Friends tab (requests both ways, friends
// online first), the presence dots both show, the tabs between them, and starting a conversation:
// a direct chat with someone by username, or a new group. The list (with the names it shows) is
// written through to IndexedDB whenever it is drawn (saved.js), and drawn from there at start.
import { api } from './net.js';
import { $, S, directWith, el, fmtTime, nameOf, peerOf, showError, titleOf, upsertChannel, userByName } from './state.js';
import { eventText, go, renderHeader } from './conversation.js';
import { sessionDead } from './app.js';
import { dropConv, saveList } from './saved.js';
import { attachSummary } from './attach.js';

// ---------------------------------------------------------------- the conversation list
let listTimer = 0;
export function scheduleList() {
  if (listTimer) return;
  listTimer = requestAnimationFrame(() => { listTimer = 0; renderList(); });
}

export async function loadChannels() {
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
      // A message that arrived on the socket while this answer was on its way is newer than
      // the answer: its unread count stands (a new group's first message races the list).
      const known = S.channels.get(it.channel.id);
      const stale = known && known.last && (!it.last_message || known.last.seq > it.last_message.seq);
      upsertChannel(it.channel, it.last_message, stale ? undefined : unread);
      if (it.muted) S.muted.add(it.channel.id); else S.muted.delete(it.channel.id);
      S.channels.get(it.channel.id).mentions = it.mentions || 0;
    }
    for (const id of [...S.channels.keys()]) if (!seen.has(id)) { S.channels.delete(id); dropConv(id); }
    showError('side-error', '');
    renderList();
    queryPresence();
    if (S.current && !S.current.startsWith('u:') && S.channels.has(S.current)) renderHeader();
  } catch (e) {
    if (e.status === 401) return sessionDead();
    showError('side-error', e);
  }
}

export function renderList() {
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
      const t = c.last.event ? eventText(c.last) : c.last.deleted ? 'Message deleted' : c.last.text || attachSummary(c.last.attachments);
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
  saveList();
}

// ---------------------------------------------------------------- presence
export function setPresence(p) {
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

export function lastSeen(p) {
  return p && p.last_active_at ? `Offline, last seen ${fmtTime(p.last_active_at)}` : 'Offline';
}

let presenceWarned = false;
export async function queryPresence() {
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

// ---------------------------------------------------------------- friends
export async function loadFriends() {
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

// ---------------------------------------------------------------- tabs, new conversations
export function selectTab(tab) {
  S.tab = tab;
  $('tab-chats').setAttribute('aria-selected', String(tab === 'chats'));
  $('tab-friends').setAttribute('aria-selected', String(tab === 'friends'));
  $('panel-chats').hidden = tab !== 'chats';
  $('panel-friends').hidden = tab !== 'friends';
  if (tab === 'friends' && S.me) loadFriends();
}

async function startDirect(user) {
  if (user.id === S.me.id && !directWith(user.id)) { /* a chat with yourself is allowed */ }
  const d = directWith(user.id);
  selectTab('chats');
  if (d) go(d);
  else { S.drafts.set(`u:${user.id}`, user); go(`u:${user.id}`); }
}

export function wireList() {
  $('tab-chats').addEventListener('click', () => selectTab('chats'));
  $('tab-friends').addEventListener('click', () => selectTab('friends'));

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
}
