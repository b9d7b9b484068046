// The simmask dashboard: plain JavaScript over the local API.
// The token lives in sessionStorage (this tab only) and goes out as a
// bearer header; the live feed is read with fetch streaming because
// EventSource cannot send headers. Real numbers only ever travel in
// request bodies, never in URLs; everything shown is set as text.
'use strict';

const TOKEN_KEY = 'simmask.token';
const PAGE_SIZE = 50;
const FEED_MAX = 200;

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  role: null,
  stream: null,
  refreshTimer: null,
  chartsTimer: null,
  sessionOffset: 0,
  searchLabel: '',
  searchStatus: '',
  // Sessions whose interactions are shown: kept open across refreshes.
  expanded: new Set(),
};

// What the call controls say, by key, in one place for translation.
const CALL_TEXT = {
  connecting: 'Call: putting the caller through',
  ringing: 'Call: the other participant\'s phone rings',
  bridged: 'Call in progress',
  since: 'since',
  endCall: 'End call',
  endCallTitle: 'End this call for both participants',
  ended: 'Call ended for both participants',
};

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function call(method, path, body) {
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
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function dateTime(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return date.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
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
  await Promise.all([loadBank(), loadSessions(true)]);
  startStream();
  state.chartsTimer = setInterval(loadCharts, 60000);
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.role = null;
  if (state.stream) state.stream.abort();
  state.stream = null;
  clearInterval(state.chartsTimer);
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
    role: 'img', 'aria-label': dbm === null ? 'no signal' : dbm + ' dBm' });
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
      notice((number.enabled ? 'Disabled ' : 'Enabled ') + number.msisdn, 'good');
      await loadBank();
    } catch (error) { notice(error.message, 'bad'); }
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
  return el('article', { class: 'card sim' + (number.healthy ? '' : ' unhealthy'), 'data-sim': number.id },
    el('div', { class: 'head' },
      el('span', { class: 'number' }, number.msisdn),
      el('span', { class: 'badge ' + stateClass(number) }, number.enabled ? number.state : 'disabled'),
      signalBars(number.signal_dbm)),
    el('div', { class: 'meta' },
      [number.model || 'modem ?', number.port, number.signal_dbm === null ? 'no signal' : number.signal_dbm + ' dBm']
        .filter(Boolean).join(' · ')),
    el('div', { class: 'meta simid', title: number.id_source === 'imsi'
        ? 'the modem cannot read this SIM\'s ICCID: it is known by its IMSI' : 'ICCID' },
      number.id_source === 'imsi' ? 'IMSI ' + number.id.slice('imsi:'.length) + ' (no ICCID)' : 'ICCID ' + number.id),
    el('div', { class: 'meta' },
      [number.registration || 'unregistered', number.operator].filter(Boolean).join(' · ')),
    el('div', { class: 'counts' },
      el('span', null, 'queue ', el('b', null, number.queue_depth)),
      el('span', null, 'sent ', el('b', null, number.sent)),
      el('span', null, 'received ', el('b', null, number.received)),
      el('span', null, 'failed ', el('b', null, number.failed)),
      el('span', null, 'sessions ', el('b', null, number.open_sessions))),
    number.last_error ? el('div', { class: 'lasterror' }, number.last_error) : null,
    el('div', { class: 'chart-box', 'data-chart': number.id }),
    admin ? el('div', { class: 'actions' },
      el('button', { type: 'button', class: number.enabled ? 'danger' : 'quiet', onclick: toggle },
        number.enabled ? 'Disable' : 'Enable'),
      el('form', { onsubmit: ussd },
        el('input', { placeholder: '*100#', 'aria-label': 'USSD code', required: true, pattern: '[0-9*#]{1,32}' }),
        el('button', { type: 'submit', class: 'quiet' }, 'USSD'))) : null,
    admin ? reply : null);
}

async function loadBank() {
  const numbers = await call('GET', '/api/v1/numbers');
  const healthy = numbers.filter((n) => n.healthy).length;
  $('bank-summary').textContent = `${numbers.length} SIMs, ${healthy} healthy`;
  $('sims').replaceChildren(...numbers.map(simCard));
  await loadCharts();
}

// One SIM's last 24 hours: traffic per hour as bars, signal as a line.
function chart(history) {
  const width = 240, height = 44, hourMs = 3600000;
  const end = Math.floor(Date.now() / hourMs) * hourMs + hourMs;
  const start = end - 24 * hourMs;
  const box = svg('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none',
    role: 'img', 'aria-label': 'traffic and signal, last 24 hours' });
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
  return [box, el('div', { class: 'chart-label' }, el('span', null, '24 h'),
    el('span', null, `${total} SMS · signal line`))];
}

async function loadCharts() {
  const boxes = Array.from(document.querySelectorAll('[data-chart]'));
  await Promise.all(boxes.map(async (box) => {
    try {
      const history = await call('GET', '/api/v1/numbers/' + encodeURIComponent(box.dataset.chart) + '/history');
      box.replaceChildren(...chart(history));
    } catch (error) {
      box.replaceChildren(el('span', { class: 'meta' }, 'chart: ' + error.message));
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
        `${time(i.created_at)} ${i.kind} from ${i.from_participant === null ? '?' : i.from_participant === 0 ? 'A' : 'B'}: ${i.status}`,
        i.reason ? ` (${i.reason})` : '', i.body ? ` — ${i.body}` : '')) : [el('li', null, 'no SMS or calls yet')]));
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
      notice('Closed ' + (session.label || session.id), 'good');
      await loadSessions(true);
    } catch (error) { notice(error.message, 'bad'); }
  };
  return el('li', { 'data-session': session.id, 'data-status': session.status },
    el('div', { class: 'row' },
      el('span', { class: 'title' }, session.label || session.id),
      el('span', { class: 'badge ' + (session.status === 'open' ? 'up' : '') }, session.status)),
    el('div', { class: 'meta' },
      `${session.participants[0]} ⇄ ${session.participants[1]} via ${session.proxy_number} · ${session.mode}`),
    el('div', { class: 'row' },
      el('span', { class: 'meta' }, `opened ${dateTime(session.opened_at)}` +
        (session.expires_at ? ` · expires ${dateTime(session.expires_at)}` : '') +
        (session.ended_at ? ` · ended ${dateTime(session.ended_at)}` : '')),
      el('span', { class: 'buttons' },
        el('button', { type: 'button', class: 'quiet show-interactions', onclick: showInteractions }, 'Interactions'),
        state.role === 'admin' && session.status === 'open'
          ? el('button', { type: 'button', class: 'danger close-session', onclick: close }, 'Close') : null)),
    session.call ? callLine(session) : null,
    interactions);
}

// The call the appliance holds on a session now, with its "end call" for
// admins: both participants are hung up on.
function callLine(session) {
  const current = session.call;
  const end = async (event) => {
    event.target.disabled = true;
    try {
      await call('POST', '/api/v1/sessions/' + encodeURIComponent(session.id) + '/calls/end');
      notice(CALL_TEXT.ended, 'good');
      await loadSessions(true);
    } catch (error) {
      notice(error.message, 'bad');
      event.target.disabled = false;
    }
  };
  const since = current.answered_at || current.started_at;
  return el('div', { class: 'row call', 'data-call-state': current.state },
    el('span', { class: 'meta' },
      `${CALL_TEXT[current.state] || current.state}` +
        (current.method ? ` (${current.method})` : '') +
        (since ? ` · ${CALL_TEXT.since} ${time(since)}` : '')),
    state.role === 'admin'
      ? el('button', { type: 'button', class: 'danger end-call', title: CALL_TEXT.endCallTitle, onclick: end },
        CALL_TEXT.endCall) : null);
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
  if (fromStart && !items.length) $('session-list').append(el('li', { class: 'meta' }, 'no sessions'));
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
    notice(`Opened ${session.label || session.id} on ${session.proxy_number}`, 'good');
    event.target.reset();
    await Promise.all([loadSessions(true), loadBank()]);
  } catch (error) {
    notice(error.message, 'bad');
  } finally {
    button.disabled = false;
  }
}

// ---- the live feed -------------------------------------------------------

function describe(event) {
  const session = event.session_id ? ` · session ${event.session_id}` : '';
  switch (event.kind) {
    case 'session_opened': return `session opened on ${event.proxy_number} (${event.mode})${session}`;
    case 'session_closed': return `session closed${session}`;
    case 'session_expired': return `session expired${session}`;
    case 'message_relayed': return `message relayed (${event.parts} part${event.parts === 1 ? '' : 's'})${session}`;
    case 'message_delivered': return `message delivered${session}`;
    case 'message_failed': return `message failed: ${event.reason}${session}`;
    case 'call_bridged': return `call bridged (${event.method})${session}`;
    case 'call_ended': return `call ended: ${event.outcome}` +
      (event.duration_seconds ? ` after ${event.duration_seconds} s` : '') + session;
    case 'modem_up': return `modem ${event.imei} up on ${event.port}`;
    case 'modem_down': return `modem ${event.imei} down: ${event.reason}`;
    case 'lagged': return `feed skipped ${event.missed} events`;
    default: return event.kind;
  }
}

function addFeed(event) {
  const list = $('feed-list');
  list.prepend(el('li', { class: 'kind-' + event.kind, 'data-kind': event.kind },
    el('time', { datetime: event.at || '' }, time(event.at || new Date().toISOString())),
    el('span', { class: 'text' }, describe(event))));
  while (list.children.length > FEED_MAX) list.lastElementChild.remove();
}

function scheduleRefresh() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(async () => {
    try { await Promise.all([loadBank(), loadSessions(true)]); } catch (error) { notice(error.message, 'bad'); }
  }, 400);
}

function setLive(on) {
  $('live').className = 'live ' + (on ? 'on' : 'off');
  $('live').title = on ? 'live feed connected' : 'live feed reconnecting';
}

// Parses one server-sent event block ("event: …\ndata: …").
function handleBlock(block) {
  let kind = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) kind = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
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
        const response = await fetch('/api/v1/events', {
          headers: { Authorization: 'Bearer ' + state.token, Accept: 'text/event-stream' },
          signal: controller.signal,
        });
        if (response.status === 401) { signOut('The token is no longer valid.'); return; }
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

// ---- start ---------------------------------------------------------------

document.addEventListener('DOMContentLoaded', () => {
  $('signin-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    $('signin-error').textContent = '';
    try {
      await signIn($('token').value.trim());
    } catch (error) {
      signOut(error.status === 401 ? 'That token is not valid.' : error.message);
    }
  });
  $('signout').addEventListener('click', () => signOut());
  $('open-form').addEventListener('submit', openSession);
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
