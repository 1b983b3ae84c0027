// screenshots.mjs — the main screens at a phone's size (390x844) and a desktop's (1280x800),
// written to docs/screenshots/. Run: cd tests/web && node screenshots.mjs (after make);
// SHOTS_ONLY=REGEX writes only the screens whose names match (e.g. SHOTS_ONLY=search).
import fs from 'node:fs';
import path from 'node:path';
import {
  startServer, launchBrowser, newPerson, signUp, logIn, openDirect, openChat, send, waitForText, api, SHOTS, PHONE, DESKTOP, sleep, REPO,
} from './lib/harness.mjs';

const PHOTO = path.join(REPO, 'tests', 'unit', 'media', 'photo.png');

const server = await startServer();
const browser = await launchBrowser();
fs.mkdirSync(SHOTS, { recursive: true });
const ONLY = process.env.SHOTS_ONLY ? new RegExp(process.env.SHOTS_ONLY) : null;
const shot = async (page, name) => {
  if (ONLY && !ONLY.test(name)) return;
  await sleep(250);
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
  console.log('wrote', path.join('docs/screenshots', `${name}.png`));
};
try {
  // people and a bit of history, made over HTTP
  const mk = async (username, display_name) => {
    await api(server, 'POST', '/v1/users', { body: { username, password: 'correct horse 1', display_name } });
    return (await api(server, 'POST', '/v1/sessions', { body: { username, password: 'correct horse 1' } })).data;
  };
  const bob = await mk('bob', 'Bob');
  const carol = await mk('carol', 'Carol 캐롤');
  const dave = await mk('dave', 'Dave');

  for (const [name, viewport, mobile] of [['desktop', DESKTOP, false], ['phone', PHONE, true]]) {
    const me = `alice_${name}`;
    const A = await newPerson(browser, server, { viewport, mobile });
    await shot(A.page, `${name}-login`);
    const sa = await signUp(A.page, me, 'Alice');
    const msg = (s, to, text) => api(server, 'POST', `/v1/users/${to}/messages`, { token: s.token, body: { text } });
    await msg(dave, sa.user.id, 'Are we still on for Friday?');
    await msg(carol, sa.user.id, '사진 보냈어요! Did you get the photos?');
    for (const [s, u] of [[bob, bob.user], [carol, carol.user], [dave, dave.user]]) {
      await api(server, 'PUT', `/v1/friends/${u.id}`, { token: sa.token });
      await api(server, 'PUT', `/v1/friends/${sa.user.id}`, { token: s.token });
    }
    const g = (await api(server, 'POST', '/v1/groups', { token: sa.token, body: { name: 'Weekend trip 🏕️', members: [bob.user.id, carol.user.id] } })).data;
    let drive = null;
    if (g && g.channel) {
      drive = (await api(server, 'POST', `/v1/channels/${g.channel.id}/messages`, { token: bob.token, body: { text: 'I can drive. Leaving at 8?' } })).data.message;
      await api(server, 'POST', `/v1/channels/${g.channel.id}/messages`, { token: carol.token, body: { text: 'Bringing the tent ⛺ and snacks' } });
      // message features: an edit, a reaction, a deleted message
      await api(server, 'PATCH', `/v1/messages/${drive.id}`, { token: bob.token, body: { text: 'I can drive. Leaving at 8:30?' } });
      await api(server, 'PUT', `/v1/messages/${drive.id}/reactions/${encodeURIComponent('👍')}`, { token: carol.token });
      const oops = (await api(server, 'POST', `/v1/channels/${g.channel.id}/messages`, { token: carol.token, body: { text: 'wrong chat, sorry' } })).data.message;
      await api(server, 'DELETE', `/v1/messages/${oops.id}`, { token: carol.token });
    }
    // Bob is online in his own browser
    const B = await newPerson(browser, server);
    await logIn(B.page, 'bob');
    await A.page.reload();
    await A.page.locator('#conn[data-state="online"]').waitFor();
    await A.page.locator('#chat-list .chat-item').nth(2).waitFor();

    await openDirect(A.page, 'bob');
    await send(A.page, 'Hi Bob! Did you see the forecast? ☀️');
    await A.page.locator('#msgs li.msg[data-seq]').first().waitFor();
    await msg(bob, sa.user.id, 'Sunny all weekend 🙌');
    await waitForText(A.page, 'Sunny all weekend');
    await send(A.page, 'Perfect. <b>Packing</b> now — see you Saturday');
    await waitForText(A.page, 'Packing');
    await openChat(B.page, 'Alice');
    await A.page.locator('#msgs li.msg[data-state="read"]').last().waitFor({ timeout: 3000 }).catch(() => {});
    if (name === 'phone') {
      await A.page.getByRole('button', { name: 'Back to conversations' }).click();
      await shot(A.page, `${name}-chats`);
      await openChat(A.page, 'Bob');
    }
    await shot(A.page, `${name}-chat`);
    if (g && g.channel) {
      if (name === 'phone') await A.page.getByRole('button', { name: 'Back to conversations' }).click();
      await openChat(A.page, 'Weekend trip');
      const driveLi = A.page.locator('#msgs li.msg[data-seq]', { hasText: 'Leaving at 8:30' }).first();
      await driveLi.getByRole('button', { name: 'Reply to this message' }).click();
      await A.page.getByLabel('Message', { exact: true }).fill('Great, see you both at 8:30 🚗');
      await shot(A.page, `${name}-reply`);
      await A.page.getByLabel('Message', { exact: true }).press('Enter');
      await waitForText(A.page, 'see you both');
      await driveLi.getByRole('button', { name: 'React to this message' }).click();
      await A.page.getByRole('button', { name: 'React with ❤️' }).click();
      await driveLi.locator('.reaction', { hasText: '❤️' }).waitFor();
      await shot(A.page, `${name}-group`);
      await A.page.getByRole('button', { name: 'Members' }).click();
      await A.page.locator('#member-list li').nth(2).waitFor();
      await shot(A.page, `${name}-members`);
      await A.page.keyboard.press('Escape');
    }
    if (name === 'phone') await A.page.getByRole('button', { name: 'Back to conversations' }).click();
    // search: "see you" in two conversations (asked again until the index, which lags a fresh
    // message by up to a second, has both); on a desktop the first is opened beside the results
    const box = A.page.getByRole('searchbox', { name: 'Search messages' });
    for (let i = 0; i < 50; i++) {
      await box.fill('see you');
      await box.press('Enter');
      await A.page.locator('#search-status', { hasText: /found|available/ }).or(A.page.locator('#search-error:not(:empty)')).first().waitFor();
      if (await A.page.locator('#search-results .hit').count() >= 2 || await A.page.locator('#search-error:not(:empty)').count()) break;
      await sleep(200);
    }
    if (name === 'desktop') await A.page.locator('#search-results .hit').first().click().catch(() => {});
    await shot(A.page, `${name}-search`);
    await box.focus();
    await A.page.keyboard.press('Escape');
    await A.page.getByRole('tab', { name: /Friends/ }).click();
    await A.page.locator('#friend-list li').first().waitFor({ timeout: 3000 }).catch(() => {});
    await shot(A.page, `${name}-friends`);
    // Settings: password, sessions (Bob's browser is not Alice's; a second session of hers), blocked
    await api(server, 'PUT', `/v1/blocks/${dave.user.id}`, { token: sa.token });
    await api(server, 'POST', '/v1/sessions', { body: { username: me, password: 'correct horse 1', device: 'phone' } });
    await A.page.getByRole('button', { name: 'Settings' }).click();
    await A.page.locator('#session-list li').nth(1).waitFor({ timeout: 3000 }).catch(() => {});
    await A.page.locator('#blocked-list li').first().waitFor({ timeout: 3000 }).catch(() => {});
    await shot(A.page, `${name}-settings`);
    await A.page.keyboard.press('Escape');
    // attachments: Carol sends a picture and a trip plan with a caption; Alice has a file picked
    // for her answer (its chip waits above the composer); then the viewer on the picture
    const upload = async (s, file, body) => (await (await fetch(`${server.url}/v1/uploads?name=${encodeURIComponent(file)}`,
      { method: 'POST', headers: { Authorization: `Bearer ${s.token}` }, body })).json()).attachment;
    const pic = await upload(carol, 'lake.png', fs.readFileSync(PHOTO));
    const plan = await upload(carol, 'trip-plan.txt', 'Sat 8:30  leave from Bob\'s\nSat 11:00 lake, set up the tent\nSun 15:00 drive back\n');
    await api(server, 'POST', `/v1/users/${sa.user.id}/messages`,
      { token: carol.token, body: { text: 'The lake from last summer 🏞️ and the plan', attachments: [pic.id, plan.id] } });
    await A.page.getByRole('tab', { name: 'Chats' }).click();
    await openChat(A.page, 'Carol');
    const pics = A.page.locator('#msgs li.msg[data-seq]', { hasText: 'The lake from last summer' }).last();
    await pics.getByRole('button', { name: 'Download trip-plan.txt' }).waitFor();
    await pics.locator('img.thumb').waitFor();
    await A.page.waitForFunction((li) => [...li.querySelectorAll('img.thumb')].every((i) => i.complete && i.naturalWidth > 0),
      await pics.elementHandle(), { timeout: 10000 });
    await A.page.locator('#attach-input').setInputFiles({ name: 'packing-list.txt', mimeType: 'text/plain', buffer: Buffer.from('tent\nsleeping bags\nsnacks\n') });
    await A.page.locator('#uploads li.chip[data-state="done"]').waitFor();
    await A.page.getByLabel('Message', { exact: true }).fill('So pretty! Here is my packing list');
    await shot(A.page, `${name}-attach`);
    await pics.getByRole('button', { name: 'Open image lake.png' }).click();
    await A.page.getByRole('dialog', { name: 'lake.png' }).waitFor();
    await A.page.waitForFunction(() => { const i = document.getElementById('viewer-img'); return !i.hidden && i.complete && i.naturalWidth > 0; });
    await shot(A.page, `${name}-viewer`);
    await A.page.keyboard.press('Escape');
    await A.context.close();
    await B.context.close();
  }
} finally {
  await browser.close();
  await server.close();
}
