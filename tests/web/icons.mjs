// icons.mjs — the web client's PNG icons (web/icon-192.png, icon-512.png and their maskable
// forms), drawn from web/icon.svg by Debian's Chromium: run after changing the SVG
// (cd tests/web && node icons.mjs). The PNGs are committed; nothing draws them at run time.
import fs from 'node:fs';
import path from 'node:path';
import { launchBrowser, REPO } from './lib/harness.mjs';

const svg = fs.readFileSync(path.join(REPO, 'web', 'icon.svg'), 'utf8');
// maskable: the background to every edge, the glyph inside the 80 % safe circle
const inner = svg.replace(/^<svg[^>]*>/, '').replace(/<\/svg>\s*$/, '').replace(/<rect [^>]*\/>/, '');
const maskable = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect width="64" height="64" fill="#2f5d8a"/>` +
  `<g transform="translate(32 32) scale(0.72) translate(-32 -32)">${inner}</g></svg>`;
const browser = await launchBrowser();
try {
  const page = await browser.newPage();
  for (const [name, src] of [['icon', svg], ['icon-maskable', maskable]]) {
    for (const size of [192, 512]) {
      await page.setViewportSize({ width: size, height: size });
      await page.setContent(`<html><body style="margin:0;background:transparent">${src.replace('<svg ', `<svg width="${size}" height="${size}" `)}</body></html>`);
      const out = path.join(REPO, 'web', `${name}-${size}.png`);
      await page.screenshot({ path: out, omitBackground: true, clip: { x: 0, y: 0, width: size, height: size } });
      console.log('wrote', path.relative(REPO, out));
    }
  }
} finally {
  await browser.close();
}
