// Screenshots of the Snakemake report of the default study (docs/screenshots/*.png), in headless Chromium:
//   make run && .venv/bin/snakemake all_tables --report /tmp/report.html
//   npm install playwright-core && REPORT=/tmp/report.html node docs/screenshots/take.js   (Chromium at /usr/bin/chromium)
const { chromium } = require('playwright-core');
(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1400 } });
  await page.goto('file://' + (process.env.REPORT || '/tmp/report.html'));
  await page.waitForTimeout(3000);
  await page.screenshot({ path: 'docs/screenshots/report_landing.png' });
  await page.getByText('digits', { exact: true }).first().click();
  await page.waitForTimeout(800);
  await page.getByText('Claims', { exact: true }).first().click();
  await page.waitForTimeout(800);
  await page.locator('tr:has-text("claims.html") a').first().click();
  await page.waitForTimeout(2500);
  await page.screenshot({ path: 'docs/screenshots/report_claims.png' });
  await page.goto('file://' + (process.env.REPORT || '/tmp/report.html'));
  await page.waitForTimeout(2500);
  await page.getByText('digits', { exact: true }).first().click();
  await page.waitForTimeout(800);
  await page.getByText('Figures', { exact: true }).first().click();
  await page.waitForTimeout(800);
  await page.locator('tr:has-text("fig_curves_rdml_table.png") a').first().click();
  await page.waitForTimeout(2500);
  await page.screenshot({ path: 'docs/screenshots/report_figure.png' });
  await browser.close();
})();
