// search.js — message search (GET /v1/search): the search field at the top of the side panel, its
// results in place of the conversation list and the Friends tab while a query is typed, and a
// conversation's own search (the Search button of its header: channel=ID, said above the results
// with a way back to every conversation). Typing is debounced; under 2 code points nothing is
// asked. A result shows the conversation, the sender, the date and the snippet with the matches
// as <mark> (built from the highlights, in code points, with DOM nodes: never as markup);
// activating one opens its conversation scrolled to the message (conversation.js openAt, the jump
// of a reply's quote). Enter searches at once, the arrows move between results, Escape closes.
// On a phone the results are the list pane: opening one shows the conversation, Back comes back
// to them; a conversation's own search is shown over it (body.search-front) until one is opened.
import { api, describeError } from './net.js';
import { $, S, codepoints, el, fmtTime, nameSpan, peerOf, titleOf } from './state.js';
import { openAt } from './conversation.js';
import { sessionDead } from './app.js';

const DEBOUNCE_MS = 250;
const MIN_CP = 2;                 // the contract: q of 2..100 code points
const MAX_CP = 100;
const LIMIT = 30;                 // results asked per page ("More results" asks the next)

const Q = {
  open: false,
  scope: null,          // channel id: search only this conversation
  fromChat: false,      // opened by a conversation's Search button (focus goes back there)
  query: '',            // the query of the results shown
  results: [],          // [{message, snippet, highlights}]
  more: false,          // a full page came back: there may be more
  gen: 0,               // answers to an older request are dropped
  timer: 0,
  picked: null,         // the id of the message last opened from the results
};

const phone = () => matchMedia('(max-width: 700px)').matches;

/** the query as asked: trimmed; what it lacks as a sentence, or null when it can be asked */
function queryOf() { return $('search-input').value.trim(); }
function tooShort(q) {
  const n = codepoints(q);
  if (n < MIN_CP) return 'Type at least 2 characters';
  if (n > MAX_CP) return `Type at most ${MAX_CP} characters`;
  return null;
}

function setStatus(text) { $('search-status').textContent = text; }
function setError(e) { $('search-error').textContent = e ? describeError(e) : ''; }

function show(open) {
  Q.open = open;
  $('search-view').hidden = !open;
  $('search-close').hidden = !open;
  document.body.classList.toggle('searching', open);
  if (!open) document.body.classList.remove('search-front');
}

/** opens the search view; `scope`: a channel id to search only that conversation */
export function openSearch(scope = null, { fromChat = false } = {}) {
  Q.scope = scope;
  Q.fromChat = fromChat;
  Q.query = '';   // the same words in another scope are another search
  show(true);
  if (fromChat && phone() && document.body.classList.contains('chat-open')) document.body.classList.add('search-front');
  renderScope();
  $('search-input').focus();
  schedule(0);
}

/** closes the search: no query, no results, the list back */
export function closeSearch({ focus = false } = {}) {
  clearTimeout(Q.timer);
  Q.gen++;
  const back = (Q.fromChat || document.body.classList.contains('search-front')) && S.current && Q.open;
  Q.scope = null;
  Q.fromChat = false;
  Q.query = '';
  Q.results = [];
  Q.more = false;
  Q.picked = null;
  $('search-input').value = '';
  $('search-results').textContent = '';
  $('search-more').hidden = true;
  setStatus('');
  setError('');
  renderScope();
  show(false);
  if (!focus) return;
  if (back && !$('chat-search').hidden) $('chat-search').focus();
  else $('search-input').focus();
}

function renderScope() {
  const p = $('search-scope');
  p.hidden = !Q.scope;
  $('search-scope-text').textContent = Q.scope ? `Only in ${titleOf(Q.scope)}` : '';
  $('search-input').placeholder = Q.scope ? `Search in ${titleOf(Q.scope)}` : 'Search messages';
}

/** after typing: the hint at once, the request after DEBOUNCE_MS of quiet */
function schedule(ms = DEBOUNCE_MS) {
  clearTimeout(Q.timer);
  const q = queryOf();
  const short = tooShort(q);
  if (short) {
    Q.gen++;   // whatever is on its way is no longer wanted
    Q.query = '';
    Q.results = [];
    Q.more = false;
    renderResults();
    setError('');
    setStatus(short);
    return;
  }
  if (q === Q.query && Q.results.length && ms > 0) { Q.gen++; sayFound(); return; }   // nothing changed (e.g. a trailing space)
  setStatus('Searching…');
  Q.timer = setTimeout(() => run(q), ms);
}

async function run(q, { more = false } = {}) {
  clearTimeout(Q.timer);
  const gen = ++Q.gen;
  const qs = new URLSearchParams({ q, limit: String(LIMIT) });
  if (Q.scope) qs.set('channel', Q.scope);
  if (more && Q.results.length) qs.set('before', Q.results[Q.results.length - 1].message.id);
  setError('');
  setStatus(more ? 'Loading more…' : 'Searching…');
  $('search-more').disabled = true;
  let r;
  try {
    r = await api('GET', `/v1/search?${qs}`, { token: S.session.token });
  } catch (e) {
    if (gen !== Q.gen) return;
    if (e.status === 401) { sessionDead(); return; }
    $('search-more').disabled = false;
    setStatus('');
    if (e.status === 403) setError('You are not in that conversation.');
    else setError(e);
    if (!more) { Q.results = []; Q.more = false; renderResults(); }
    return;
  }
  if (gen !== Q.gen || !S.me) return;
  const got = (r && Array.isArray(r.results) ? r.results : []).filter((x) => x && x.message && x.message.id);
  if (more) {
    const seen = new Set(Q.results.map((x) => x.message.id));
    Q.results.push(...got.filter((x) => !seen.has(x.message.id)));
  } else {
    Q.results = got;
  }
  Q.query = q;
  Q.more = got.length >= LIMIT;
  renderResults();
  sayFound();
}

function sayFound() {
  const n = Q.results.length;
  setStatus(n === 0 ? 'No messages found' : `${n}${Q.more ? '+' : ''} ${n === 1 ? 'message' : 'messages'} found`);
}

function renderResults() {
  const ul = $('search-results');
  ul.dataset.query = Q.query;   // what these are the results of (the tests wait for it)
  const frag = document.createDocumentFragment();
  for (const r of Q.results) frag.append(hitEl(r));
  ul.textContent = '';
  ul.append(frag);
  const more = $('search-more');
  more.hidden = !Q.more;
  more.disabled = false;
}

/** the name of a conversation: a direct chat's is its peer's name, kept current as users load */
function channelName(id) {
  const c = S.channels.get(id);
  const peer = c && peerOf(c.channel);
  if (c && c.channel.kind === 'direct' && peer) return nameSpan(peer, 'hit-chat');
  return el('span', { class: 'hit-chat', text: titleOf(id) });
}

function hitEl(r) {
  const m = r.message;
  const btn = el('button', {
    type: 'button', class: 'hit', 'aria-current': Q.picked === m.id ? 'true' : null,
    dataset: { channel: m.channel, seq: m.seq, id: m.id },
    onclick: () => pick(m),
  });
  const d = new Date(m.ts);
  btn.append(
    el('span', { class: 'hit-top' },
      channelName(m.channel),
      el('time', { class: 'hit-time', datetime: Number.isFinite(d.getTime()) ? d.toISOString() : null,
        title: m.ts ? d.toLocaleString() : null, text: m.ts ? fmtTime(m.ts) : '' })),
    el('span', { class: 'hit-from' },
      m.from === S.me.id ? el('span', { text: 'You' }) : nameSpan(m.from, 'hit-who'),
      el('span', { class: 'sr-only', text: ': ' })),
    el('span', { class: 'hit-snippet' }, ...snippetNodes(typeof r.snippet === 'string' ? r.snippet : String(m.text || '').slice(0, 200), r.highlights)));
  return el('li', {}, btn);
}

/**
 * The snippet as text nodes and <mark> elements: highlights are [start, end) offsets in code
 * points (not UTF-16 units) into the snippet; out-of-range, empty and overlapping ones are
 * clipped, so no input makes the text shown differ from the snippet.
 */
export function snippetNodes(snippet, highlights) {
  const cps = Array.from(snippet);
  const ranges = (Array.isArray(highlights) ? highlights : [])
    .filter((h) => Array.isArray(h) && Number.isInteger(h[0]) && Number.isInteger(h[1]))
    .map(([a, b]) => [Math.max(0, a), Math.min(cps.length, b)])
    .filter(([a, b]) => a < b)
    .sort((x, y) => x[0] - y[0]);
  const out = [];
  let at = 0;
  for (const [a0, b] of ranges) {
    const a = Math.max(a0, at);
    if (a >= b) continue;
    if (a > at) out.push(document.createTextNode(cps.slice(at, a).join('')));
    out.push(el('mark', { text: cps.slice(a, b).join('') }));
    at = b;
  }
  if (at < cps.length) out.push(document.createTextNode(cps.slice(at).join('')));
  return out;
}

/** a result activated: its conversation, scrolled to the message */
function pick(m) {
  Q.picked = m.id;
  for (const b of $('search-results').querySelectorAll('.hit')) {
    if (b.dataset.id === m.id) b.setAttribute('aria-current', 'true'); else b.removeAttribute('aria-current');
  }
  document.body.classList.remove('search-front');
  openAt(m.channel, m.seq);
}

function moveFocus(from, by) {
  const hits = [...$('search-results').querySelectorAll('.hit')];
  if (!hits.length) return;
  const i = hits.indexOf(from);
  const j = by === Infinity ? hits.length - 1 : by === -Infinity ? 0 : i < 0 ? 0 : i + by;
  if (j < 0) { $('search-input').focus(); return; }
  hits[Math.min(j, hits.length - 1)].focus();
}

export function wireSearch() {
  const input = $('search-input');
  input.addEventListener('input', () => {
    if (!input.value && !Q.scope) { closeSearch(); return; }
    if (!Q.open) show(true);
    schedule();
  });
  $('search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    if (!input.value.trim() && !Q.scope) return;
    if (!Q.open) show(true);
    const q = queryOf();
    if (tooShort(q)) schedule(0);
    else run(q);
  });
  const keys = (e) => {
    if (e.key === 'Escape') {
      if (!Q.open) return;
      e.preventDefault();
      e.stopPropagation();   // not the phone's "close the conversation"
      closeSearch({ focus: true });
      return;
    }
    const onHit = e.target.classList && e.target.classList.contains('hit');
    if (e.key === 'ArrowDown' && (onHit || e.target === input)) { e.preventDefault(); moveFocus(onHit ? e.target : null, onHit ? 1 : 0); }
    else if (e.key === 'ArrowUp' && onHit) { e.preventDefault(); moveFocus(e.target, -1); }
    else if (e.key === 'Home' && onHit) { e.preventDefault(); moveFocus(e.target, -Infinity); }
    else if (e.key === 'End' && onHit) { e.preventDefault(); moveFocus(e.target, Infinity); }
  };
  $('search-form').addEventListener('keydown', keys);
  $('search-view').addEventListener('keydown', keys);
  $('search-close').addEventListener('click', () => closeSearch({ focus: true }));
  $('search-all').addEventListener('click', () => {
    Q.scope = null;
    Q.fromChat = false;
    renderScope();
    if (!input.value) { closeSearch({ focus: true }); return; }
    Q.query = '';
    input.focus();
    schedule(0);
  });
  $('search-more').addEventListener('click', () => { if (Q.query) run(Q.query, { more: true }); });
  $('chat-search').addEventListener('click', () => {
    if (S.current && !S.current.startsWith('u:')) openSearch(S.current, { fromChat: true });
  });
  // back from a conversation opened from the results: to the result it was opened from
  $('back').addEventListener('click', () => {
    if (!Q.open) return;
    const b = Q.picked && $('search-results').querySelector(`.hit[data-id="${CSS.escape(Q.picked)}"]`);
    (b || input).focus();
  });
  // the conversation changed (a link, the browser's back): it is in front again
  window.addEventListener('hashchange', () => document.body.classList.remove('search-front'));
}
