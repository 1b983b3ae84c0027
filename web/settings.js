// settings.js — what the user sets: the Settings dialog (password, sessions, blocked users), the
// open conversation's Mute and Block buttons, and the switch for push notifications (push.js).
import { api, describeError } from './net.js';
import { disablePush, enablePush, pushErrorText, pushSupported } from './push.js';
import { $, K, S, el, fmtTime, nameOf, nameSpan, peerOf, showError, store } from './state.js';

// ---------------------------------------------------------------- mute, block, settings
/** the conversation's Mute and Block buttons, from what the server said */
export function renderChatActions() {
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

export async function loadBlocked() {
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

// ---------------------------------------------------------------- push notifications
let pushBusy = false;

export function renderPush() {
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

/** another tab switched push notifications */
export function syncPush() { if (!pushBusy) renderPush(); }

export function wireSettings() {
  $('push-toggle').addEventListener('change', togglePush);
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
}
