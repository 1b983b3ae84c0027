// a11y.test.mjs — axe-core (npm) on every view of the web client, desktop and phone: the login
// form, the conversation list, search results (of every conversation, and of one), a
// conversation with the message features (edited, deleted, reactions, a reply, a reply being
// written, a delete being asked, an image attachment and its viewer, a file being attached), a
// group and its members, the friends tab, the settings dialog. No violation of impact "serious" or "critical" (WCAG 2.x A
// and AA rules) is allowed; the others are printed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import {
  startServer, launchBrowser, newPerson, signUp, openDirect, openChat, send, waitForText, uname, api, PHONE, DESKTOP, REPO,
} from './lib/harness.mjs';

const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
let server, browser;
before(async () => { server = await startServer(); browser = await launchBrowser(); });
after(async () => { await browser?.close(); await server?.close(); });

/** axe on the page as it is: the serious and critical violations, as readable lines */
async function audit(page, view, seen) {
  await page.waitForTimeout(150);   // let transitions settle
  if (!(await page.evaluate(() => typeof window.axe !== 'undefined'))) await page.addScriptTag({ path: AXE });
  const r = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
  }));
  const bad = [];
  for (const v of r.violations) {
    const line = `${view}: [${v.impact}] ${v.id}: ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`;
    if (v.impact === 'serious' || v.impact === 'critical') bad.push(line);
    else if (!seen.has(v.id)) { seen.add(v.id); console.log(`# a11y (minor) ${line}`); }
  }
  return bad;
}

/** searches for q, asking again until something is found (the index lags a fresh message by up
 * to about a second) or an error is said */
async function searchFor(page, q) {
  const box = page.getByRole('searchbox', { name: 'Search messages' });
  for (let i = 0; i < 50; i++) {
    await box.fill(q);
    await box.press('Enter');
    await page.locator('#search-status', { hasText: /found/ }).or(page.locator('#search-error:not(:empty)')).first().waitFor();
    if (await page.locator('#search-results .hit').count() || await page.locator('#search-error:not(:empty)').count()) return;
    await page.waitForTimeout(100);
  }
}

for (const [name, viewport, mobile] of [['desktop', DESKTOP, false], ['phone', PHONE, true]]) {
  test(`axe-core on every view (${name}): nothing serious or critical`, async () => {
    const seen = new Set();
    const bad = [];
    const A = await newPerson(browser, server, { viewport, mobile, bypassCSP: true });   // axe is injected inline
    const B = await newPerson(browser, server);
    bad.push(...await audit(A.page, 'login', seen));
    const a = uname('ada'), b = uname('ben');
    const sa = await signUp(A.page, a, 'Ada');
    const sb = await signUp(B.page, b, 'Ben');
    bad.push(...await audit(A.page, 'empty list', seen));

    // a conversation with every message feature in it
    const first = await api(server, 'POST', `/v1/users/${sa.user.id}/messages`, { token: sb.token, body: { text: 'hello Ada, https://example.org', cmid: 'a1' } });
    const ch = first.data.message.channel;
    await api(server, 'PATCH', `/v1/messages/${first.data.message.id}`, { token: sb.token, body: { text: 'hello Ada! https://example.org' } });
    await api(server, 'PUT', `/v1/messages/${first.data.message.id}/reactions/${encodeURIComponent('👍')}`, { token: sa.token });
    const gone = await api(server, 'POST', `/v1/channels/${ch}/messages`, { token: sb.token, body: { text: 'oops', cmid: 'a2' } });
    await api(server, 'DELETE', `/v1/messages/${gone.data.message.id}`, { token: sb.token });
    await api(server, 'POST', `/v1/channels/${ch}/messages`, { token: sa.token, body: { text: 'hi Ben', cmid: 'a3', reply_to: first.data.message.id } });
    // a picture (a plain message while the server does not send attachments: attachments.test.mjs says so)
    const up = await fetch(`${server.url}/v1/uploads?name=photo.png`, { method: 'POST', headers: { Authorization: `Bearer ${sb.token}` },
      body: fs.readFileSync(path.join(REPO, 'tests', 'unit', 'media', 'photo.png')) });
    assert.equal(up.status, 201);
    const pic = await api(server, 'POST', `/v1/channels/${ch}/messages`, { token: sb.token, body: { text: 'a picture', cmid: 'a4', attachments: [(await up.json()).attachment.id] } });
    const withImage = Array.isArray(pic.data.message.attachments) && pic.data.message.attachments.length === 1;
    await A.page.reload();
    await A.page.locator('#chat-list .chat-item').first().waitFor();
    bad.push(...await audit(A.page, 'conversation list', seen));
    await searchFor(A.page, 'hello');
    bad.push(...await audit(A.page, 'search results', seen));
    await A.page.keyboard.press('Escape');
    await A.page.locator('#search-view').waitFor({ state: 'hidden' });
    await openChat(A.page, 'Ben');
    await waitForText(A.page, 'hi Ben');
    await A.page.locator('#msgs li.msg .quote', { hasText: 'hello Ada' }).waitFor();
    if (withImage) {
      await A.page.waitForFunction(() => [...document.querySelectorAll('#msgs img.thumb')].some((i) => i.complete && i.naturalWidth > 0));
    }
    bad.push(...await audit(A.page, 'conversation', seen));
    if (withImage) {
      await A.page.getByRole('button', { name: 'Open image photo.png' }).click();
      await A.page.getByRole('link', { name: 'Download photo.png' }).waitFor();
      bad.push(...await audit(A.page, 'image viewer', seen));
      await A.page.keyboard.press('Escape');
      await A.page.locator('#dlg-viewer').waitFor({ state: 'hidden' });
    }
    await A.page.locator('#attach-input').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('notes') });
    await A.page.locator('#uploads li.chip[data-state="done"]').waitFor();
    bad.push(...await audit(A.page, 'a file attached', seen));
    await A.page.getByRole('button', { name: 'Remove notes.txt' }).click();
    await A.page.getByRole('button', { name: 'Search this conversation' }).click();
    await searchFor(A.page, 'hi');
    bad.push(...await audit(A.page, 'search in a conversation', seen));
    await A.page.keyboard.press('Escape');
    await A.page.locator('#composer').waitFor({ state: 'visible' });
    const firstLi = A.page.locator('#msgs li.msg[data-seq]', { hasText: 'hello Ada!' }).first();
    await firstLi.getByRole('button', { name: 'Reply to this message' }).click();
    bad.push(...await audit(A.page, 'writing a reply', seen));
    await A.page.getByRole('button', { name: 'Cancel the reply' }).click();
    await firstLi.getByRole('button', { name: 'React to this message' }).click();
    bad.push(...await audit(A.page, 'reaction picker', seen));
    await A.page.getByRole('button', { name: 'Cancel' }).click();
    const mine = A.page.locator('#msgs li.msg.mine[data-seq]', { hasText: 'hi Ben' });
    await mine.getByRole('button', { name: 'Delete this message' }).click();
    bad.push(...await audit(A.page, 'asking to delete', seen));
    await mine.getByRole('button', { name: 'No' }).click();
    await mine.getByRole('button', { name: 'Edit this message' }).click();
    bad.push(...await audit(A.page, 'editing', seen));
    await A.page.getByLabel('Edit message').press('Escape');

    // a group and its members
    const g = await api(server, 'POST', '/v1/groups', { token: sa.token, body: { name: 'Team', members: [sb.user.id] } });
    assert.equal(g.status, 201);
    if (mobile) await A.page.getByRole('button', { name: 'Back to conversations' }).click();
    await openChat(A.page, 'Team');
    await send(A.page, 'hello team');
    await waitForText(A.page, 'hello team');
    bad.push(...await audit(A.page, 'group', seen));
    await A.page.getByRole('button', { name: 'Members' }).click();
    await A.page.locator('#member-list li').nth(1).waitFor();
    bad.push(...await audit(A.page, 'members', seen));
    await A.page.keyboard.press('Escape');
    if (mobile) await A.page.getByRole('button', { name: 'Back to conversations' }).click();

    // friends and settings
    await api(server, 'PUT', `/v1/friends/${sa.user.id}`, { token: sb.token });
    await A.page.getByRole('tab', { name: /Friends/ }).click();
    await A.page.locator('#friend-list li').first().waitFor({ timeout: 5000 }).catch(() => {});
    bad.push(...await audit(A.page, 'friends', seen));
    await A.page.getByRole('button', { name: 'Settings' }).click();
    await A.page.locator('#session-list li').first().waitFor();
    bad.push(...await audit(A.page, 'settings', seen));
    await A.page.keyboard.press('Escape');

    assert.deepEqual(bad, [], `\n${bad.join('\n')}`);
    assert.deepEqual([...A.page.errors, ...B.page.errors], []);
    await A.context.close();
    await B.context.close();
  });
}
