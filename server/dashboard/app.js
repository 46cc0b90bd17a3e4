// tcpota dashboard: plain JavaScript on the JSON API (docs/api.md).
// The token lives in sessionStorage (this tab only) and goes out as the bearer
// header, never in a URL. Live updates come from GET /v1/events, read with
// fetch() so that it carries the header too. Text from devices is only ever
// put into the page as text (h() below), never as HTML.
'use strict';

const TOKEN_KEY = 'tcpota.token';
const PAGE = 50;             // devices per page
// A view redraws this long after an event (and again after events that came
// meanwhile). Longer than the server's summary reuse (API_SUMMARY_TTL_MS,
// 2 s): the summary a redraw reads is then never older than the event.
const REFRESH_MS = 2500;
const RECONNECT_MS = 2000;   // the event stream's retry
const STATES = ['seen', 'up-to-date', 'waiting', 'offered', 'downloading', 'verified',
  'updated', 'rolled-back', 'boot-failed', 'declined', 'failed'];

const $ = (id) => document.getElementById(id);
let view = null;             // {draw()} of the page shown
let stream = null;           // AbortController of the event stream
let timer = null, pending = false;

// ---- helpers ----

function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) {
    if (k !== null && k !== undefined && k !== false) e.append(k instanceof Node ? k : String(k));
  }
  return e;
}

const when = (t) => (t ? new Date(t * 1000).toISOString().replace('T', ' ').slice(0, 19) + 'Z' : '');
const state = (s) => h('span', { class: 'state ' + s }, s);
const num = (n) => h('td', { class: 'num' }, n);

function bar(parts, total) {
  const b = h('div', { class: 'bar' });
  for (const [cls, n] of parts) {
    const s = h('span', { class: cls, title: `${cls}: ${n}` });
    s.style.width = (total ? (100 * n) / total : 0) + '%';
    b.append(s);
  }
  return b;
}

function progress(d) {
  if (d.state !== 'downloading') return '';
  const p = h('div', { class: 'progress', 'data-percent': d.percent }, bar([['fill', d.percent]], 100));
  p.append(h('span', { class: 'muted' }, ` ${d.percent} %`));
  return p;
}

// A table; columns from numFrom on hold counts (right-aligned).
function table(head, rows, numFrom = Infinity) {
  return h('table', {}, h('thead', {}, h('tr', {}, head.map((c, i) => h('th', { class: i >= numFrom ? 'num' : '' }, c)))),
    h('tbody', {}, rows));
}

// ---- the API ----

class ApiError extends Error {}

// fetch() itself fails (a TypeError, "Failed to fetch") when no answer came.
const UNREACHABLE = 'The server cannot be reached: is tcpota serve running?';

// What an answer that is not the API's JSON means: libevent answers a body
// over --max-image with a page of its own.
function httpError(status) {
  if (status === 413) return 'the server refused the upload as too large: it takes images of at most its --max-image BYTES (default 64 MiB)';
  return `HTTP ${status}`;
}

async function api(method, path, body, headers) {
  const opt = { method, headers: { Authorization: 'Bearer ' + sessionStorage.getItem(TOKEN_KEY), ...headers } };
  if (body !== undefined) {
    opt.body = body instanceof ArrayBuffer ? body : JSON.stringify(body);
  }
  // A page's reads come again by themselves; an action (an upload, a
  // rollout's change) does not.
  const again = method === 'GET' ? ' The page tries again every 2 s.' : ' Nothing was changed: try again once it is back.';
  const r = await fetch(path, opt).catch(() => { throw new Error(UNREACHABLE + again); });
  const j = await r.json().catch(() => ({ error: httpError(r.status) }));
  if (r.status === 401) { logout('The server refused the token: ' + j.error); throw new ApiError(j.error); }
  if (!r.ok) throw new ApiError(j.error || httpError(r.status));
  return j;
}

// ---- live updates ----

function schedule() {
  if (timer) { pending = true; return; }
  pending = false;
  timer = setTimeout(() => {
    timer = null;
    if (view) view.draw().catch(fail);
    if (pending) schedule();
  }, REFRESH_MS);
}

function onDevice(d) {
  // Rows and fields showing this device change at once; the rest on redraw.
  for (const e of document.querySelectorAll('[data-dev]')) {
    if (e.dataset.dev !== d.id) continue;
    const s = e.querySelector('.dev-state'), p = e.querySelector('.dev-progress');
    if (s) s.replaceChildren(state(d.state));
    if (p) p.replaceChildren(progress(d));
    const r = e.querySelector('.dev-reason');
    if (r) r.textContent = d.reason;
  }
  if (view && view.live) schedule();
}

async function listen() {
  const ctl = new AbortController();
  stream = ctl;
  while (stream === ctl) {
    try {
      const r = await fetch('/v1/events', { headers: { Authorization: 'Bearer ' + sessionStorage.getItem(TOKEN_KEY) }, signal: ctl.signal });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      $('live').classList.remove('off');
      const rd = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await rd.read();
        if (done) break;
        buf += value;
        let at;
        while ((at = buf.indexOf('\n\n')) >= 0) {
          dispatch(buf.slice(0, at));
          buf = buf.slice(at + 2);
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    $('live').classList.add('off');
    if (stream !== ctl) return;
    await new Promise((ok) => setTimeout(ok, RECONNECT_MS));
    if (view) view.draw().catch(fail); // what happened while the stream was down
  }
}

function dispatch(block) {
  let ev = 'message', data = '';
  for (const line of block.split('\n')) {
    if (line.startsWith('event: ')) ev = line.slice(7);
    else if (line.startsWith('data: ')) data += line.slice(6);
  }
  if (!data) return;
  const j = JSON.parse(data);
  if (ev === 'device') onDevice(j);
  else if (ev === 'change' && view) schedule();
}

// ---- pages ----

function groupBy(rows, key) {
  const m = new Map();
  for (const r of rows) {
    const k = key(r);
    m.set(k, (m.get(k) || 0) + r.count);
  }
  return m;
}

function waveRows(ro, failures) {
  return ro.waves.map((w, i) => {
    const reasons = failures.filter((f) => f.rollout === ro.id && f.wave === i)
      .map((f) => h('div', { class: 'reason' }, `${f.count} × ${f.state}: ${f.reason}`));
    return h('tr', { class: 'wave' }, h('td', {}, `wave ${i + 1}: ${w.percent} %`, w.open ? '' : ' (not open)'),
      h('td', {}, bar([['updated', w.updated], ['downloading', w.downloading], ['offered', w.offered],
        ['failed', w.failed]], w.targeted)),
      num(w.targeted), num(w.offered), num(w.downloading), num(w.updated), num(w.failed),
      h('td', { class: 'reasons' }, reasons));
  });
}

function waveTable(ro, failures) {
  const t = table(['wave', '', 'targeted', 'offered', 'downloading', 'updated', 'failed', 'failure reasons'],
    waveRows(ro, failures), 2);
  t.querySelector('th:last-child').className = '';
  return t;
}

// A fleet no device has checked in with yet: what to do, not empty tables.
const NO_DEVICES = 'No device has checked in yet: point one at this server\'s device port (tcpota device --server HOST:PORT).';

const overview = {
  live: true,
  async draw() {
    const [s, ros] = await Promise.all([api('GET', '/v1/summary'), api('GET', '/v1/rollouts')]);
    const total = s.states.reduce((a, r) => a + r.count, 0);
    const byState = groupBy(s.states, (r) => r.state);
    const failed = s.failures.reduce((a, r) => a + r.count, 0);
    const models = [...new Set(s.states.map((r) => r.model))].sort();
    const used = STATES.filter((st) => byState.get(st));
    const active = ros.rollouts.filter((r) => r.state !== 'cancelled' && !r.superseded);
    const auth = s.auth_refused; // this server's, since it started (docs/api.md)
    render('Overview',
      h('div', { class: 'cards' },
        h('div', { class: 'card' }, h('b', { id: 'n-devices' }, total), 'devices'),
        h('div', { class: 'card' }, h('b', {}, byState.get('downloading') || 0), 'downloading'),
        h('div', { class: 'card' }, h('b', {}, byState.get('updated') || 0), 'updated'),
        h('div', { class: 'card' }, h('b', { id: 'n-failures' }, failed), 'failures in the last hour'),
        h('div', { class: 'card' }, h('b', { id: 'n-auth-refused' }, auth ? auth.total : 0), 'refused authentication (this server)')),
      h('h2', {}, 'Devices by model and state'),
      total ? table(['model', ...used], models.map((m) => {
        const c = groupBy(s.states.filter((r) => r.model === m), (r) => r.state);
        return h('tr', {}, h('td', {}, m), used.map((st) => num(c.get(st) || '')));
      }), 1) : h('p', { class: 'muted', id: 'no-devices' }, NO_DEVICES),
      h('h2', {}, 'Devices by model and version'),
      total ? table(['model', 'version', 'devices'], s.versions
        .map((r) => h('tr', {}, h('td', {}, r.model), h('td', {}, r.version), num(r.count))), 2)
        : h('p', { class: 'muted' }, 'none'),
      h('h2', {}, 'Rollouts that apply (active, paused or halted)'),
      active.length ? active.map((ro) => h('div', { class: 'panel', id: 'rollout-' + ro.id },
        h('b', {}, `rollout ${ro.id}: ${ro.version} for ${ro.model}${ro.group ? ' / ' + ro.group : ''} `), state(ro.state),
        waveTable(ro, s.rollout_failures))) : h('p', { class: 'muted' }, 'none'),
      h('h2', {}, 'Failures in the last hour (each one: a device may count more than once)'),
      s.failures.length ? table(['state', 'reason', 'times'],
        s.failures.map((f) => h('tr', {}, h('td', {}, state(f.state)), h('td', {}, f.reason), num(f.count))), 2)
        : h('p', { class: 'muted' }, 'none'),
      h('h2', {}, 'Refused authentication' + (auth ? ' since ' + when(auth.since) : '')),
      auth && auth.total ? h('div', { id: 'auth-refused' },
        h('p', { class: 'muted' }, Object.entries(auth.counts).map(([k, n]) => `${k}: ${n}`).join(', ')),
        auth.devices.length ? table(['device', 'last reason', 'address', 'last', 'refusals'],
          auth.devices.map((d) => h('tr', {},
            h('td', {}, d.id), h('td', {}, d.reason), h('td', {}, d.address), h('td', {}, when(d.last)),
            num(d.count))), 4)
          : h('p', { class: 'muted' }, 'no id to list: the devices refused have authenticated since, or gave no id (legacy req0/req1 devices under --require-auth; the server log has their addresses)'))
        : h('p', { class: 'muted' }, 'none'));
  },
};

const devices = {
  live: false, // rows update in place; a redraw would lose the reader's place
  filter: { q: '', model: '', state: '', group: '' },
  pages: [''], // the `after` of each page seen; the last is the current one
  models: null,
  async draw() {
    const f = this.filter, q = new URLSearchParams({ limit: PAGE });
    for (const k of ['q', 'model', 'state', 'group']) if (f[k]) q.set(k, f[k]);
    const after = this.pages[this.pages.length - 1];
    if (after) q.set('after', after);
    // The models for the filter come from the summary, once per visit: it
    // reads every device, a page reads only its own.
    const [r, s] = await Promise.all([api('GET', '/v1/devices?' + q), this.models ? null : api('GET', '/v1/summary')]);
    if (s) this.models = [...new Set(s.states.map((x) => x.model))].sort();
    const models = this.models;
    const first = (this.pages.length - 1) * PAGE;
    const redo = () => {
      // The filter goes into the address too (without a new history entry):
      // a reload or a copied link shows the same devices.
      const a = new URLSearchParams();
      for (const k of ['q', 'model', 'state', 'group']) if (f[k]) a.set(k, f[k]);
      history.replaceState(null, '', '#/devices' + (a.size ? '?' + a : ''));
      this.pages = ['']; note = ''; this.draw().catch(fail);
    };
    const input = (k, attrs) => h('input', { value: f[k], ...attrs, onchange: (e) => { f[k] = e.target.value.trim(); redo(); } });
    const select = (k, opts) => h('select', { id: 'f-' + k, onchange: (e) => { f[k] = e.target.value; redo(); } },
      h('option', { value: '' }, 'any'), opts.map((o) => h('option', { value: o, selected: o === f[k] }, o)));
    render('Devices',
      h('form', { class: 'inline', onsubmit: (e) => e.preventDefault() },
        h('label', {}, 'id starts with', input('q', { id: 'f-q', type: 'search' })),
        h('label', {}, 'model', select('model', models)),
        h('label', {}, 'state', select('state', STATES)),
        h('label', {}, 'group', input('group', { id: 'f-group' }))),
      h('div', { class: 'pager' },
        h('button', { type: 'button', disabled: this.pages.length === 1, onclick: () => { this.pages.pop(); this.draw().catch(fail); } }, '← previous'),
        h('span', { id: 'page-info' }, r.total ? `${first + 1}–${first + r.devices.length} of ${r.total}` : 'no devices'),
        h('button', { type: 'button', disabled: !r.next, onclick: () => { this.pages.push(r.next); this.draw().catch(fail); } }, 'next →')),
      table(['id', 'model', 'version', 'group', 'state', 'progress', 'reason', 'last seen'],
        r.devices.map((d) => h('tr', { 'data-dev': d.id },
          h('td', {}, h('a', { href: '#/device/' + encodeURIComponent(d.id) }, d.id)),
          h('td', {}, d.model), h('td', {}, d.version), h('td', {}, d.group),
          h('td', { class: 'dev-state' }, state(d.state)), h('td', { class: 'dev-progress' }, progress(d)),
          h('td', { class: 'dev-reason' }, d.reason), h('td', {}, when(d.last_seen))))));
  },
};

// The states that show a failure: what `device retry` can clear (docs/api.md).
const FAILED_STATES = ['failed', 'declined', 'rolled-back', 'boot-failed'];

function device(id) {
  return {
    live: true,
    async draw() {
      const d = await api('GET', '/v1/devices/' + encodeURIComponent(id));
      const row = (k, v, cls) => h('tr', {}, h('th', {}, k), h('td', { class: cls }, v));
      const retry = () => api('POST', '/v1/devices/' + encodeURIComponent(id) + '/retry')
        .then(() => this.draw()).catch(fail);
      // A removal cannot be taken back: asked first, saying what goes.
      const remove = () => {
        if (!confirm(`Remove device ${d.id}? ${d.has_secret ? 'Its record, history and secret go' : 'Its record and history go'}; `
          + 'rollouts keep counting what it finished. If it checks in again it is registered anew'
          + (d.has_secret ? ' (under --require-auth only with a new secret).' : '.'))) return;
        api('DELETE', '/v1/devices/' + encodeURIComponent(id))
          .then(() => { location.hash = '#/devices'; }).catch(fail);
      };
      render('Device ' + d.id,
        FAILED_STATES.includes(d.state)
          ? h('p', {}, h('button', { type: 'button', id: 'retry', onclick: retry },
            'Forget what it failed or declined'), ' (the server may then offer it that image again: tcpota device retry)')
          : '',
        h('table', { 'data-dev': d.id }, h('tbody', {},
          row('state', state(d.state), 'dev-state'), row('progress', progress(d), 'dev-progress'),
          row('reason', d.reason, 'dev-reason'), row('model', d.model), row('version', d.version),
          row('running image', d.running), row('group', d.group), row('address', `${d.address} (${d.protocol})`),
          row('image', d.image), row('bytes', `${d.bytes} of ${d.size}`),
          row('first seen', when(d.first_seen)), row('last seen', when(d.last_seen)),
          row('has a secret', d.has_secret ? 'yes' : 'no'))),
        h('h2', {}, 'History'),
        table(['at', 'state', 'image', 'detail'], d.history.map((e) =>
          h('tr', {}, h('td', {}, when(e.at)), h('td', {}, state(e.state)), h('td', {}, e.image.slice(0, 12)), h('td', {}, e.detail)))),
        h('p', {}, h('button', { type: 'button', id: 'remove', onclick: remove }, 'Remove this device'),
          ' (decommissioned or replaced: tcpota device rm)'));
    },
  };
}

const rollouts = {
  live: true,
  async draw() {
    const [ros, imgs, s] = await Promise.all([api('GET', '/v1/rollouts'), api('GET', '/v1/images'), api('GET', '/v1/summary')]);
    const act = (ro, verb) => h('button', { type: 'button', id: `${verb}-${ro.id}`, onclick: () => act_(ro.id, verb) }, verb);
    const act_ = (id, verb) => {
      // A cancel cannot be taken back: asked first (a click went straight through).
      if (verb === 'cancel' && !confirm(`Cancel rollout ${id}? A cancelled rollout cannot be paused or `
        + 'resumed again, and its devices are offered nothing more of it (create a rollout to offer its image again).')) return;
      api('POST', `/v1/rollouts/${id}/${verb}`).then(() => this.draw()).catch(fail);
    };
    const create = (e) => {
      e.preventDefault();
      const fd = new FormData(e.target), img = imgs.images.find((i) => i.id === fd.get('image'));
      const body = { image: fd.get('image'), model: img ? img.model : '' };
      if (fd.get('group')) body.group = fd.get('group');
      if (fd.get('waves')) body.waves = fd.get('waves').split(',').map(Number);
      if (fd.get('halt_at')) body.halt_at = Number(fd.get('halt_at'));
      // A version that is not semantic is offered only so (the API says).
      body.allow_downgrade = fd.get('allow_downgrade') === 'on';
      // The new rollout supersedes the one of the same model and group for
      // good (docs/fleet.md): asked first, naming it.
      const old = ros.rollouts.find((r) => r.model === body.model && (r.group || '') === (body.group || '')
        && r.state !== 'cancelled' && !r.superseded);
      if (old && !confirm(`Rollout ${old.id} (${old.version || 'image removed'}) is ${old.state} for ${old.model}`
        + `${old.group ? ' / ' + old.group : ''}: the new rollout supersedes it for good (its devices move to the new one, `
        + 'and it no longer applies). Create the new rollout?')) return;
      api('POST', '/v1/rollouts', body).then(() => this.draw()).catch(fail);
    };
    render('Rollouts',
      h('form', { class: 'inline', id: 'create-rollout', onsubmit: create },
        h('label', {}, 'image', h('select', { name: 'image', required: true },
          imgs.images.map((i) => h('option', { value: i.id }, `${i.version} (${i.model}, ${i.id.slice(0, 12)})`)))),
        h('label', {}, 'group (optional)', h('input', { name: 'group' })),
        h('label', {}, 'waves, %', h('input', { name: 'waves', placeholder: '100 (e.g. 10,50,100)' })),
        h('label', {}, 'halt at failed %', h('input', { name: 'halt_at', type: 'number', min: 0, max: 100, placeholder: '20' })),
        h('label', {}, 'allow downgrade', h('input', { name: 'allow_downgrade', type: 'checkbox' })),
        h('button', { type: 'submit' }, 'Create rollout')),
      ros.rollouts.map((ro) => h('div', { class: 'panel', id: 'rollout-' + ro.id },
        h('b', {}, `rollout ${ro.id}: ${ro.version || '(image removed)'} for ${ro.model}${ro.group ? ' / ' + ro.group : ''} `),
        state(ro.state), ro.superseded && ro.state !== 'cancelled' ? h('span', { class: 'muted' }, ' superseded') : '',
        ' ', ro.state === 'active' && !ro.superseded ? act(ro, 'pause') : '',
        (ro.state === 'paused' || ro.state === 'halted') && !ro.superseded ? act(ro, 'resume') : '',
        ro.state !== 'cancelled' ? act(ro, 'cancel') : '',
        h('span', { class: 'muted' }, ` created ${when(ro.created_at)}`),
        // Why it stands as it does (the API's rollout_explain): the next
        // wave's conditions, a halt's failures and what to do.
        ro.status ? h('p', { class: 'status' }, ro.status) : '',
        waveTable(ro, s.rollout_failures))));
  },
};

const images = {
  live: false,
  async draw() {
    const imgs = await api('GET', '/v1/images');
    const upload = async (e) => {
      e.preventDefault();
      const fd = new FormData(e.target), file = fd.get('file'), man = fd.get('manifest');
      const q = new URLSearchParams();
      for (const k of ['version', 'model']) if (fd.get(k)) q.set(k, fd.get(k));
      const hdr = {};
      if (man && man.size) {
        const b = new Uint8Array(await man.arrayBuffer());
        hdr['Tcpota-Manifest'] = btoa(String.fromCharCode(...b));
      }
      api('POST', '/v1/images' + (q.size ? '?' + q : ''), await file.arrayBuffer(), hdr)
        .then(() => this.draw()).catch(fail);
    };
    render('Images',
      h('form', { class: 'inline', id: 'upload', onsubmit: upload },
        h('label', {}, 'image file', h('input', { name: 'file', type: 'file', required: true })),
        h('label', {}, 'manifest (signed images)', h('input', { name: 'manifest', type: 'file' })),
        h('label', {}, 'version (unsigned)', h('input', { name: 'version' })),
        h('label', {}, 'model (unsigned)', h('input', { name: 'model' })),
        h('button', { type: 'submit' }, 'Upload')),
      table(['id', 'version', 'model', 'size', 'signed', 'added', 'rollouts'], imgs.images.map((i) =>
        h('tr', {}, h('td', { title: i.id }, i.id.slice(0, 12)), h('td', {}, i.version), h('td', {}, i.model),
          num(i.size), h('td', {}, i.signed ? 'yes' : 'no'), h('td', {}, when(i.added_at)), h('td', {}, i.rollouts.join(', '))))));
  },
};

// ---- frame ----

// What route() could not follow in the address (an unknown page or filter),
// said above the page it shows instead until the next route.
let note = '';

function render(title, ...kids) {
  // What the user typed or chose in a form outlives a redraw: a change made
  // elsewhere (an event) redraws the page, and a file chosen for an upload
  // was lost with the old form (its Upload then did nothing).
  const kept = [...document.querySelectorAll('#view form[id] [name]')]
    .map((e) => [e.form.id, e.name, e.type === 'file' ? e.files : e.value]);
  $('view').replaceChildren(h('h2', {}, title), h('p', { id: 'msg', class: 'error', role: 'alert' }),
    ...(note ? [h('p', { id: 'note', class: 'note', role: 'status' }, note)] : []), ...kids.flat());
  for (const [form, name, v] of kept) {
    const e = $(form) && $(form).querySelector(`[name="${name}"]`);
    if (!e) continue;
    if (e.type === 'file') e.files = v;
    else if (e.tagName !== 'SELECT' || [...e.options].some((o) => o.value === v)) e.value = v;
  }
}

function fail(e) {
  const m = $('msg') || $('view');
  if (!(e instanceof ApiError) || sessionStorage.getItem(TOKEN_KEY)) m.textContent = e.message;
}

// The devices' filter from an address's query (#/devices?state=failed&model=x):
// a state that is not one is dropped and said, as is a key that is no filter
// (before, any query showed the overview, with no page highlighted).
function filterOf(query) {
  const f = { q: '', model: '', state: '', group: '' }, wrong = [];
  for (const [k, v] of new URLSearchParams(query)) {
    if (!(k in f)) wrong.push(`"${k}" is not a filter (they are ${Object.keys(f).join(', ')})`);
    else if (k === 'state' && v && !STATES.includes(v)) wrong.push(`"${v}" is not a state (they are ${STATES.join(', ')})`);
    else f[k] = v;
  }
  return [f, wrong.length ? wrong.join('; ') + ': left out of the filter.' : ''];
}

// An address a page cannot show (#/device/ with no id): its message alone.
const nowhere = (title, msg, href, what) => ({
  async draw() { render(title, h('p', { class: 'error', role: 'alert' }, msg, ' ', h('a', { href }, what))); },
});

function route() {
  const [path, query] = location.hash.split(/\?(.*)/s);
  // The id is all after #/device/: one typed with a '/' in it (x/y) was cut
  // at it (the page's own links escape it: %2F).
  const [, page, ...rest] = path.split('/');
  if (rest.length > 1 && rest[rest.length - 1] === '') rest.pop(); // #/device/abc/: abc
  const arg = rest.join('/');
  const pages = { overview, devices, rollouts, images };
  let id = arg || '', on = page || 'overview';
  try { id = decodeURIComponent(id); } catch { /* a malformed escape: the id as written */ }
  note = '';
  if (page === 'device') {
    view = id ? device(id) : nowhere('Device', 'No device id in the address (#/device/ID).', '#/devices', 'The devices');
  } else if (pages[page] || !page) {
    view = pages[on];
  } else {
    view = overview;
    on = 'overview';
    note = `There is no page "${page}" (the pages: ${Object.keys(pages).join(', ')}, device/ID); here is the overview.`;
  }
  if (page === 'devices' && query !== undefined) {
    [devices.filter, note] = filterOf(query);
    devices.pages = [''];
  }
  devices.models = null;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('on', a.hash === '#/' + on);
  // The last page goes at once: a page that fails to load (an unknown
  // device) shows its error alone, not under the last page's title.
  $('view').replaceChildren(h('p', { id: 'msg', class: 'error', role: 'alert' }));
  view.draw().catch(fail);
}

function logout(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (stream) stream.abort();
  stream = null;
  view = null;
  $('view').replaceChildren();
  $('nav').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = why || '';
}

function start() {
  $('login').hidden = true;
  $('nav').hidden = false;
  listen();
  route();
}

$('login').addEventListener('submit', async (e) => {
  e.preventDefault();
  const t = $('token').value.trim();
  // Checked here: fetch() refuses a header with characters beyond Latin-1
  // as if the server could not be reached.
  if (!/^[0-9a-fA-F]{64}$/.test(t)) {
    $('login-error').textContent = 'The token is the 64 hex digits of DIR/api.token on the server; this is not one (' +
      `${t.length} characters${/[^0-9a-fA-F]/.test(t) ? ', not all of them hex digits' : ''}).`;
    return;
  }
  const r = await fetch('/v1/summary', { headers: { Authorization: 'Bearer ' + t } }).catch(() => null);
  if (!r || !r.ok) {
    const j = r ? await r.json().catch(() => ({})) : {};
    $('login-error').textContent = r ? (r.status === 401 ? 'Wrong token: ' : '') + (j.error || `HTTP ${r.status}`)
      : UNREACHABLE;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, t);
  $('token').value = '';
  start();
});
$('logout').addEventListener('click', () => logout());
window.addEventListener('hashchange', () => { if (sessionStorage.getItem(TOKEN_KEY)) route(); });
if (sessionStorage.getItem(TOKEN_KEY)) start(); else logout();
