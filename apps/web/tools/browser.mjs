// Drives the camera page in headless Chromium (Debian's /usr/bin/chromium via playwright-core; never downloads a
// browser) with a fake camera fed from a Y4M file. Used by tests/test_web.py, tests/test_serve.py and
// benchmarks/web_latency.py.
//
// Usage: node browser.mjs JOB.json   (prints one JSON line with what the page showed)
// JOB: {url, y4m, frames?: N camera frames to wait for, still?: image path, screenshot?: png path,
//       timeout_ms?, chromium?: path, args?: [extra flags]}
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const timeout = job.timeout_ms ?? 120000;
const args = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-default-apps', '--disable-extensions',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  ...(job.y4m ? [`--use-file-for-fake-video-capture=${job.y4m}`] : []),
  ...(job.args ?? []),
];
const profile = mkdtempSync(join(tmpdir(), 'edge-sdk-chromium-'));
const out = { requests: [], console: [], page_errors: [] };
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: job.chromium ?? '/usr/bin/chromium', headless: true, args,
    ignoreHTTPSErrors: Boolean(job.ignore_https_errors), viewport: { width: 1100, height: 760 },
  });
  const page = context.pages()[0] ?? await context.newPage();
  page.on('request', (r) => out.requests.push(r.url()));
  page.on('console', (m) => out.console.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => out.page_errors.push(String(e)));
  await page.goto(job.url, { timeout });
  await page.waitForFunction(() => ['camera', 'ready', 'still', 'error'].includes(document.body.dataset.state),
    null, { timeout });
  out.state = await page.evaluate(() => document.body.dataset.state);
  if (out.state === 'error') {
    out.error = await page.textContent('#error');
  } else {
    if (job.frames) {
      await page.waitForFunction((n) => window.edgeSdk.state.frames >= n, job.frames, { timeout });
      if (job.wait_done) await page.waitForFunction(() => window.edgeSdk.state.serverDone, null, { timeout });
      out.camera = await page.evaluate(() => {
        const s = window.edgeSdk.state;
        return { frames: s.frames, p50: s.inference.p50, p90: s.inference.p90, fps: s.total.fps,
          inference_ms: s.inference.values.slice(), top: s.last.top, load_ms: s.engine.loadMs, first_ms: s.firstMs,
          device: s.device, server_done: s.serverDone };
      });
    }
    if (job.still) {
      await page.setInputFiles('#file', job.still);
      await page.waitForFunction(() => document.body.dataset.state === 'still', null, { timeout });
      out.still = await page.evaluate(() => {
        const l = window.edgeSdk.state.last;
        return { logits: l.logits, normalized: Array.from(l.normalized), input: Array.from(l.input), top: l.top,
          image: l.image, timings: l.timings };
      });
    }
    out.text = await page.evaluate(() => Object.fromEntries(
      ['lat-frame', 'lat-pre', 'lat-total', 'fps', 'p50', 'p90', 'budget', 'verdict', 'frames', 'backend-used',
        'device', 'model', 'status'].map((id) => [id, document.getElementById(id).textContent])));
    out.labels_shown = await page.$$eval('#topk li', (els) => els.map((e) => e.textContent));
  }
  if (job.screenshot) await page.screenshot({ path: job.screenshot });
} catch (e) {
  out.driver_error = String(e && e.stack || e);
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(out) + '\n');
