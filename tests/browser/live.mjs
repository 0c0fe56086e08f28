// Opens the live page of a running `logsentry serve` in Debian's headless
// chromium, then waits — without reloading — until the page shows lines
// flowing and an anomaly of the expected service in a window that starts at
// or after SINCE (so one found in the seeded history does not count), and
// saves screenshots.
// Usage: node live.mjs URL SERVICE SCREENSHOT_DIR [TIMEOUT_MS] [SINCE_ISO]
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const [url, service, shots, timeoutArg, sinceArg] = process.argv.slice(2);
const since = sinceArg ? Date.parse(sinceArg) : 0;
const timeout = Number(timeoutArg || 90000);
mkdirSync(shots, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
});
let code = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
  let navigations = 0;
  page.on('framenavigated', f => { if (f === page.mainFrame()) navigations += 1; });
  await page.goto(url);
  const total0 = Number(await page.textContent('#total'));
  // lines keep arriving: the counter grows without a reload
  await page.waitForFunction(t0 => Number(document.getElementById('total').textContent) > t0 + 50,
                             total0, { timeout, polling: 500 });
  // an anomaly of the incident's service shows up in the live table
  await page.waitForFunction(([svc, since]) => [...document.querySelectorAll('#anomalies tr')]
                               .some(tr => tr.cells.length > 1 && tr.cells[1].textContent === svc
                                           && Date.parse(tr.cells[0].textContent) >= since),
                             [service, since], { timeout, polling: 500 });
  await page.screenshot({ path: `${shots}/live.png`, fullPage: true });
  if (navigations !== 1) throw new Error(`the page navigated ${navigations} times`);
  for (const [name, path] of [['history', '/history'], ['templates', '/templates'], ['sql', '/sql?q=SELECT%20level%2C%20count(*)%20FROM%20logs%20GROUP%20BY%201']]) {
    const p = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await p.goto(new URL(path, url).toString());
    await p.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  }
  const first = await page.$eval('#anomalies a', a => a.getAttribute('href')).catch(() => null);
  if (first) {
    const p = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await p.goto(new URL(first, url).toString());
    await p.screenshot({ path: `${shots}/anomaly.png`, fullPage: true });
  }
  console.log(`ok: lines grew from ${total0}, ${service} anomaly shown without reload`);
} catch (e) {
  console.error(`browser check failed: ${e.message}`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
