// The simmask dashboard: plain JavaScript over the local API.
// The token lives in sessionStorage (this tab only) and goes out as a
// bearer header; the live feed is read with fetch streaming because
// EventSource cannot send headers; it resumes from the last event id it
// saw (Last-Event-ID), so a dropped connection leaves no gap. Real numbers
// only ever travel in request bodies, never in URLs; everything shown is
// set as text.
//
// Every string comes from a catalogue per language (lang/<code>.json),
// chosen from the browser's languages or the switch on the page; dates
// and numbers are formatted in that locale (Intl), Arabic is laid out
// right to left, and phone numbers always read left to right.
'use strict';

const TOKEN_KEY = 'simmask.token';
const LANG_KEY = 'simmask.lang';
const PAGE_SIZE = 50;
const FEED_MAX = 200;
// How many of the latest events the feed starts with.
const FEED_RECENT = 50;
// How often the bank's cards and the store's banner are looked at again.
const BANK_REFRESH_MS = 5000;
const LANGUAGES = { en: 'English', fr: 'Français', es: 'Español', pt: 'Português', ar: 'العربية' };
const RIGHT_TO_LEFT = new Set(['ar']);

const i18n = { lang: 'en', strings: {}, english: {} };

async function catalogue(lang) {
  const response = await fetch('/dashboard/lang/' + lang + '.json');
  if (!response.ok) throw new Error('language ' + lang + ': ' + response.status);
  return response.json();
}

// The browser's first language we have, else English.
function preferredLanguage() {
  const stored = localStorage.getItem(LANG_KEY);
  if (stored && LANGUAGES[stored]) return stored;
  for (const tag of navigator.languages || [navigator.language || 'en']) {
    const base = String(tag).toLowerCase().split('-')[0];
    if (LANGUAGES[base]) return base;
  }
  return 'en';
}

function formatNumber(value) {
  return typeof value === 'number' ? new Intl.NumberFormat(i18n.lang).format(value) : value;
}

// A string of the catalogue with {name} filled in; a plural entry is
// picked by Intl.PluralRules from params.count. English stands in for a
// string a catalogue lacks.
function t(key, params) {
  params = params || {};
  let entry = i18n.strings[key];
  if (entry === undefined) entry = i18n.english[key];
  if (entry === undefined) return key;
  if (typeof entry === 'object') {
    const category = new Intl.PluralRules(i18n.lang).select(Number(params.count) || 0);
    entry = entry[category] !== undefined ? entry[category] : entry.other;
  }
  return entry.replace(/\{(\w+)\}/g, (whole, name) =>
    params[name] === undefined || params[name] === null ? whole : String(formatNumber(params[name])));
}

// A word from the API (a state, a status) in the page's language, or as
// it came when the catalogue has no word for it.
function word(group, value) {
  if (value === null || value === undefined || value === '') return '';
  const key = group + '.' + value;
  return i18n.strings[key] !== undefined || i18n.english[key] !== undefined ? t(key) : String(value);
}

async function setLanguage(lang) {
  if (!LANGUAGES[lang]) lang = 'en';
  const [strings, english] = await Promise.all([catalogue(lang), lang === 'en' ? null : catalogue('en')]);
  i18n.lang = lang;
  i18n.strings = strings;
  i18n.english = english || strings;
  document.documentElement.lang = lang;
  document.documentElement.dir = RIGHT_TO_LEFT.has(lang) ? 'rtl' : 'ltr';
  for (const node of document.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll('[data-i18n-placeholder]')) node.placeholder = t(node.dataset.i18nPlaceholder);
  for (const node of document.querySelectorAll('[data-i18n-title]')) node.title = t(node.dataset.i18nTitle);
  for (const node of document.querySelectorAll('[data-i18n-aria-label]')) node.setAttribute('aria-label', t(node.dataset.i18nAriaLabel));
  $('lang').value = lang;
}

// A phone number (or anything that must read left to right) in running text.
function ltr(text) {
  return el('bdi', { class: 'ltr', dir: 'ltr' }, text);
}

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  role: null,
  stream: null,
  // The id of the last event received, to resume the feed from.
  lastEventId: null,
  // The feed's events, to draw again in another language.
  feed: [],
  refreshTimer: null,
  chartsTimer: null,
  sessionOffset: 0,
  searchLabel: '',
  searchStatus: '',
  // Sessions whose interactions are shown: kept open across refreshes.
  expanded: new Set(),
};

// What the call controls say, by key, in one place for translation.
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function call(method, path, body) {
  if (!state.token) throw new ApiError(401, 'unauthorized', t('signin.expired'));
  const headers = { Authorization: 'Bearer ' + state.token };
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const isJson = (response.headers.get('content-type') || '').startsWith('application/json');
  const data = isJson ? await response.json() : null;
  if (!response.ok) {
    const error = new ApiError(response.status, data && data.error,
      (data && data.message) || response.statusText);
    if (response.status === 401) signOut(error.message);
    throw error;
  }
  return data;
}

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attributes, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

function notice(text, kind) {
  const node = $('notice');
  node.textContent = text || '';
  node.className = 'notice' + (kind ? ' ' + kind : '');
}

function time(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return date.toLocaleTimeString(i18n.lang, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function dateTime(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return date.toLocaleString(i18n.lang, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

// ---- sign-in -------------------------------------------------------------

async function signIn(token) {
  state.token = token;
  const me = await call('GET', '/api/v1/me');
  sessionStorage.setItem(TOKEN_KEY, token);
  state.role = me.role;
  $('who-name').textContent = me.name;
  $('who-role').textContent = me.role;
  document.querySelectorAll('.admin-only').forEach((node) => { node.hidden = me.role !== 'admin'; });
  $('signin').hidden = true;
  $('app').hidden = false;
  $('whoami').hidden = false;
  setExportRange();
  await Promise.all([loadBank(), loadSessions(true), loadHubs()]);
  startStream();
  state.chartsTimer = setInterval(() => { loadCharts(); }, 60000);
  // Registration, resets and the store's condition change without an event
  // in the feed: the cards and the banner are looked at again every few
  // seconds.
  state.bankTimer = setInterval(() => {
    // Not under the hands of someone typing in a card or reading a USSD reply.
    const sims = $('sims');
    if (sims.contains(document.activeElement)) return;
    if (Array.from(sims.querySelectorAll('.reply')).some((reply) => reply.textContent)) return;
    loadBank(false).catch(() => {});
  }, BANK_REFRESH_MS);
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.role = null;
  if (state.stream) state.stream.abort();
  state.stream = null;
  state.lastEventId = null;
  state.feed = [];
  $('feed-list').replaceChildren();
  clearInterval(state.chartsTimer);
  clearInterval(state.bankTimer);
  // A refresh queued by the feed (its recent events come at sign-in) must
  // not run with no token.
  clearTimeout(state.refreshTimer);
  $('app').hidden = true;
  $('whoami').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message || '';
  $('token').value = '';
}

// ---- the bank ------------------------------------------------------------

function signalLevel(dbm) {
  if (dbm === null || dbm === undefined) return 0;
  if (dbm >= -73) return 4;
  if (dbm >= -83) return 3;
  if (dbm >= -93) return 2;
  if (dbm >= -105) return 1;
  return 0;
}

function signalBars(dbm) {
  const level = signalLevel(dbm);
  const bars = svg('svg', { class: 'bars', viewBox: '0 0 20 14', width: '24', height: '16',
    role: 'img', 'aria-label': dbm === null ? t('sim.no_signal') : t('sim.dbm', { dbm }) });
  for (let i = 0; i < 4; i++) {
    const height = 4 + i * 3;
    bars.append(svg('rect', { x: String(i * 5), y: String(14 - height), width: '4',
      height: String(height), class: i < level ? 'lit' : '' }));
  }
  return bars;
}

function stateClass(number) {
  if (!number.enabled) return 'off';
  return number.healthy ? 'up' : 'down';
}

function simCard(number) {
  const admin = state.role === 'admin';
  const reply = el('div', { class: 'reply' });
  const toggle = async () => {
    try {
      await call('PUT', '/api/v1/numbers/' + encodeURIComponent(number.id), { enabled: !number.enabled });
      notice(t(number.enabled ? 'notice.disabled' : 'notice.enabled', { number: number.msisdn }), 'good');
      await loadBank();
    } catch (error) { notice(error.message, 'bad'); }
  };
  const change = async (body, done) => {
    try {
      await call('PUT', '/api/v1/numbers/' + encodeURIComponent(number.id), body);
      notice(t(done, { number: number.msisdn }), 'good');
      await loadBank();
    } catch (error) { notice(error.message, 'bad'); }
  };
  const reserve = async (event) => {
    event.preventDefault();
    const input = event.target.querySelector('input');
    await change({ reserved_for: input.value.trim() }, 'notice.reserved');
  };
  const ussd = async (event) => {
    event.preventDefault();
    const input = event.target.querySelector('input');
    reply.textContent = '…';
    try {
      const answer = await call('POST', '/api/v1/numbers/' + encodeURIComponent(number.id) + '/ussd',
        { code: input.value.trim() });
      reply.textContent = answer.reply;
    } catch (error) { reply.textContent = error.message; }
  };
  const count = (key, value) => el('span', null, t(key) + ' ', el('b', null, formatNumber(value)));
  return el('article', { class: 'card sim' + (number.healthy ? '' : ' unhealthy'), 'data-sim': number.id, 'data-iccid': number.id },
    el('div', { class: 'head' },
      el('span', { class: 'number ltr', dir: 'ltr' }, number.msisdn),
      el('span', { class: 'badge ' + stateClass(number) }, number.enabled ? word('state', number.state) : t('state.disabled')),
      number.draining ? el('span', { class: 'badge off draining' },
        t('sim.draining', { count: number.sessions_left })) : null,
      number.reserved_for ? el('span', { class: 'badge reserved' }, t('sim.reserved')) : null,
      signalBars(number.signal_dbm)),
    el('div', { class: 'meta' },
      number.model || t('sim.modem_unknown'), number.port ? [' · ', ltr(number.port)] : null, ' · ',
      number.signal_dbm === null ? t('sim.no_signal') : ltr(t('sim.dbm', { dbm: number.signal_dbm }))),
    el('div', { class: 'meta simid', title: t(number.id_source === 'imsi' ? 'sim.id_imsi_title' : 'sim.id_iccid_title') },
      number.id_source === 'imsi'
        ? [t('sim.id_imsi') + ' ', ltr(number.id.slice('imsi:'.length)), ' ' + t('sim.no_iccid')]
        : [t('sim.id_iccid') + ' ', ltr(number.id)]),
    el('div', { class: 'meta' },
      [number.registration ? word('reg', number.registration) : t('reg.none'), number.operator].filter(Boolean).join(' · ')),
    number.appliance ? el('div', { class: 'meta appliance' }, t('sim.appliance', { name: number.appliance })) : null,
    el('div', { class: 'counts' },
      count('sim.queue', number.queue_depth),
      count('sim.sent', number.sent),
      count('sim.received', number.received),
      count('sim.failed', number.failed),
      count('sim.sessions', number.open_sessions)),
    number.reserved_for ? el('div', { class: 'meta reserved-for' }, t('sim.reserved_for'), ' ', ltr(number.reserved_for)) : null,
    number.front_desk ? el('div', { class: 'meta' }, t('sim.front_desk_for'), ' ', ltr(number.front_desk)) : null,
    el('div', { class: 'budgets' },
      budget(t('budget.today'), number.budgets.messages_today),
      budget(t('budget.recipients_month'), number.budgets.recipients_this_month)),
    number.last_error ? el('div', { class: 'lasterror', dir: 'auto' }, number.last_error) : null,
    el('div', { class: 'chart-box', 'data-chart': number.id }),
    admin ? el('div', { class: 'actions' },
      el('button', { type: 'button', class: number.enabled ? 'danger' : 'quiet', onclick: toggle },
        t(number.enabled ? 'sim.disable' : 'sim.enable')),
      el('button', { type: 'button', class: 'quiet drain', onclick: () =>
        change({ draining: !number.draining }, number.draining ? 'notice.undrained' : 'notice.draining') },
        t(number.draining ? 'sim.undrain' : 'sim.drain')),
      number.reserved_for
        ? el('button', { type: 'button', class: 'quiet release', onclick: () =>
          change({ reserved_for: null }, 'notice.released') }, t('sim.release'))
        : el('form', { class: 'reserve', onsubmit: reserve },
          el('input', { placeholder: '+44…', 'aria-label': t('sim.reserve_for'), required: true, autocomplete: 'off', dir: 'ltr' }),
          el('button', { type: 'submit', class: 'quiet' }, t('sim.reserve'))),
      el('form', { onsubmit: ussd },
        el('input', { placeholder: '*100#', 'aria-label': t('sim.ussd_code'), required: true, pattern: '[0-9*#]{1,32}', dir: 'ltr' }),
        el('button', { type: 'submit', class: 'quiet' }, t('sim.ussd')))) : null,
    admin ? reply : null);
}

// The appliance's clock against the network's (a Pi has no real-time
// clock), and the store's condition: a banner while the file is damaged or
// the disk refuses writes (received messages then stay on the SIMs).
async function loadClock() {
  const health = await (await fetch('/healthz')).json();
  const clock = health.clock;
  $('clock').textContent = t('clock.label') + ': ' + clock.summary;
  $('clock').className = 'notice' + (clock.suspect ? ' bad' : '');
  showStore(health.store);
}

function showStore(store) {
  const banner = $('store');
  const lines = [];
  if (store.integrity === 'failed') {
    lines.push(t('store.damaged', { problems: store.problems.join('; ') }));
  } else if (store.integrity === 'error') {
    lines.push(t('store.check_error', { error: store.problems.join('; ') }));
  }
  if (!store.writable) {
    const since = store.failing_since ? time(store.failing_since) : '?';
    lines.push(store.disk_full
      ? t('store.disk_full', { since })
      : t('store.write_error', { since, error: store.write_error || '' }));
  }
  if (store.database_reachable === false) {
    const since = store.unreachable_since ? time(store.unreachable_since) : '?';
    lines.push(t('store.database_unreachable', { since, error: store.database_error || '' }));
  }
  banner.hidden = lines.length === 0;
  banner.dataset.integrity = store.integrity;
  banner.dataset.writable = String(store.writable);
  banner.dataset.diskFull = String(store.disk_full);
  banner.dataset.databaseReachable = String(store.database_reachable !== false);
  banner.replaceChildren(...lines.map((line) => el('span', { class: 'line', dir: 'auto' }, line)));
}

// One budget's use: "today 12 / 1000", a bar when it has a limit.
function budget(name, use) {
  const text = use.limit === null ? `${name} ${formatNumber(use.used)}`
    : `${name} ${formatNumber(use.used)} / ${formatNumber(use.limit)}`;
  const share = use.limit ? Math.min(1, use.used / use.limit) : 0;
  return el('span', { class: 'budget' + (share >= 0.9 ? ' near' : ''), title: text },
    text, use.limit ? el('meter', { min: '0', max: String(use.limit), value: String(use.used) }) : null);
}

// The bank's cards; `charts` false keeps the charts already drawn (a
// periodic look at the SIMs' states need not fetch each SIM's history).
async function loadBank(charts = true) {
  loadClock().catch(() => {});
  loadFleet().catch((error) => { $('fleet-summary').textContent = error.message; });
  const numbers = await call('GET', '/api/v1/numbers');
  const healthy = numbers.filter((n) => n.healthy).length;
  $('bank-summary').textContent = t('bank.summary', { count: numbers.length, healthy });
  const drawn = new Map(Array.from(document.querySelectorAll('[data-chart]'))
    .map((box) => [box.dataset.chart, Array.from(box.childNodes)]));
  $('sims').replaceChildren(...numbers.map(simCard));
  if (charts) {
    await loadCharts();
    return;
  }
  document.querySelectorAll('[data-chart]').forEach((box) => {
    const old = drawn.get(box.dataset.chart);
    if (old) box.replaceChildren(...old);
  });
}

// The appliances sharing the pool (one on SQLite): each with its last
// heartbeat, online or offline by the fleet's timeout, and its SIMs.
function applianceItem(appliance) {
  return el('li', { 'data-appliance': appliance.name, 'data-online': String(appliance.online) },
    el('span', { class: 'name', dir: 'auto' }, appliance.name),
    el('span', { class: 'badge ' + (appliance.online ? 'up' : 'down') },
      t(appliance.online ? 'fleet.online' : 'fleet.offline')),
    appliance.this ? el('span', { class: 'badge' }, t('fleet.this')) : null,
    el('span', { class: 'meta sims' }, t('fleet.sims', { count: appliance.sims })),
    el('span', { class: 'meta heartbeat' }, t('fleet.heartbeat', { at: dateTime(appliance.last_heartbeat) })));
}

async function loadFleet() {
  const fleet = await call('GET', '/api/v1/fleet');
  const online = fleet.appliances.filter((a) => a.online).length;
  $('fleet-summary').textContent = t('fleet.summary', { count: fleet.appliances.length, online });
  $('fleet-list').replaceChildren(...fleet.appliances.map(applianceItem));
}

// One SIM's last 24 hours: traffic per hour as bars, signal as a line.
function chart(history) {
  const width = 240, height = 44, hourMs = 3600000;
  const end = Math.floor(Date.now() / hourMs) * hourMs + hourMs;
  const start = end - 24 * hourMs;
  const box = svg('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none',
    role: 'img', 'aria-label': t('chart.aria') });
  box.append(svg('rect', { class: 'frame', x: '0', y: '0', width: String(width), height: String(height) }));
  const peak = Math.max(1, ...history.traffic.map((h) => h.sent + h.received));
  const slot = width / 24;
  for (const hour of history.traffic) {
    const index = Math.floor((Date.parse(hour.hour) - start) / hourMs);
    if (index < 0 || index >= 24) continue;
    const sentHeight = (hour.sent / peak) * (height - 4);
    const receivedHeight = (hour.received / peak) * (height - 4);
    const x = index * slot + 1;
    box.append(svg('rect', { class: 'sent', x: String(x), width: String(slot - 2),
      y: String(height - sentHeight), height: String(sentHeight) }));
    box.append(svg('rect', { class: 'received', x: String(x), width: String(slot - 2),
      y: String(height - sentHeight - receivedHeight), height: String(receivedHeight) }));
  }
  // Signal from -113 dBm (bottom) to -51 dBm (top), 3GPP TS 27.007 +CSQ range.
  const points = history.signal
    .filter((s) => s.dbm !== null)
    .map((s) => {
      const x = ((Date.parse(s.at) - start) / (24 * hourMs)) * width;
      const y = height - ((s.dbm + 113) / 62) * (height - 2) - 1;
      return `${x.toFixed(1)},${Math.min(height, Math.max(0, y)).toFixed(1)}`;
    });
  if (points.length === 1) points.push(`${width},${points[0].split(',')[1]}`);
  if (points.length) box.append(svg('polyline', { class: 'signal', points: points.join(' ') }));
  const total = history.traffic.reduce((sum, h) => sum + h.sent + h.received, 0);
  return [box, el('div', { class: 'chart-label' }, el('span', null, t('chart.span')),
    el('span', null, t('chart.total', { count: total })))];
}

async function loadCharts() {
  const boxes = Array.from(document.querySelectorAll('[data-chart]'));
  await Promise.all(boxes.map(async (box) => {
    try {
      const history = await call('GET', '/api/v1/numbers/' + encodeURIComponent(box.dataset.chart) + '/history');
      box.replaceChildren(...chart(history));
    } catch (error) {
      box.replaceChildren(el('span', { class: 'meta' }, t('chart.error', { message: error.message })));
    }
  }));
}

// ---- sessions ------------------------------------------------------------

function sessionItem(session) {
  const interactions = el('ul', { class: 'interactions', hidden: true });
  const loadInteractions = async () => {
    try {
      const list = await call('GET', '/api/v1/sessions/' + encodeURIComponent(session.id) + '/interactions');
      interactions.replaceChildren(...(list.length ? list.map((i) => el('li', { class: 'interaction' },
        `${time(i.created_at)} ${word('kind', i.kind)} ${t('interaction.from')} ${i.from_participant === null ? '?' : i.from_participant === 0 ? 'A' : 'B'}: ${word('istatus', i.status)}` +
          (i.rule ? ` [${word('rule', i.rule)}]` : ''),
        i.reason ? el('span', { dir: 'auto' }, ` (${i.reason})`) : '', i.body ? el('span', { dir: 'auto' }, ` — ${i.body}`) : '')) : [el('li', null, t('interaction.none'))]));
      interactions.hidden = false;
    } catch (error) { notice(error.message, 'bad'); }
  };
  const showInteractions = async () => {
    if (state.expanded.has(session.id)) {
      state.expanded.delete(session.id);
      interactions.hidden = true;
      return;
    }
    state.expanded.add(session.id);
    await loadInteractions();
  };
  if (state.expanded.has(session.id)) loadInteractions();
  const close = async () => {
    try {
      await call('DELETE', '/api/v1/sessions/' + encodeURIComponent(session.id));
      notice(t('notice.closed', { name: session.label || session.id }), 'good');
      await loadSessions(true);
    } catch (error) { notice(error.message, 'bad'); }
  };
  const reopen = async () => {
    try {
      await call('POST', '/api/v1/sessions/' + encodeURIComponent(session.id) + '/reopen', {});
      notice(t('notice.reopened', { name: session.label || session.id }), 'good');
      await loadSessions(true);
    } catch (error) { notice(error.message, 'bad'); }
  };
  return el('li', { 'data-session': session.id, 'data-status': session.status },
    el('div', { class: 'row' },
      el('span', { class: 'title', dir: 'auto' }, session.label || session.id),
      el('span', { class: 'badge ' + (session.status === 'open' ? 'up' : '') },
        word('status', session.status) + (session.close_reason ? ' · ' + word('close', session.close_reason) : ''))),
    el('div', { class: 'meta' },
      participant(session, 0), ' ⇄ ', participant(session, 1),
      ` ${t('session.via')} `, ltr(session.proxy_number), ' · ', word('mode', session.mode)),
    el('div', { class: 'row' },
      el('span', { class: 'meta' }, t('session.opened', { when: dateTime(session.opened_at) }) +
        (session.expires_at ? ' · ' + t('session.expires', { when: dateTime(session.expires_at) }) : '') +
        (session.ended_at ? ' · ' + t('session.ended', { when: dateTime(session.ended_at) }) : '')),
      el('span', { class: 'buttons' },
        el('button', { type: 'button', class: 'quiet show-interactions', onclick: showInteractions }, t('session.interactions')),
        state.role === 'admin' && session.status === 'open'
          ? el('button', { type: 'button', class: 'danger close-session', onclick: close }, t('session.close')) : null,
        state.role === 'admin' && session.status !== 'open'
          ? el('button', { type: 'button', class: 'quiet reopen-session', onclick: reopen }, t('session.reopen')) : null)),
    session.call ? callLine(session) : null,
    interactions);
}

// One side of a session; a hub's side carries the session's code, which
// the hub starts its replies with.
function participant(session, position) {
  const number = ltr(session.participants[position]);
  if (session.hub_participant !== position || !session.hub_code) return number;
  return el('span', { class: 'hub-side', title: t('hub.code_title', { code: session.hub_code }) },
    number, ' ', el('span', { class: 'badge hub-code', dir: 'ltr' }, session.hub_code));
}

// The call the appliance holds on a session now, with its "end call" for
// admins: both participants are hung up on.
function callLine(session) {
  const current = session.call;
  const end = async (event) => {
    event.target.disabled = true;
    try {
      await call('POST', '/api/v1/sessions/' + encodeURIComponent(session.id) + '/calls/end');
      notice(t('call.ended'), 'good');
      await loadSessions(true);
    } catch (error) {
      notice(error.message, 'bad');
      event.target.disabled = false;
    }
  };
  const since = current.answered_at || current.started_at;
  return el('div', { class: 'row call', 'data-call-state': current.state },
    el('span', { class: 'meta' },
      word('call', current.state) +
        (current.method ? ` (${word('method', current.method)})` : '') +
        (since ? ' · ' + t('call.since', { when: time(since) }) : '')),
    state.role === 'admin'
      ? el('button', { type: 'button', class: 'danger end-call', title: t('call.end_title'), onclick: end },
        t('call.end')) : null);
}

async function loadSessions(fromStart) {
  if (fromStart) state.sessionOffset = 0;
  const query = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(state.sessionOffset) });
  if (state.searchLabel) query.set('label', state.searchLabel);
  if (state.searchStatus) query.set('status', state.searchStatus);
  const page = await call('GET', '/api/v1/sessions?' + query);
  const items = page.sessions.map(sessionItem);
  if (fromStart) $('session-list').replaceChildren(...items);
  else $('session-list').append(...items);
  $('more-sessions').hidden = page.next_offset === null;
  if (page.next_offset !== null) state.sessionOffset = page.next_offset;
  if (fromStart && !items.length) $('session-list').append(el('li', { class: 'meta' }, t('sessions.none')));
}

async function openSession(event) {
  event.preventDefault();
  const minutes = parseInt($('ttl').value, 10);
  const body = {
    participants: [$('participant-a').value.trim(), $('participant-b').value.trim()],
    mode: $('mode').value,
  };
  if (minutes > 0) body.ttl_seconds = minutes * 60;
  const label = $('label').value.trim();
  if (label) body.label = label;
  const button = event.target.querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const session = await call('POST', '/api/v1/sessions', body);
    notice(t('notice.opened', { name: session.label || session.id, proxy: session.proxy_number }), 'good');
    event.target.reset();
    await Promise.all([loadSessions(true), loadBank(), loadHubs()]);
  } catch (error) {
    notice(error.message, 'bad');
  } finally {
    button.disabled = false;
  }
}

// ---- hubs ----------------------------------------------------------------

// A hub: one number in many sessions on a proxy, each with its code.
function hubItem(hub) {
  const admin = state.role === 'admin';
  // Removing ends the hub's open sessions: the first click asks, the
  // second removes.
  const remove = async (event) => {
    const button = event.target;
    if (!button.classList.contains('confirm') && hub.sessions.length) {
      button.classList.add('confirm');
      button.textContent = t('hub.remove_confirm', { count: hub.sessions.length });
      return;
    }
    button.disabled = true;
    try {
      const removed = await call('DELETE', '/api/v1/hubs/' + encodeURIComponent(hub.id));
      notice(t('notice.hub_removed', { name: hub.label || hub.id, count: removed.sessions_closed.length }), 'good');
      await Promise.all([loadHubs(), loadSessions(true), loadBank()]);
    } catch (error) {
      notice(error.message, 'bad');
      button.disabled = false;
    }
  };
  const sessions = hub.sessions.map((s) => el('li', { class: 'hub-session', 'data-session': s.session_id, 'data-code': s.hub_code },
    el('span', { class: 'badge hub-code', dir: 'ltr' }, s.hub_code), ' ',
    ltr(s.counterpart), ` ${t('session.via')} `, ltr(s.proxy_number),
    s.label ? el('span', { class: 'meta', dir: 'auto' }, ' · ' + s.label) : null));
  return el('li', { class: 'hub', 'data-hub': hub.id },
    el('div', { class: 'row' },
      el('span', { class: 'title' }, hub.label ? el('span', { dir: 'auto' }, hub.label + ' ') : null, ltr(hub.number)),
      el('span', { class: 'meta' }, t('hub.sessions', { count: hub.sessions.length })),
      admin ? el('button', { type: 'button', class: 'danger remove-hub', onclick: remove }, t('hub.remove')) : null),
    el('ul', { class: 'hub-sessions' }, ...sessions));
}

async function loadHubs() {
  let hubs;
  try {
    hubs = await call('GET', '/api/v1/hubs');
  } catch (error) {
    // A store without hubs (a fleet's, so far) says so in the panel; the
    // rest of the dashboard works.
    if (error.status !== 501) throw error;
    $('hub-list').replaceChildren(el('li', { class: 'meta unavailable', dir: 'auto' }, error.message));
    return;
  }
  $('hub-list').replaceChildren(...(hubs.length ? hubs.map(hubItem)
    : [el('li', { class: 'meta' }, t('hubs.none'))]));
}

async function createHub(event) {
  event.preventDefault();
  const body = { number: $('hub-number').value.trim() };
  const label = $('hub-label').value.trim();
  if (label) body.label = label;
  const button = event.target.querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const hub = await call('POST', '/api/v1/hubs', body);
    notice(t('notice.hub_created', { name: hub.label || hub.id }), 'good');
    event.target.reset();
    await Promise.all([loadHubs(), loadSessions(true)]);
  } catch (error) {
    notice(error.message, 'bad');
  } finally {
    button.disabled = false;
  }
}

// ---- the live feed -------------------------------------------------------

function describe(event) {
  const session = event.session_id ? ' · ' + t('feed.session', { id: event.session_id }) : '';
  switch (event.kind) {
    case 'session_opened': return t('feed.session_opened', { proxy: event.proxy_number, mode: word('mode', event.mode) }) + session;
    case 'session_closed': return t('feed.session_closed') + session;
    case 'session_expired': return t('feed.session_expired') + session;
    case 'message_relayed': return t('feed.message_relayed', { count: event.parts }) + session;
    case 'message_delivered': return t('feed.message_delivered') + session;
    case 'message_failed': return t('feed.message_failed', { reason: event.reason }) + session;
    case 'call_bridged': return t('feed.call_bridged', { method: event.method }) + session;
    case 'call_ended': return (event.duration_seconds
      ? t('feed.call_ended_after', { outcome: event.outcome, seconds: event.duration_seconds })
      : t('feed.call_ended', { outcome: event.outcome })) + session;
    case 'modem_up': return t('feed.modem_up', { imei: event.imei, port: event.port });
    case 'modem_down': return t('feed.modem_down', { imei: event.imei, reason: event.reason });
    case 'message_blocked': return t('feed.message_blocked', { rule: word('rule', event.rule) }) + session;
    case 'loop_detected': return t('feed.loop_detected', { reason: event.reason }) + session;
    case 'opted_out': return t('feed.opted_out', { proxy: event.proxy_number });
    case 'opted_in': return t('feed.opted_in', { proxy: event.proxy_number });
    case 'hub_created': return t('feed.hub_created', { number: event.number });
    case 'hub_removed': return t('feed.hub_removed', { number: event.number });
    case 'lagged': return t('feed.lagged', { count: event.missed });
    case 'unauthorized': return t('feed.unauthorized');
    default: return event.kind;
  }
}

function feedItem(event) {
  return el('li', { class: 'kind-' + event.kind, 'data-kind': event.kind },
    el('time', { datetime: event.at || '' }, time(event.at)),
    el('span', { class: 'text', dir: 'auto' }, describe(event)));
}

function addFeed(event) {
  if (!event.at) event.at = new Date().toISOString();
  state.feed.unshift(event);
  state.feed.length = Math.min(state.feed.length, FEED_MAX);
  const list = $('feed-list');
  list.prepend(feedItem(event));
  while (list.children.length > FEED_MAX) list.lastElementChild.remove();
}

function scheduleRefresh() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(async () => {
    try { await Promise.all([loadBank(), loadSessions(true), loadHubs()]); } catch (error) { notice(error.message, 'bad'); }
  }, 400);
}

function setLive(on) {
  $('live').className = 'live ' + (on ? 'on' : 'off');
  $('live').title = t(on ? 'live.on' : 'live.off');
}

// Parses one server-sent event block ("event: …\ndata: …").
function handleBlock(block) {
  let kind = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) kind = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    else if (line.startsWith('id:')) state.lastEventId = line.slice(3).trim();
  }
  if (!data.length) return;
  let event;
  try { event = JSON.parse(data.join('\n')); } catch { return; }
  if (!event.kind) event.kind = kind;
  addFeed(event);
  scheduleRefresh();
}

function startStream() {
  const controller = new AbortController();
  state.stream = controller;
  (async () => {
    while (!controller.signal.aborted) {
      try {
        const headers = { Authorization: 'Bearer ' + state.token, Accept: 'text/event-stream' };
        // Back after a drop: the server sends what was missed first.
        if (state.lastEventId) headers['Last-Event-ID'] = state.lastEventId;
        // The first time, the feed starts with what just happened.
        const path = state.lastEventId ? '/api/v1/events' : '/api/v1/events?recent=' + FEED_RECENT;
        const response = await fetch(path, { headers, signal: controller.signal });
        if (response.status === 401) { signOut(t('signin.expired')); return; }
        if (!response.ok || !response.body) throw new Error('feed: ' + response.status);
        setLive(true);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, '\n');
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            handleBlock(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      } catch (error) {
        if (controller.signal.aborted) return;
      }
      setLive(false);
      await new Promise((resolve) => setTimeout(resolve, 3000));
    }
  })();
}

// ---- export --------------------------------------------------------------

function isoDate(date) {
  return date.toISOString().slice(0, 10);
}

function setExportRange() {
  if ($('export-to').value) return;
  const tomorrow = new Date(Date.now() + 86400000);
  $('export-to').value = isoDate(tomorrow);
  $('export-from').value = isoDate(new Date(Date.now() - 7 * 86400000));
}

// Fetched with the token (a plain link cannot send it), saved as a file.
async function downloadExport(event) {
  event.preventDefault();
  const query = new URLSearchParams({
    from: $('export-from').value, to: $('export-to').value, format: $('export-format').value,
  });
  const button = event.target.querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const response = await fetch('/api/v1/interactions?' + query, {
      headers: { Authorization: 'Bearer ' + state.token },
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.message || response.statusText);
    }
    const disposition = response.headers.get('content-disposition') || '';
    const match = disposition.match(/filename="([^"]+)"/);
    const name = match ? match[1] : 'simmask-interactions.' + $('export-format').value;
    const url = URL.createObjectURL(await response.blob());
    const link = el('a', { href: url, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    notice(t('export.done', { name }), 'good');
  } catch (error) {
    notice(error.message, 'bad');
  } finally {
    button.disabled = false;
  }
}

// Everything drawn from data, drawn again in the new language.
async function switchLanguage(lang) {
  localStorage.setItem(LANG_KEY, lang);
  await setLanguage(lang);
  $('feed-list').replaceChildren(...state.feed.map(feedItem));
  if (state.role) {
    setLive($('live').classList.contains('on'));
    await Promise.all([loadBank(), loadSessions(true), loadHubs()]);
  }
}

// ---- start ---------------------------------------------------------------

document.addEventListener('DOMContentLoaded', async () => {
  for (const [code, name] of Object.entries(LANGUAGES)) {
    $('lang').append(el('option', { value: code, lang: code }, name));
  }
  try { await setLanguage(preferredLanguage()); } catch (error) { notice(error.message, 'bad'); }
  $('lang').addEventListener('change', (event) => {
    switchLanguage(event.target.value).catch((error) => notice(error.message, 'bad'));
  });
  $('export-form').addEventListener('submit', downloadExport);
  $('signin-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    $('signin-error').textContent = '';
    try {
      await signIn($('token').value.trim());
    } catch (error) {
      signOut(error.status === 401 ? t('signin.invalid') : error.message);
    }
  });
  $('signout').addEventListener('click', () => signOut());
  $('open-form').addEventListener('submit', openSession);
  $('hub-form').addEventListener('submit', createHub);
  $('search-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    state.searchLabel = $('search-label').value.trim();
    state.searchStatus = $('search-status').value;
    try { await loadSessions(true); } catch (error) { notice(error.message, 'bad'); }
  });
  $('more-sessions').addEventListener('click', async () => {
    try { await loadSessions(false); } catch (error) { notice(error.message, 'bad'); }
  });
  if (state.token) {
    signIn(state.token).catch((error) => signOut(error.message));
  } else {
    signOut();
  }
});
