// attach.js — attachments (docs/PROTOCOL-ADDITIONS.md, "Attachments"), both halves:
//   writing   files chosen with the Attach button, dropped on the conversation or pasted into the
//             message box upload at once (net.js uploadFile), each a chip above the composer with
//             its name, size, progress and a remove ×; composer.js sends the ids of the finished
//             ones with the text (takeUploads) and keeps them in the outbox entry as the server
//             described them ({id, name, type, size, thumb?}), so that a pending bubble shows them
//             and a resend after a reload still carries them. Send waits while one is uploading.
//   reading   a message's attachments (attachmentsEl): an image with a thumbnail is a button that
//             opens the viewer (#dlg-viewer: the full image, a Download link); any other file is a
//             row that downloads it.
// The bytes need the Authorization header, so no <img src> or link can point at the API: they are
// fetched (net.js apiBlob) and shown through object URLs — or data: URLs while the page's
// Content-Security-Policy does not allow blob: images (imageUrl). Thumbnails are kept per id in a
// bounded cache (they come back every time a conversation is drawn again), the full image only
// while the viewer shows it. Unsent uploads live in this page only: a reload forgets the chips
// (the server keeps the orphaned files; they were never sent, so nobody else sees them).
import { MAX_UPLOAD, apiBlob, describeError, uploadFile } from './net.js';
import { $, S, el, showError } from './state.js';

export const MAX_ATTACHMENTS = 10;    // the contract's limit per message
const THUMB_BOX = 240;                // CSS pixels: the longest side a thumbnail is shown at
const MAX_THUMBS = 200;               // thumbnails kept in memory (a thumbnail is ~5–30 KB)

// ---------------------------------------------------------------- sizes, names
/** "2.7 KB", "26.0 MB": binary units, as the 25 MB limit is 25 MiB */
export function fmtSize(n) {
  if (!(n >= 0)) return '';
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** the few letters of a file's extension shown as its icon ("PDF"), or "FILE" */
function extOf(name) {
  const m = /\.([A-Za-z0-9]{1,5})$/.exec(name || '');
  return m ? m[1].toUpperCase() : 'FILE';
}

/** what stands for a message's attachments where only a line fits: the list, a notification, a quote */
export function attachSummary(list) {
  if (!Array.isArray(list) || !list.length) return '';
  return list.length === 1 ? `📎 ${list[0].name}` : `📎 ${list.length} files`;
}

export const hasAttachments = (m) => !!m && Array.isArray(m.attachments) && m.attachments.length > 0;

// ---------------------------------------------------------------- uploads (the composer)
/** the uploads of each conversation (by S.current), kept while another one is open:
 * [{key, file, name, size, state: 'uploading'|'done'|'failed', progress, att, error, abort}] */
const uploads = new Map();
let lastKey = 0;

const listOf = (id) => uploads.get(id) || [];

/** a file from the clipboard is called "image.png" by most browsers: one name per paste instead */
function named(f, i) {
  if (f.name && !/^image\.\w+$/i.test(f.name)) return f;
  const ext = (/^image\/(\w+)/.exec(f.type) || [])[1] || 'png';
  const d = new Date();
  const p = (x) => String(x).padStart(2, '0');
  const stamp = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}.${p(d.getMinutes())}.${p(d.getSeconds())}`;
  return new File([f], `Pasted image ${stamp}${i ? ` (${i + 1})` : ''}.${ext}`, { type: f.type });
}

/** files for the open conversation: refused here when too large or too many (the server refuses
 * them too, but only after the bytes went), else uploaded at once */
export function addFiles(files) {
  const id = S.current;
  if (!id || !S.session || !files.length) return;
  const list = listOf(id);
  const said = [];
  for (const f of files) {
    if (list.filter((u) => u.state !== 'failed').length >= MAX_ATTACHMENTS) {
      said.push(`At most ${MAX_ATTACHMENTS} files go with one message.`);
      break;
    }
    if (f.size > MAX_UPLOAD) {
      said.push(`“${f.name}” is ${fmtSize(f.size)}: files can be at most ${fmtSize(MAX_UPLOAD)}.`);
      continue;
    }
    const u = { key: ++lastKey, file: f, name: f.name || 'file', size: f.size, state: 'uploading', progress: 0 };
    list.push(u);
    startUpload(id, u);
  }
  uploads.set(id, list);
  if (said.length) showError('chat-error', said.join(' '));
  renderUploads();
}

function startUpload(id, u) {
  const session = S.session;
  const up = uploadFile(u.file, u.name, { token: session.token, onProgress: (p) => { u.progress = p; paintProgress(u); } });
  u.abort = up.abort;
  up.promise.then((a) => {
    u.state = 'done';
    u.att = { id: a.id, name: a.name || u.name, type: a.type || '', size: a.size ?? u.size };
    if (a.thumb) u.att.thumb = true;
    u.file = null;   // the bytes are the server's now
  }, (e) => {
    if (e.code === 'aborted') return;
    u.state = 'failed';
    u.error = e.code === 'too_large' ? `Too large: files can be at most ${fmtSize(MAX_UPLOAD)}.` : describeError(e);
  }).finally(() => {
    u.abort = null;
    if (S.session === session && listOf(id).includes(u)) renderUploads();
  });
}

function removeUpload(id, u) {
  if (u.abort) u.abort();
  const list = listOf(id).filter((x) => x !== u);
  if (list.length) uploads.set(id, list); else uploads.delete(id);
  renderUploads();
  $('input').focus();
}

/** conversation id has an upload under way (Send waits for it) */
export const uploadsBusy = (id) => listOf(id).some((u) => u.state === 'uploading');

/** the attachments of conversation id that are ready to go with a message */
export const readyAttachments = (id) => listOf(id).filter((u) => u.state === 'done').map((u) => u.att);

/** the message with conversation id's ready attachments was sent: their chips go (failed ones stay, with their reason) */
export function takeUploads(id) {
  const left = listOf(id).filter((u) => u.state !== 'done');
  if (left.length) uploads.set(id, left); else uploads.delete(id);
  renderUploads();
}

/** the chips of the open conversation, and whether Send may be pressed */
export function renderUploads() {
  const ul = $('uploads');
  const id = S.current;
  const list = id ? listOf(id) : [];
  // a chip being redrawn keeps the focus on its remove button
  const focused = ul.contains(document.activeElement) ? document.activeElement.closest('li')?.dataset.key : null;
  ul.textContent = '';
  for (const u of list) ul.append(chipEl(id, u));
  ul.hidden = list.length === 0;
  if (focused) ul.querySelector(`li[data-key="${focused}"] .chip-remove`)?.focus();
  const busy = !!id && uploadsBusy(id);
  const send = $('send');
  send.disabled = busy;
  if (busy) send.title = 'Wait for the uploads to finish'; else send.removeAttribute('title');
}

function chipEl(id, u) {
  const li = el('li', { class: 'chip', dataset: { key: u.key, state: u.state } },
    el('span', { class: 'file-icon', 'aria-hidden': 'true', text: extOf(u.name) }),
    el('span', { class: 'chip-name', title: u.name, text: u.name }),
    el('span', { class: 'chip-size', text: fmtSize(u.size) }));
  if (u.state === 'uploading') {
    const bar = el('progress', { max: 100, 'aria-label': `Uploading ${u.name}` });
    if (u.progress) bar.value = Math.round(u.progress * 100);
    li.append(bar);
  } else if (u.state === 'failed') {
    li.append(el('span', { class: 'error', role: 'alert', text: `Not uploaded: ${u.error}` }));
  }
  li.append(el('button', { type: 'button', class: 'ghost chip-remove', 'aria-label': `Remove ${u.name}`, title: 'Remove', text: '×',
    onclick: () => removeUpload(id, u) }));
  return li;
}

function paintProgress(u) {
  const bar = $('uploads').querySelector(`li[data-key="${u.key}"] progress`);
  if (bar) bar.value = Math.round(u.progress * 100);
}

// ---------------------------------------------------------------- images through the token
let blobImages = null;
/** whether the page may show blob: images: its Content-Security-Policy's img-src (or default-src)
 * lists blob:. Read once from the page's own headers (the service worker keeps them with the shell). */
function blobImagesAllowed() {
  if (!blobImages) {
    blobImages = fetch('/index.html').then((r) => {
      const csp = r.headers.get('content-security-policy');
      if (!csp) return true;
      const ds = csp.split(';').map((d) => d.trim().split(/\s+/));
      const d = ds.find((x) => x[0] === 'img-src') || ds.find((x) => x[0] === 'default-src');
      return !d || d.includes('blob:');
    }).catch(() => false);
  }
  return blobImages;
}

/** a URL an <img> may show the blob through: {url, revoke} */
async function imageUrl(blob) {
  if (await blobImagesAllowed()) {
    const url = URL.createObjectURL(blob);
    return { url, revoke: () => URL.revokeObjectURL(url) };
  }
  const url = await new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(blob);
  });
  return { url, revoke: () => {} };
}

/** attachment id -> {p: Promise, url, revoke, w, h}; oldest use first */
const thumbs = new Map();

function thumbOf(id) {
  let t = thumbs.get(id);
  if (t) { thumbs.delete(id); thumbs.set(id, t); return t.p; }   // used: the newest
  t = { url: null, revoke: null, w: 0, h: 0 };
  t.p = apiBlob(`/v1/attachments/${encodeURIComponent(id)}/thumb`, { token: S.session.token })
    .then(imageUrl)
    .then((u) => {
      if (thumbs.get(id) !== t) { u.revoke(); throw new Error('forgotten'); }   // logged out meanwhile
      t.url = u.url;
      t.revoke = u.revoke;
      evictThumbs();
      return t;
    }, (e) => { if (thumbs.get(id) === t) thumbs.delete(id); throw e; });   // the next drawing tries again
  thumbs.set(id, t);
  return t.p;
}

/** above MAX_THUMBS, the least recently used that no message on the page shows are revoked */
function evictThumbs() {
  for (const [id, t] of thumbs) {
    if (thumbs.size <= MAX_THUMBS) break;
    if (!t.url || document.querySelector(`#msgs img[data-att="${CSS.escape(id)}"]`)) continue;
    thumbs.delete(id);
    t.revoke();
  }
}

/** the size a thumbnail of w×h is shown at */
function fit(w, h) {
  const s = Math.min(1, THUMB_BOX / Math.max(w, h, 1));
  return [Math.max(1, Math.round(w * s)), Math.max(1, Math.round(h * s))];
}

// thumbnails are fetched as they come near the visible part of the log, not the whole history page at once
const nearView = typeof IntersectionObserver === 'function'
  ? new IntersectionObserver((entries) => {
    for (const e of entries) if (e.isIntersecting) { nearView.unobserve(e.target); showThumb(e.target); }
  }, { rootMargin: '600px 0px' })
  : null;

async function showThumb(img) {
  const id = img.dataset.att;
  let t;
  try { t = await thumbOf(id); } catch {
    img.closest('.att-image')?.classList.add('failed');
    return;
  }
  img.addEventListener('load', () => {
    if (!t.w) { t.w = img.naturalWidth; t.h = img.naturalHeight; }
    // the real proportions replace the placeholder's; a log read at its end stays at its end
    const log = $('log');
    const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
    const [w, h] = fit(t.w, t.h);
    img.width = w;
    img.height = h;
    img.closest('.att-image')?.classList.add('loaded');
    if (stick) log.scrollTop = log.scrollHeight;
  }, { once: true });
  img.src = t.url;
}

// ---------------------------------------------------------------- attachments of a message
const isImage = (a) => !!a.thumb && /^image\//.test(a.type || '');

/** a message's attachments: thumbnails (a click opens the viewer), then file rows (a click downloads) */
export function attachmentsEl(list) {
  const box = el('div', { class: 'atts' });
  for (const a of list) box.append(isImage(a) ? imageEl(a) : fileEl(a));
  return box;
}

function imageEl(a) {
  const t = thumbs.get(a.id);
  // the size is known once a thumbnail of it was seen; until then a 4:3 placeholder
  const [w, h] = fit(t && t.w ? t.w : 4, t && t.h ? t.h : 3);
  const img = el('img', { class: 'thumb', alt: a.name, width: w, height: h, decoding: 'async', dataset: { att: a.id } });
  const btn = el('button', { type: 'button', class: 'att-image', 'aria-label': `Open image ${a.name}`, title: a.name }, img);
  btn.addEventListener('click', () => openViewer(a, btn));
  if (t && t.url) { img.src = t.url; btn.classList.add('loaded'); thumbOf(a.id); }
  else if (nearView) nearView.observe(img);
  else showThumb(img);
  return btn;
}

function fileEl(a) {
  const row = el('div', { class: 'att-file' });
  const btn = el('button', { type: 'button', class: 'att-file-btn', 'aria-label': `Download ${a.name}`, title: `Download ${a.name}` },
    el('span', { class: 'file-icon', 'aria-hidden': 'true', text: extOf(a.name) }),
    el('span', { class: 'att-name', text: a.name }),
    el('span', { class: 'att-size', text: fmtSize(a.size) }));
  btn.addEventListener('click', () => downloadAttachment(a, btn, row));
  row.append(btn);
  return row;
}

/** the bytes, then a temporary <a download> clicked: the browser saves them under the file's name */
async function downloadAttachment(a, btn, row) {
  if (btn.getAttribute('aria-busy') === 'true') return;
  btn.setAttribute('aria-busy', 'true');
  row.querySelector('.error')?.remove();
  try {
    const blob = await apiBlob(`/v1/attachments/${encodeURIComponent(a.id)}`, { token: S.session.token });
    saveBlob(blob, a.name);
  } catch (e) {
    row.append(el('span', { class: 'error', role: 'alert', text: `Not downloaded: ${describeError(e)}` }));
  } finally {
    btn.removeAttribute('aria-busy');
  }
}

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  // the download has long taken the bytes by then; revoking at once may cancel it in some browsers
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// ---------------------------------------------------------------- the viewer
let viewer = null;   // {gen, opener, revoke: [fn]}
let viewerGen = 0;

async function openViewer(a, opener) {
  const d = $('dlg-viewer');
  const img = $('viewer-img');
  const link = $('viewer-download');
  const gen = ++viewerGen;
  closeViewerUrls();
  viewer = { gen, opener, revoke: [] };
  $('viewer-title').textContent = a.name;
  $('viewer-size').textContent = fmtSize(a.size);
  img.removeAttribute('src');
  img.alt = a.name;
  img.hidden = true;
  link.hidden = true;
  link.removeAttribute('href');
  link.setAttribute('download', a.name);
  link.setAttribute('aria-label', `Download ${a.name}`);
  const status = $('viewer-status');
  status.textContent = 'Loading…';
  if (!d.open) d.showModal();
  $('viewer-close').focus();
  try {
    const blob = await apiBlob(`/v1/attachments/${encodeURIComponent(a.id)}`, { token: S.session.token });
    if (gen !== viewerGen || !d.open) return;
    const href = URL.createObjectURL(blob);
    viewer.revoke.push(() => URL.revokeObjectURL(href));
    link.href = href;
    link.hidden = false;
    const u = await imageUrl(blob);
    if (gen !== viewerGen || !d.open) { u.revoke(); return; }
    viewer.revoke.push(u.revoke);
    img.onload = () => { if (gen === viewerGen) { status.textContent = ''; img.hidden = false; } };
    img.onerror = () => { if (gen === viewerGen) status.textContent = 'This image cannot be shown here. Download it to open it.'; };
    img.src = u.url;
  } catch (e) {
    if (gen === viewerGen) status.textContent = `The image could not be loaded: ${describeError(e)}`;
  }
}

function closeViewerUrls() {
  if (!viewer) return;
  for (const r of viewer.revoke) r();
  viewer.revoke = [];
}

/** the viewer closed (Escape, the close button, logout): its URLs go, the focus goes back */
function onViewerClosed() {
  viewerGen++;
  const v = viewer;
  closeViewerUrls();
  viewer = null;
  const img = $('viewer-img');
  img.onload = img.onerror = null;
  img.removeAttribute('src');
  $('viewer-download').removeAttribute('href');
  if (v && v.opener && v.opener.isConnected) v.opener.focus({ preventScroll: true });
}

// ---------------------------------------------------------------- the session, wiring
/** logout (or another user): uploads stop, thumbnails and the viewer are let go */
export function resetAttach() {
  for (const list of uploads.values()) for (const u of list) if (u.abort) u.abort();
  uploads.clear();
  for (const t of thumbs.values()) if (t.revoke) t.revoke();
  thumbs.clear();
  const d = $('dlg-viewer');
  if (d.open) d.close();
  renderUploads();
}

const hasFiles = (e) => !!e.dataTransfer && [...e.dataTransfer.types].includes('Files');
const canAttach = () => !!S.current && !$('composer').hidden;

export function wireAttach() {
  const input = $('attach-input');
  $('attach').addEventListener('click', () => input.click());
  input.addEventListener('change', () => {
    addFiles([...input.files]);
    input.value = '';   // the same file may be chosen again
    $('input').focus();
  });

  // a pasted image (or file) becomes an upload; pasted text stays text
  $('input').addEventListener('paste', (e) => {
    const files = e.clipboardData ? [...e.clipboardData.files] : [];
    if (!files.length || !canAttach()) return;
    e.preventDefault();
    addFiles(files.map(named));
  });

  // files dropped anywhere on the open conversation; dragover repeats while over it, so the
  // highlight goes a moment after it stops (dragleave fires for every child crossed)
  const chat = $('chat');
  let dropTimer = 0;
  chat.addEventListener('dragover', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = canAttach() ? 'copy' : 'none';
    if (!canAttach()) return;
    chat.classList.add('dropping');
    clearTimeout(dropTimer);
    dropTimer = setTimeout(() => chat.classList.remove('dropping'), 200);
  });
  chat.addEventListener('drop', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    clearTimeout(dropTimer);
    chat.classList.remove('dropping');
    if (canAttach()) { addFiles([...e.dataTransfer.files]); $('input').focus(); }
  });
  // a file dropped elsewhere must not replace the app with the file (the browser's default)
  for (const t of ['dragover', 'drop']) {
    document.addEventListener(t, (e) => {
      if (!hasFiles(e) || e.defaultPrevented) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = 'none';
    });
  }

  $('dlg-viewer').addEventListener('close', onViewerClosed);
}
