// dashboard.test.mjs - the dashboard in a real browser (Debian's chromium,
// headless, driven by playwright-core) against a real `tcpota serve --data`
// and real `tcpota device` processes on loopback, one of them behind
// tcpota-proxy's bandwidth cap so that its transfer can be watched.
// Env: TCPOTA, PROXY (binaries), ARTIFACTS (screenshots go there), CHROMIUM.
// Run by run.sh; every check prints "ok: ..." or the test fails.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const TCPOTA = process.env.TCPOTA, PROXY = process.env.PROXY;
const ARTIFACTS = process.env.ARTIFACTS || 'browser-artifacts';
const IMAGE_BYTES = 2 << 20;      // 2 MiB ...
const SLOW_RATE = 400000;         // ... at 400 kB/s: about 5 s of progress to watch
const WAIT_MS = 20000;            // any single expectation
const MAX_IMAGE = 3 << 20;        // the server's --max-image: room for the image, not for TOO_BIG
const TOO_BIG = 4 << 20;
const work = mkdtempSync(join(tmpdir(), 'tcpota-browser-'));
const procs = [];
let browser = null, page = null;

// The servers and devices die with this process, however it ends (a closed
// stdout must not kill it before its clean-up either).
process.on('exit', () => { for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL'); });
process.stdout.on('error', () => {});
process.stderr.on('error', () => {});

const ok = (what) => console.log('ok: ' + what);
function fail(what) { throw new Error(what); }

// Starts a process; its stderr+stdout go to work/<name>.log. Resolves the
// exit code through .done.
function run(name, cmd, args) {
  const log = join(work, name + '.log');
  writeFileSync(log, '');
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const add = (d) => writeFileSync(log, d, { flag: 'a' });
  p.stdout.on('data', add);
  p.stderr.on('data', add);
  p.done = new Promise((ok) => p.on('exit', (code) => ok(code)));
  p.log = () => readFileSync(log, 'utf8');
  procs.push(p);
  return p;
}

async function waitFor(what, fn, ms = WAIT_MS) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) fail('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function device(id, port, extra = []) {
  return run(id, TCPOTA, ['device', '--server', '127.0.0.1:' + port, '--flash', join(work, id), '--id', id,
    '--model', 'esp32', '--factory-version', '1.0.0', '--slot-size', String(4 << 20), '--progress', 'none',
    '--backoff-min-ms', '50', '--backoff-max-ms', '500', ...extra]);
}

async function deviceOk(p) {
  const rc = await p.done;
  if (rc !== 0) fail(`device exited ${rc}: ${p.log()}`);
}

async function shot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, name + '.png'), fullPage: true });
}

async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  const data = join(work, 'data');
  const server = run('server', TCPOTA, ['serve', '--listen', '127.0.0.1:0', '--data', data, '--api', '127.0.0.1:0', '--no-progress',
    '--max-image', String(MAX_IMAGE)]);
  const line = await waitFor('the server to listen', () => server.log().match(/listening on [^ ]*:(\d+),.*API on [^ ]*:(\d+)/));
  const [devPort, apiPort] = [line[1], line[2]];
  const base = `http://127.0.0.1:${apiPort}`;
  const token = readFileSync(join(data, 'api.token'), 'utf8').trim();
  const proxy = run('proxy', PROXY, ['--listen', '127.0.0.1:0', '--upstream', '127.0.0.1:' + devPort, '--rate', String(SLOW_RATE), '--quiet']);
  const proxyPort = (await waitFor('the proxy to listen', () => proxy.log().match(/listening on [^ ]*:(\d+)/)))[1];
  const image = join(work, 'fw.bin');
  writeFileSync(image, randomBytes(IMAGE_BYTES));

  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(WAIT_MS);
  // An error the page did not catch, or one the browser logs (a refused
  // resource), fails the test.
  const pageErrors = [], consoleErrors = [];
  page.on('pageerror', (e) => { console.error('page error: ' + e.message); pageErrors.push(e.message); });
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(`${m.text()} (${m.location().url})`); });

  // ---- login ----
  await page.goto(base + '/');
  await page.waitForTimeout(500); // the browser's own requests (a favicon) are done
  if (consoleErrors.length) fail('the login page logs errors: ' + consoleErrors.join('; '));
  // fetch() refuses the second as a header: without the page's check it
  // would say the server cannot be reached. Each refusal names its own
  // length, so the first one's text cannot pass for the second's.
  for (const t of ['wrong', 'é✓'.repeat(32)]) {
    await page.fill('#token', t);
    await page.click('#login button');
    const want = `this is not one (${t.length} characters, not all of them hex digits)`;
    await waitFor(`the refusal of ${t}`, async () => (await page.textContent('#login-error')).includes(want));
  }
  await page.fill('#token', 'f'.repeat(64));
  await page.click('#login button');
  await waitFor('the refusal', async () => /Wrong token/.test(await page.textContent('#login-error')));
  if (await page.isVisible('#nav')) fail('a wrong token opened the dashboard');
  if (await page.evaluate(() => sessionStorage.getItem('tcpota.token'))) fail('a wrong token was kept');
  await shot(page, 'login-refused');
  await page.fill('#token', token);
  await page.click('#login button');
  await page.waitForSelector('#n-devices', { timeout: WAIT_MS });
  // No device yet: the overview says what to do, not empty tables.
  if ((await page.textContent('#n-devices')) !== '0') fail('an empty fleet counts devices');
  if (!/No device has checked in yet/.test(await page.textContent('#no-devices'))) fail('an empty fleet shows no advice');
  if (await page.$('#view table')) fail('an empty fleet shows empty tables');
  // Devices known before the rollout (the table lists them from the start).
  await Promise.all(['slow-1', 'late-1', 'bad-1'].map((id) => deviceOk(device(id, devPort))));
  // A check-in of a device with nothing to do is no event: the page is read
  // again (the server reuses a summary for up to 2 s).
  await waitFor('the overview to count 3 devices', async () => {
    await page.reload();
    await page.waitForSelector('#n-devices');
    return (await page.textContent('#n-devices')) === '3' || (await new Promise((r) => setTimeout(r, 250)), false);
  });
  if (await page.$('#no-devices')) fail('the advice for an empty fleet stays with 3 devices');
  if (page.url().includes(token)) fail('the token is in the URL');
  if ((await page.evaluate(() => sessionStorage.getItem('tcpota.token'))) !== token) fail('token not in sessionStorage');
  ok('login: a wrong token is refused, the right one opens the overview (token in sessionStorage, not the URL)');

  // ---- images: upload through the page ----
  await page.click('nav a[href="#/images"]');
  await page.setInputFiles('#upload input[name=file]', image);
  await page.fill('#upload input[name=version]', '2.0.0');
  await page.fill('#upload input[name=model]', 'esp32');
  await page.click('#upload button');
  await page.waitForSelector('text=2.0.0', { timeout: WAIT_MS });
  const imgs = await (await fetch(base + '/v1/images', { headers: { Authorization: 'Bearer ' + token } })).json();
  if (imgs.images.length !== 1 || imgs.images[0].size !== IMAGE_BYTES) fail('upload: ' + JSON.stringify(imgs));
  await shot(page, 'images');
  ok('images: an upload through the page is stored and listed');
  writeFileSync(join(work, 'big.bin'), randomBytes(TOO_BIG));
  await page.setInputFiles('#upload input[name=file]', join(work, 'big.bin'));
  await page.fill('#upload input[name=version]', '2.0.1');
  await page.fill('#upload input[name=model]', 'esp32');
  // The first upload's change event redraws the page REFRESH_MS (2.5 s)
  // later: what was chosen and typed outlives it (before, the chosen file
  // was lost and Upload did nothing).
  await page.waitForTimeout(3000);
  if (await page.inputValue('#upload input[name=version]') !== '2.0.1') fail('a redraw lost the typed version');
  if ((await page.textContent('#view')).includes('null')) fail('the page shows "null": ' + await page.textContent('#view'));
  await page.click('#upload button');
  await waitFor('the refusal of an image over --max-image', async () => /--max-image/.test(await page.textContent('#msg')));
  ok('images: an upload over --max-image says so');

  // ---- rollouts: create ----
  await page.click('nav a[href="#/rollouts"]');
  await page.waitForSelector('#create-rollout select option', { state: 'attached' });
  // Downgrades allowed from the page too (an image whose version is not
  // semantic needs it; the form had no way to say it).
  await page.check('#create-rollout input[name=allow_downgrade]');
  await page.click('#create-rollout button');
  await page.waitForSelector('#rollout-1 #pause-1', { timeout: WAIT_MS });
  const ro1 = await (await fetch(base + '/v1/rollouts/1', { headers: { Authorization: 'Bearer ' + token } })).json();
  if (ro1.allow_downgrade !== true) fail('the page\'s allow downgrade was not sent: ' + JSON.stringify(ro1));
  // It says why it stands as it does (GET /v1/rollouts' status).
  if (!/every wave is open|opens when wave 1 has/.test(await page.textContent('#rollout-1 .status')))
    fail('rollout 1 shows no status: ' + await page.textContent('#rollout-1'));
  ok('rollouts: created from the image through the page; its status shown');

  // ---- a device's progress bar moves during a real transfer ----
  await page.click('nav a[href="#/devices"]');
  await page.waitForSelector('tr[data-dev="slow-1"]');
  await page.evaluate(() => { window.notReloaded = true; });
  const slow = device('slow-1', proxyPort);
  const seen = new Set();
  await waitFor('two progress values between 0 and 100 %', async () => {
    const p = await page.getAttribute('tr[data-dev="slow-1"] .progress', 'data-percent').catch(() => null);
    if (p !== null && +p > 0 && +p < 100) seen.add(+p);
    if (seen.size === 1 && !(await page.isVisible('#shot-taken'))) {
      await shot(page, 'devices-downloading');
      await page.evaluate(() => document.body.append(Object.assign(document.createElement('i'), { id: 'shot-taken' })));
    }
    return seen.size >= 2;
  });
  await deviceOk(slow);
  await waitFor('slow-1 updated', async () => /updated|verified/.test(await page.textContent('tr[data-dev="slow-1"] .dev-state')));
  if (!(await page.evaluate(() => window.notReloaded))) fail('the page reloaded');
  ok(`devices: slow-1's bar moved through ${[...seen].sort((a, b) => a - b).join(', ')} % live, without a reload`);

  // ---- pause by a click; a device is then offered nothing ----
  await page.click('nav a[href="#/rollouts"]');
  await page.click('#pause-1');
  await page.waitForSelector('#rollout-1 .state.paused', { timeout: WAIT_MS });
  const late = device('late-1', devPort);
  await deviceOk(late);
  // NO_UPDATE says why: a paused rollout is "not yet", not "up to date".
  if (!/no update yet, running 1\.0\.0: an update applies, but not yet/.test(late.log())) {
    fail('late-1 under a paused rollout: ' + late.log());
  }
  if (!/\[late-1 [^\]]*\] decision: waiting: rollout 1/.test(server.log())) fail('server did not log late-1 waiting');
  await shot(page, 'rollouts-paused');
  ok('rollouts: paused by a click; a real device then gets NO_UPDATE and stays on 1.0.0');

  // ---- a failure reason appears after a rolled-back device reports ----
  await page.click('#resume-1');
  await page.waitForSelector('#rollout-1 .state.active', { timeout: WAIT_MS });
  const bad = device('bad-1', devPort, ['--health', 'fail']);
  await bad.done; // exits 1: its update failed
  if (!/roll/i.test(bad.log())) fail('bad-1 did not roll back: ' + bad.log());
  await waitFor('the failure reason on the rollouts page', async () =>
    /rolled-back: health check failed/.test(await page.textContent('#rollout-1 .reasons')));
  await shot(page, 'rollouts');
  ok('rollouts: the rolled-back device\'s reason appears in its wave, live');

  await page.click('nav a[href="#/overview"]');
  await page.waitForSelector('#n-failures');
  if ((await page.textContent('#n-failures')) !== '1') fail('overview: failures in the last hour is not 1');
  // History lines, not devices: the table says so (a trial read them as devices).
  if (!/Failures in the last hour \(each one: a device may count more than once\)\s*statereasontimes/
    .test(await page.textContent('#view'))) fail('overview: the failures table is not headed as failures each');
  await shot(page, 'overview');
  await page.goto(base + '/#/device/bad-1');
  await page.waitForSelector('text=reported: rolled back', { timeout: WAIT_MS });
  await shot(page, 'device');
  ok('overview counts the failure of the last hour; the device page shows its history');

  // A device refused for authentication never checks in: the overview
  // counts it apart (before: nowhere), and names it.
  const made = await fetch(base + '/v1/devices/sec-1/secret', { method: 'POST', headers: { Authorization: 'Bearer ' + token } });
  if (made.status !== 201) fail('POST /v1/devices/sec-1/secret: ' + made.status);
  const sec = device('sec-1', devPort, ['--max-attempts', '1']);
  if ((await sec.done) === 0) fail('sec-1 without its secret was served: ' + sec.log());
  await page.goto(base + '/#/overview');
  await waitFor('the overview to count the refused authentication', async () => {
    await page.reload();
    await page.waitForSelector('#n-auth-refused');
    return (await page.textContent('#n-auth-refused')) === '1' || (await new Promise((r) => setTimeout(r, 250)), false);
  });
  if (!/sec-1\s*no-proof\s*127\.0\.0\.1/.test(await page.textContent('#auth-refused'))) {
    fail('the refused device is not listed: ' + (await page.textContent('#auth-refused')));
  }
  await shot(page, 'overview-auth-refused');
  ok('overview counts and lists a device refused for authentication');

  await page.click('nav a[href="#/images"]');
  await page.waitForSelector('#upload');
  await page.goto(base + '/#/device/no-such-dev');
  await waitFor('the unknown device\'s message', async () => /no device no-such-dev/.test(await page.textContent('#view')));
  if (await page.$('#upload')) fail('an unknown device\'s page shows the images page under its message');
  // An id typed with a '/' in it is the whole id, not its part before the '/'.
  await page.goto(base + '/#/device/no/such-dev');
  await waitFor('the typed id with a slash', async () => /no device no\/such-dev/.test(await page.textContent('#view')));
  await page.goto(base + '/#/device/bad-1/'); // a trailing '/' is no part of the id
  await page.waitForSelector('text=reported: rolled back', { timeout: WAIT_MS });
  ok('an unknown device\'s page shows its message alone (a typed id with a slash whole, a trailing one dropped)');

  // Addresses a page cannot follow: said in words (before: the API's "no
  // such path /v1/devices/", and the overview with no page highlighted).
  await page.goto(base + '/#/device/');
  await waitFor('the empty device id\'s message', async () => /No device id in the address/.test(await page.textContent('#view')));
  if (/no such path/.test(await page.textContent('#view'))) fail('#/device/ shows the API\'s message');
  await page.goto(base + '/#/devices?state=bogus&model=esp32');
  await waitFor('the dropped filter\'s note', async () => /"bogus" is not a state .*left out of the filter/.test(await page.textContent('#view').catch(() => '')));
  if (!(await page.$('nav a.on[href="#/devices"]'))) fail('#/devices?state=bogus: the devices page is not the one highlighted');
  if ((await page.$eval('#f-state', (e) => e.value)) !== '') fail('#/devices?state=bogus: the state filter is not dropped');
  if ((await page.$eval('#f-model', (e) => e.value)) !== 'esp32') fail('#/devices?model=esp32: the model filter is not taken');
  await page.goto(base + '/#/devices?state=rolled-back');
  await waitFor('the devices filtered by a state from the address', async () =>
    (await page.$eval('#f-state', (e) => e.value).catch(() => '')) === 'rolled-back' && /bad-1/.test(await page.textContent('#view')));
  if (await page.$('#note')) fail('a valid filter from the address shows a note');
  // A filter chosen on the page goes into the address: a reload keeps it.
  await page.selectOption('#f-state', 'updated');
  await waitFor('the chosen state in the address', async () => /[?&]state=updated(&|$)/.test(await page.evaluate(() => location.hash)));
  await page.reload();
  await waitFor('the chosen state after a reload', async () =>
    (await page.$eval('#f-state', (e) => e.value).catch(() => '')) === 'updated');
  ok('#/device/ with no id, and a state from the address that is not one, are said in words');

  // A failed device's page offers `device retry`: a click forgets what it
  // failed, its state becomes seen, the history says why; the button goes.
  await page.goto(base + '/#/device/bad-1');
  await page.waitForSelector('#retry', { timeout: WAIT_MS });
  await page.click('#retry');
  await page.waitForSelector('.dev-state .state.seen', { timeout: WAIT_MS });
  await page.waitForSelector('text=its failed images were forgotten (device retry)', { timeout: WAIT_MS });
  if (await page.$('#retry')) fail('the retry button stays on a device that shows no failure');
  ok('device page: a failed device\'s failures forgotten by a click (device retry)');

  // ---- a superseding create and a cancel are asked first; No changes nothing ----
  await page.goto(base + '/#/rollouts');
  await page.waitForSelector('#cancel-1', { timeout: WAIT_MS });
  let asked = '';
  const answer = (yes) => page.once('dialog', (d) => { asked = d.message(); (yes ? d.accept() : d.dismiss()).catch(() => {}); });
  answer(false);
  await page.click('#create-rollout button');
  await waitFor('the question before a rollout that supersedes rollout 1', async () => asked !== '');
  if (!/^Rollout 1 \(.*\) is active for esp32: the new rollout supersedes it for good/.test(asked)) fail('superseding asked: ' + asked);
  asked = '';
  answer(false);
  await page.click('#cancel-1');
  await waitFor('the question before a cancel', async () => asked !== '');
  if (!/^Cancel rollout 1\? A cancelled rollout cannot be paused or resumed again/.test(asked)) fail('cancel asked: ' + asked);
  await page.waitForTimeout(500);
  const ros = await (await fetch(base + '/v1/rollouts', { headers: { Authorization: 'Bearer ' + token } })).json();
  if (ros.rollouts.length !== 1 || ros.rollouts[0].state !== 'active') fail('answered No, yet: ' + JSON.stringify(ros.rollouts.map((r) => [r.id, r.state])));
  answer(true);
  await page.click('#cancel-1');
  await page.waitForSelector('#rollout-1 .state.cancelled', { timeout: WAIT_MS });
  ok('rollouts: a create that supersedes and a cancel are asked first; No changes nothing, Yes cancels');

  // A device's removal is asked first, saying what goes; No keeps it, Yes
  // removes it and shows the devices without it.
  await page.goto(base + '/#/device/bad-1');
  await page.waitForSelector('#remove', { timeout: WAIT_MS });
  asked = '';
  answer(false);
  await page.click('#remove');
  await waitFor('the question before a removal', async () => asked !== '');
  if (!/^Remove device bad-1\? Its record and history go; rollouts keep counting what it finished/.test(asked)) fail('remove asked: ' + asked);
  await page.waitForTimeout(500);
  const still = await fetch(base + '/v1/devices/bad-1', { headers: { Authorization: 'Bearer ' + token } });
  if (still.status !== 200) fail('answered No, yet bad-1 is gone: ' + still.status);
  answer(true);
  await page.click('#remove');
  await waitFor('the devices page after the removal', async () => (await page.evaluate(() => location.hash)) === '#/devices');
  await page.waitForSelector('#page-info', { timeout: WAIT_MS });
  const gone = await fetch(base + '/v1/devices/bad-1', { headers: { Authorization: 'Bearer ' + token } });
  if (gone.status !== 404) fail('answered Yes, yet bad-1 is there: ' + gone.status);
  if (await page.$('tr[data-dev="bad-1"]')) fail('the devices page still lists bad-1 after its removal');
  ok('device page: a removal is asked first; No keeps the device, Yes removes it (device rm)');

  server.kill('SIGTERM'); // with the page's event stream open
  const rc = await server.done;
  if (rc !== 0) fail(`the server exited ${rc} on SIGTERM (its event streams must end cleanly)`);
  ok('the server stops cleanly with dashboards connected');
  await waitFor('the page to say the server is gone', async () => /cannot be reached/.test(await page.textContent('#msg')));
  if (pageErrors.length) fail('errors the page did not catch: ' + pageErrors.join('; '));
  ok('a page whose server stopped says so, with no error it did not catch');
}

try {
  await main();
} catch (e) {
  console.error('FAIL: ' + e.message);
  if (page) {
    console.error('page says: ' + (await page.textContent('#view').catch(() => '?')).slice(0, 1000));
    await shot(page, 'failure').catch(() => {});
  }
  for (const p of procs) console.error(`--- ${p.spawnargs.slice(0, 2).join(' ')}\n${p.log().slice(-(+process.env.LOG_TAIL || 2000))}`);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
}
