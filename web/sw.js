// sw.js — the iyagi service worker, for Web Push only (docs/PROTOCOL-ADDITIONS.md, "Push").
// It caches nothing and has no fetch handler: every page and script still comes from the
// server, so an upgraded server never leaves a stale app behind.
/* eslint-env serviceworker */

// a new version takes over at once (there is no cache to keep consistent)
self.addEventListener('install', () => { self.skipWaiting(); });
self.addEventListener('activate', (event) => { event.waitUntil(self.clients.claim()); });

// payload: {"id","user_id","channel","message_id","from","preview","from_name","group"?}
self.addEventListener('push', (event) => {
  let p = {};
  try { p = (event.data && event.data.json()) || {}; } catch { p = {}; }
  const channel = typeof p.channel === 'string' || typeof p.channel === 'number' ? String(p.channel) : '';
  const options = {
    body: typeof p.preview === 'string' ? p.preview : '',
    data: { channel },
  };
  if (channel) {
    options.tag = channel;      // one notification per channel: a newer one replaces it
    options.renotify = true;    // ...and still alerts
  }
  // titled by who sent it, and in which group ("Ann in Team"); older servers sent no names
  const who = typeof p.from_name === 'string' && p.from_name ? p.from_name : '';
  const group = typeof p.group === 'string' && p.group ? p.group : '';
  const title = who ? (group ? `${who} in ${group}` : who) : 'New message';
  event.waitUntil(self.registration.showNotification(title, options));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const channel = (event.notification.data && event.notification.data.channel) || '';
  event.waitUntil((async () => {
    const wins = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    const origin = self.location.origin;
    const mine = wins.filter((c) => { try { return new URL(c.url).origin === origin; } catch { return false; } });
    const win = mine.find((c) => c.focused) || mine.find((c) => c.visibilityState === 'visible') || mine[0];
    if (win) {
      try { await win.focus(); } catch { /* not allowed: the message still opens the chat */ }
      if (channel) win.postMessage({ type: 'iyagi.open-channel', channel });
      return;
    }
    await self.clients.openWindow(channel ? `/#channel=${encodeURIComponent(channel)}` : '/');
  })());
});
