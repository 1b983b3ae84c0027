// The web client over native TLS: iyagid with --tls-cert/--tls-key (a certificate made for the
// test by tests/e2e/lib/tlscerts.mjs), Chromium trusting exactly that server key
// (--ignore-certificate-errors-spki-list pins its SPKI hash; no blanket switch), two people sign up
// at https://127.0.0.1:PORT/ and chat over the wss:// URL the server hands out.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { CHROMIUM, newPerson, signUp, openDirect, openChat, send, waitForText, uname } from './lib/harness.mjs';
import { startServer } from '../e2e/lib/harness.mjs';
import { makeCa, removeCa, serverCert } from '../e2e/lib/tlscerts.mjs';

let pki, server, browser;
before(async () => {
  pki = makeCa();
  const cert = serverCert(pki, { serial: 4242 });
  server = await startServer({ tls: { cert: cert.cert, key: cert.key, ca: pki.ca } });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: !process.env.IYAGI_WEB_HEADFUL,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--ignore-certificate-errors-spki-list=${cert.spki}`],
  });
});
after(async () => {
  await browser?.close();
  await server?.cleanup();
  removeCa(pki);
});

test('sign up and chat in the web client over https:// and wss://', async () => {
  assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const A = await newPerson(browser, server);
  const B = await newPerson(browser, server);
  try {
    assert.equal(await A.page.evaluate(() => location.protocol), 'https:');
    const a = uname('tlsa'), b = uname('tlsb');
    const sa = await signUp(A.page, a, 'Alice TLS');
    await signUp(B.page, b, 'Bob TLS');
    assert.equal(sa.ws_url, `wss://127.0.0.1:${server.port}/v1/ws`, 'the session\'s socket URL is wss://');
    assert.equal(await A.page.evaluate(() => window.isSecureContext), true);

    await openDirect(A.page, b);
    await send(A.page, 'hello over TLS 🔒');
    await A.page.locator('#msgs li.msg.mine[data-seq]:not([data-state="sending"])', { hasText: 'hello over TLS' }).waitFor();
    await openChat(B.page, 'Alice TLS');
    await waitForText(B.page, 'hello over TLS 🔒');
    await send(B.page, '안녕, secure');
    await waitForText(A.page, '안녕, secure');
    assert.deepEqual(A.page.errors, [], 'no page errors');
    assert.deepEqual(B.page.errors, [], 'no page errors');
  } finally {
    await A.context.close();
    await B.context.close();
  }
});
