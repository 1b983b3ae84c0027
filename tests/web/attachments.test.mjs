// Attachments in the browser (web/attach.js; the product issue: "image thumbnails with a viewer and
// file downloads (drag-and-drop and paste)"):
//   uploads   the Attach button's file picker, a file dropped on the conversation and an image
//             pasted into the message box each become a chip that uploads at once; Send waits while
//             one is uploading; an upload the server refuses says so on its chip; × removes one; a
//             file over 25 MB is refused before any byte goes, and so is an eleventh file.
//   sending   a picture and a text file with a caption: the other side sees the thumbnail (loaded
//             through the token), opens the viewer (the full image, a Download link, Escape gives
//             the focus back), downloads the file (its bytes), and sees all of it after a reload; an
//             image alone (pasted, no text) and a dropped file go too.
//   outbox    a message with attachments written while the server is down waits in the outbox
//             (IndexedDB) with its attachment ids, survives a reload, and is delivered with them.
// The sending parts need the server's "send with attachments"; while it is missing (a sent
// message comes back without `attachments`) they are skipped, saying so, and the upload part runs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import {
  startServer, launchBrowser, newPerson, signUp, openDirect, openChat, send, waitForText, uname, api, sleep, REPO, PASSWORD,
} from './lib/harness.mjs';

const PHOTO = path.join(REPO, 'tests', 'unit', 'media', 'photo.png');   // 400×300
const NOTES = 'these are the notes\n둘째 줄\n';

let server, browser, photo, sendable = false;
before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  photo = await fsp.readFile(PHOTO);
  sendable = await serverSendsAttachments();
});
after(async () => { await browser?.close(); await server?.close(); });

const SKIP = 'the server does not send attachments with messages yet (a message sent with `attachments` comes back without them)';

async function person(base) {
  const username = uname(base);
  await api(server, 'POST', '/v1/users', { body: { username, password: PASSWORD } });
  return (await api(server, 'POST', '/v1/sessions', { body: { username, password: PASSWORD } })).data;
}

async function upload(token, name, body) {
  const r = await fetch(`${server.url}/v1/uploads?name=${encodeURIComponent(name)}`, { method: 'POST', headers: { Authorization: `Bearer ${token}` }, body });
  return { status: r.status, data: await r.json() };
}

/** whether a message sent with an upload's id comes back carrying it (between two people of its own) */
async function serverSendsAttachments() {
  const p = await person('probe');
  const q = await person('probq');
  const up = await upload(p.token, 'probe.txt', 'probe');
  assert.equal(up.status, 201, `uploads work: ${JSON.stringify(up.data)}`);
  const r = await api(server, 'POST', `/v1/users/${q.user.id}/messages`,
    { token: p.token, body: { text: 'probe', cmid: 'probe-1', attachments: [up.data.attachment.id] } });
  return r.status === 201 && Array.isArray(r.data.message.attachments) && r.data.message.attachments.length === 1;
}

const chips = (page) => page.locator('#uploads li.chip');
const msgLi = (page, text) => page.locator('#msgs li.msg[data-seq]', { hasText: text });

/** drops files (name -> text) on the conversation's log as a browser would: dragenter, dragover, drop */
async function dropFiles(page, files) {
  await page.evaluate((files) => {
    const dt = new DataTransfer();
    for (const [name, text] of Object.entries(files)) dt.items.add(new File([text], name, { type: 'text/plain' }));
    const log = document.getElementById('log');
    for (const type of ['dragenter', 'dragover', 'drop']) log.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, files);
}

/** pastes an image into the message box (browsers call a pasted image "image.png") */
async function pasteImage(page, bytes) {
  await page.evaluate((b64) => {
    const dt = new DataTransfer();
    dt.items.add(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], 'image.png', { type: 'image/png' }));
    document.getElementById('input').dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
  }, bytes.toString('base64'));
}

/** every thumbnail in li has loaded a real image */
async function thumbsLoaded(page, li, n) {
  await li.locator('img.thumb').nth(n - 1).waitFor();
  await page.waitForFunction((el) => [...el.querySelectorAll('img.thumb')].every((i) => i.complete && i.naturalWidth > 0),
    await li.elementHandle(), { timeout: 10000 });
}

test('uploads: picker, drop and paste make chips; Send waits; errors, ×, too large and too many are refused', async () => {
  const A = await newPerson(browser, server);
  await signUp(A.page, uname('upa'), 'Ula');
  const sb = await person('upc');
  await openDirect(A.page, sb.user.username);
  assert.equal(await A.page.getByRole('button', { name: 'Attach files' }).isVisible(), true);

  // the picker: a held upload is a chip with progress and Send waits; then it is ready
  let release;
  const held = new Promise((r) => { release = r; });
  await A.page.route('**/v1/uploads?*', async (route) => { await held; await route.continue(); });
  await A.page.locator('#attach-input').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from(NOTES) });
  const chip = chips(A.page).filter({ hasText: 'notes.txt' });
  await chip.and(A.page.locator('[data-state="uploading"]')).waitFor();
  assert.equal(await chip.getByRole('progressbar', { name: 'Uploading notes.txt' }).count(), 1);
  assert.match(await chip.locator('.chip-size').textContent(), /^\d+ B$/);
  assert.equal(await A.page.locator('#send').isDisabled(), true, 'Send waits for the upload');
  await A.page.getByLabel('Message', { exact: true }).fill('not yet');
  await A.page.getByLabel('Message', { exact: true }).press('Enter');
  await sleep(200);
  assert.equal(await A.page.locator('#msgs li.msg').count(), 0, 'Enter sends nothing while uploading');
  release();
  await chip.and(A.page.locator('[data-state="done"]')).waitFor();
  assert.equal(await A.page.locator('#send').isDisabled(), false);
  await A.page.unroute('**/v1/uploads?*');

  // an upload the server refuses: said on its chip, Send stays possible, × removes it
  await A.page.route('**/v1/uploads?*', (route) => route.fulfill({ status: 507, contentType: 'application/json',
    body: JSON.stringify({ error: { code: 'insufficient_storage', message: 'The disk is full.' } }) }));
  await A.page.locator('#attach-input').setInputFiles({ name: 'doomed.txt', mimeType: 'text/plain', buffer: Buffer.from('x') });
  const doomed = chips(A.page).filter({ hasText: 'doomed.txt' });
  await doomed.locator('.error', { hasText: 'Not uploaded: The disk is full.' }).waitFor();
  assert.equal(await A.page.locator('#send').isDisabled(), false);
  await A.page.unroute('**/v1/uploads?*');
  await A.page.getByRole('button', { name: 'Remove doomed.txt' }).click();
  await doomed.waitFor({ state: 'detached' });

  // dropped on the conversation, pasted into the message box
  await dropFiles(A.page, { 'dropped.txt': 'dropped bytes' });
  await chips(A.page).filter({ hasText: 'dropped.txt' }).and(A.page.locator('[data-state="done"]')).waitFor();
  await pasteImage(A.page, photo);
  const pasted = chips(A.page).filter({ hasText: /^PNG\s*Pasted image .*\.png/ });
  await pasted.and(A.page.locator('[data-state="done"]')).waitFor();
  assert.equal(await chips(A.page).count(), 3);
  await A.page.getByRole('button', { name: /^Remove Pasted image / }).click();
  await A.page.getByRole('button', { name: 'Remove dropped.txt' }).click();
  await A.page.getByRole('button', { name: 'Remove notes.txt' }).click();
  assert.equal(await chips(A.page).count(), 0);
  assert.equal(await A.page.locator('#uploads').isVisible(), false);

  // over 25 MB: refused here, not one request; nothing is sent
  const requests = [];
  A.page.on('request', (r) => { if (r.url().includes('/v1/uploads')) requests.push(r.url()); });
  await A.page.getByLabel('Message', { exact: true }).fill('');
  // 26 MB through the DevTools protocol into the page: over the 10 s default on a busy 2-core
  // machine (CI timed out here once); the refusal itself is immediate.
  await A.page.locator('#attach-input').setInputFiles({ name: 'big.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(26 * 1024 * 1024, 7) }, { timeout: 60000 });
  await A.page.locator('#chat-error', { hasText: 'big.bin' }).waitFor();
  assert.equal(await A.page.locator('#chat-error').textContent(), '“big.bin” is 26 MB: files can be at most 25 MB.');
  assert.equal(await chips(A.page).count(), 0);
  await A.page.getByLabel('Message', { exact: true }).press('Enter');
  await sleep(300);
  assert.equal(await A.page.locator('#msgs li.msg').count(), 0, 'nothing is sent');
  assert.deepEqual(requests, [], 'the large file never went to the server');

  // at most 10 files with one message: the eleventh is refused
  const eleven = Array.from({ length: 11 }, (_, i) => ({ name: `f${i + 1}.txt`, mimeType: 'text/plain', buffer: Buffer.from(`file ${i + 1}`) }));
  await A.page.locator('#attach-input').setInputFiles(eleven);
  await A.page.locator('#chat-error', { hasText: 'At most 10 files' }).waitFor();
  assert.equal(await chips(A.page).count(), 10);
  await A.page.locator('#uploads li.chip[data-state="done"]').nth(9).waitFor();
  assert.deepEqual(A.page.errors, []);
  await A.context.close();
});

test('sending: a picture and a file with a caption; thumbnail, viewer, download, after a reload; an image alone; a dropped file', async (t) => {
  if (!sendable) { t.skip(SKIP); return; }
  const A = await newPerson(browser, server);
  const B = await newPerson(browser, server);
  const a = uname('pia'), b = uname('pib');
  const sa = await signUp(A.page, a, 'Pia');
  await signUp(B.page, b, 'Bert');
  await openDirect(A.page, b);
  await send(A.page, 'hi bert');
  await waitForText(A.page, 'hi bert');
  await openChat(B.page, 'Pia');
  await waitForText(B.page, 'hi bert');

  // Pia attaches a picture and a text file with the picker and sends them with a caption
  await A.page.locator('#attach-input').setInputFiles([{ name: 'photo.png', mimeType: 'image/png', buffer: photo }, { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from(NOTES) }]);
  await A.page.locator('#uploads li.chip[data-state="done"]').nth(1).waitFor();
  await send(A.page, 'look at this');
  await waitForText(A.page, 'look at this');
  assert.equal(await chips(A.page).count(), 0, 'the chips went with the message');
  const mine = msgLi(A.page, 'look at this');
  await thumbsLoaded(A.page, mine, 1);
  await mine.getByRole('button', { name: 'Download notes.txt' }).waitFor();
  const channel = await A.page.evaluate(() => location.hash.slice(4));
  const stored = (await api(server, 'GET', `/v1/channels/${channel}/messages?after_seq=0&limit=10`, { token: sa.token })).data.messages;
  const m = stored.find((x) => x.text === 'look at this');
  assert.deepEqual(m.attachments.map((x) => [x.name, x.type, x.size]),
    [['photo.png', 'image/png', photo.length], ['notes.txt', 'text/plain', Buffer.byteLength(NOTES)]]);

  // Bert: the thumbnail (through the token), the file row
  const theirs = msgLi(B.page, 'look at this');
  await theirs.waitFor();
  await thumbsLoaded(B.page, theirs, 1);
  const img = theirs.getByRole('img', { name: 'photo.png' });
  const dims = await img.evaluate((i) => ({ nw: i.naturalWidth, nh: i.naturalHeight, w: i.width, h: i.height }));
  assert.equal(dims.nw * 3, dims.nh * 4, `the thumbnail keeps the picture's proportions: ${JSON.stringify(dims)}`);
  assert.equal(dims.w * 3, dims.h * 4, `and is shown in them: ${JSON.stringify(dims)}`);
  assert.match(await theirs.locator('.att-file').textContent(), /TXT\s*notes\.txt\s*\d+ B/);
  await B.page.locator('#chat-list .ci-last', { hasText: 'look at this' }).waitFor();

  // the viewer: the full image, a Download link, Escape closes it and gives the focus back
  await theirs.getByRole('button', { name: 'Open image photo.png' }).click();
  const dialog = B.page.getByRole('dialog', { name: 'photo.png' });
  await dialog.waitFor();
  await B.page.waitForFunction(() => { const i = document.getElementById('viewer-img'); return !i.hidden && i.complete && i.naturalWidth === 400; });
  assert.equal(await dialog.getByRole('img', { name: 'photo.png' }).isVisible(), true);
  const link = dialog.getByRole('link', { name: 'Download photo.png' });
  const [dl1] = await Promise.all([B.page.waitForEvent('download'), link.click()]);
  assert.equal(dl1.suggestedFilename(), 'photo.png');
  assert.ok((await fsp.readFile(await dl1.path())).equals(photo), 'the viewer downloads the picture itself');
  await B.page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await B.page.evaluate(() => document.activeElement.getAttribute('aria-label')), 'Open image photo.png');
  // the keyboard opens it too; the close button closes it
  await B.page.keyboard.press('Enter');
  await dialog.waitFor();
  await dialog.getByRole('button', { name: 'Close the image' }).click();
  await dialog.waitFor({ state: 'hidden' });

  // the file: downloaded under its name, with its bytes
  const [dl2] = await Promise.all([B.page.waitForEvent('download'), theirs.getByRole('button', { name: 'Download notes.txt' }).click()]);
  assert.equal(dl2.suggestedFilename(), 'notes.txt');
  assert.equal(await fsp.readFile(await dl2.path(), 'utf8'), NOTES);

  // an image alone (pasted, no text), and a dropped file with a caption
  await pasteImage(A.page, photo);
  await A.page.locator('#uploads li.chip[data-state="done"]').waitFor();
  await A.page.getByRole('button', { name: 'Send' }).click();
  await A.page.locator('#uploads').waitFor({ state: 'hidden' });
  const alone = B.page.locator('#msgs li.msg[data-seq]').filter({ has: B.page.getByRole('button', { name: /^Open image Pasted image / }) });
  await alone.waitFor();
  assert.equal(await alone.locator('.text').count(), 0, 'no empty text under the image');
  await thumbsLoaded(B.page, alone, 1);
  await B.page.locator('#chat-list .ci-last', { hasText: '📎 Pasted image' }).waitFor();
  await dropFiles(A.page, { 'dropped.txt': 'dropped bytes' });
  await A.page.locator('#uploads li.chip[data-state="done"]').waitFor();
  await send(A.page, 'dropped one');
  await msgLi(B.page, 'dropped one').getByRole('button', { name: 'Download dropped.txt' }).waitFor();

  // after a reload: all of it from history
  await B.page.reload();
  await openChat(B.page, 'Pia');
  const again = msgLi(B.page, 'look at this');
  await again.waitFor();
  await thumbsLoaded(B.page, again, 1);
  await again.getByRole('button', { name: 'Download notes.txt' }).waitFor();
  await thumbsLoaded(B.page, B.page.locator('#msgs li.msg[data-seq]').filter({ has: B.page.getByRole('button', { name: /^Open image Pasted image / }) }), 1);
  await msgLi(B.page, 'dropped one').getByRole('button', { name: 'Download dropped.txt' }).waitFor();

  // deleted: the attachments go with it
  await mine.getByRole('button', { name: 'Delete this message' }).click();
  await mine.getByRole('button', { name: 'Yes, delete' }).click();
  await B.page.locator('#msgs li.msg.deleted').waitFor();
  assert.equal(await B.page.getByRole('button', { name: 'Download notes.txt' }).count(), 0);
  assert.deepEqual([...A.page.errors, ...B.page.errors], []);
  await A.context.close();
  await B.context.close();
});

test('outbox: a message with attachments written while the server is down waits with its ids, survives a reload, and is delivered', async (t) => {
  if (!sendable) { t.skip(SKIP); return; }
  const A = await newPerson(browser, server);
  const a = uname('oba');
  const sa = await signUp(A.page, a, 'Oba');
  const sb = await person('obb');
  await openDirect(A.page, sb.user.username);
  await send(A.page, 'first');
  await waitForText(A.page, 'first');
  await A.page.waitForFunction(() => !!navigator.serviceWorker.controller, null, { timeout: 15000 });
  await A.page.locator('#attach-input').setInputFiles({ name: 'later.txt', mimeType: 'text/plain', buffer: Buffer.from('sent later') });
  await A.page.locator('#uploads li.chip[data-state="done"]').waitFor();

  await server.stop();
  await A.page.locator('#conn:not([data-state="online"])').waitFor();
  await send(A.page, 'with a file, later');
  const pending = A.page.locator('#msgs li.pending', { hasText: 'with a file, later' });
  await pending.getByRole('button', { name: 'Download later.txt' }).waitFor();
  const saved = async () => A.page.evaluate(async (name) => {
    const p = (r) => new Promise((res, rej) => { r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
    const db = await p(indexedDB.open(name));
    const all = await p(db.transaction('outbox').objectStore('outbox').getAll());
    db.close();
    return all;
  }, `iyagi.${sa.user.id}`);
  let box = [];
  for (let i = 0; i < 50 && !box.length; i++) { box = await saved(); if (!box.length) await sleep(100); }
  assert.equal(box.length, 1);
  assert.deepEqual(box[0].attachments.map((x) => x.name), ['later.txt']);
  const id = box[0].attachments[0].id;
  await A.page.reload();
  await A.page.locator('#msgs li.pending', { hasText: 'with a file, later' }).getByRole('button', { name: 'Download later.txt' }).waitFor();

  await server.up();
  await waitForText(A.page, 'with a file, later', 25000);
  await A.page.locator('#msgs li.pending').waitFor({ state: 'detached', timeout: 15000 });
  const channel = await A.page.evaluate(() => location.hash.slice(4));
  const stored = (await api(server, 'GET', `/v1/channels/${channel}/messages?after_seq=0&limit=10`, { token: sb.token })).data.messages;
  const m = stored.filter((x) => x.text === 'with a file, later');
  assert.equal(m.length, 1, 'delivered once');
  assert.deepEqual(m[0].attachments.map((x) => x.id), [id], 'with the attachment uploaded before');
  await msgLi(A.page, 'with a file, later').getByRole('button', { name: 'Download later.txt' }).waitFor();
  await A.context.close();
});
