#!/usr/bin/env node
// check-dashboard.mjs [FILE] — every query of the Grafana dashboard (deploy/grafana-dashboard.json
// by default) is valid PromQL: its variables replaced by plain values, each becomes a recording
// rule of a temporary rules file that `promtool check rules` parses.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

const file = process.argv[2] || new URL('../deploy/grafana-dashboard.json', import.meta.url).pathname;
const dash = JSON.parse(fs.readFileSync(file, 'utf8'));
const exprs = [];
const walk = (ps) => {
  for (const p of ps || []) {
    for (const t of p.targets || []) exprs.push({ panel: p.title, expr: t.expr });
    walk(p.panels);
  }
};
walk(dash.panels);
if (!exprs.length) throw new Error(`${file}: no queries`);
const vars = (dash.templating?.list || []).map((v) => v.name);
const rules = exprs.map((e, i) => {
  let x = e.expr;
  for (const v of vars) x = x.replaceAll(`$${v}`, '.*').replaceAll(`\${${v}}`, '.*');
  return `      - record: dashboard:q${i}\n        expr: ${JSON.stringify(x)}\n`;
});
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'iyagi-dash-'));
const rf = path.join(tmp, 'rules.yml');
fs.writeFileSync(rf, `groups:\n  - name: dashboard\n    rules:\n${rules.join('')}`);
try {
  execFileSync('promtool', ['check', 'rules', rf], { stdio: ['ignore', 'pipe', 'inherit'] });
} catch (e) {
  console.error(`${file}: a query does not parse (promtool above); queries:`);
  exprs.forEach((e, i) => console.error(`  q${i} [${e.panel}] ${e.expr}`));
  process.exit(1);
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
console.log(`${file}: ${exprs.length} queries in ${new Set(exprs.map((e) => e.panel)).size} panels parse`);
