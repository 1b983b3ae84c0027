// sw.js — the iyagi service worker: the app shell offline, and Web Push
// (docs/PROTOCOL-ADDITIONS.md, "Push"). Registered by app.js on every start.
//
// The shell (SHELL: the page, its modules, CSS, icons, manifest) is cached on install, in a cache
// named by VERSION, and served from there first, so that the app opens without network; what it
// shows then is the page's own (IndexedDB, saved.js). Nothing else is ever cached: this worker
// does not answer the API (/v1/…), the socket, /healthz or /metrics at all, so they reach the
// network untouched — no response holding someone's messages is ever kept here.
//
// Updates: every page load (a navigation) fetches the whole shell again in the background and,
// only when every file has come in full, puts them all in the cache together: the next load runs
// one server version's modules, never a mix (a module next to another of a different version may
// fail to link, and the app would not start). The server sends no validators, so this costs the
// shell (~200 KB) per load; `cache: 'no-cache'` makes it revalidations once it sends them. Changing
// VERSION (or SHELL) installs this worker anew with a fresh cache; activate deletes the old ones.
// A file added to web/ must be added to SHELL (tests/web/offline.test.mjs checks it).
/* eslint-env serviceworker */

const VERSION = '2';
const PREFIX = 'iyagi-shell-';
const CACHE = `${PREFIX}${VERSION}`;
const SHELL = [
  '/index.html', '/app.css', '/manifest.webmanifest',
  '/app.js', '/state.js', '/net.js', '/list.js', '/conversation.js', '/composer.js', '/attach.js', '/settings.js', '/search.js',
  '/push.js', '/saved.js', '/idb.js',
  '/icon.svg', '/icon-192.png', '/icon-512.png', '/icon-maskable-192.png', '/icon-maskable-512.png',
];
const IN_SHELL = new Set(SHELL);

/** every file of the shell, fetched in full (bodies read) before any is put: all or nothing */
async function fetchShell() {
  return Promise.all(SHELL.map(async (p) => {
    const r = await fetch(p, { cache: 'no-cache' });
    if (!r.ok) throw new Error(`${p}: HTTP ${r.status}`);
    const body = await r.arrayBuffer();
    return [p, new Response(body, { status: r.status, statusText: r.statusText, headers: r.headers })];
  }));
}

async function putShell(files) {
  const cache = await caches.open(CACHE);
  await Promise.all(files.map(([p, r]) => cache.put(p, r)));
}

let refreshing = null;
/** the shell again from the server, for the next load (a failure keeps what is cached) */
function refreshShell() {
  if (!refreshing) {
    refreshing = fetchShell().then(putShell).catch(() => { /* offline, or the server is down */ })
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

// Installed only with the whole shell cached (else the browser tries again on a later load). A new
// version takes over at once: its cache is complete, and open pages have all their modules loaded.
self.addEventListener('install', (event) => {
  event.waitUntil(fetchShell().then(putShell).then(() => self.skipWaiting()));
});
self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const k of await caches.keys()) if (k.startsWith(PREFIX) && k !== CACHE) await caches.delete(k);
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  const page = req.mode === 'navigate' && (url.pathname === '/' || url.pathname === '/index.html');
  const path = page ? '/index.html' : url.pathname;
  if (!IN_SHELL.has(path)) return;   // the API, the socket, anything else: the network, untouched
  event.respondWith(fromCache(path, req));
  if (page) event.waitUntil(refreshShell());
});

/** cache first; a file missing from the cache (evicted) comes from the network, and is kept */
async function fromCache(path, req) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(path);
  if (hit) return hit;
  const r = await fetch(req);
  if (r.ok && !r.redirected) await cache.put(path, r.clone()).catch(() => {});
  return r;
}

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
