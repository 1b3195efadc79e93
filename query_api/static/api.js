// The UI's only way to the server: the public GraphQL API (plus artifact downloads and the
// demo route). Also a tiny DOM builder, so no page ever builds HTML from strings.

const USER_KEY = 'modeldb.actingAs';

export function actingAs() { return localStorage.getItem(USER_KEY) || ''; }
export function setActingAs(name) {
  if (name) localStorage.setItem(USER_KEY, name); else localStorage.removeItem(USER_KEY);
}

const TOKEN_KEY = 'modeldb.token';

/** A bearer token for servers in MODELDB_AUTH=token mode (kept in this browser only). */
export function token() { return localStorage.getItem(TOKEN_KEY) || ''; }
export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value); else localStorage.removeItem(TOKEN_KEY);
}

/** A download link for an artifact. A plain link cannot carry a bearer token, so with one set
 * the click fetches the bytes with the header and saves them from memory instead. */
export function artifactLink(digest, name, label = name || 'artifact') {
  const href = `/api/v1/artifacts/${encodeURIComponent(digest)}`;
  const a = h('a', {href, download: name || ''}, label);
  a.addEventListener('click', event => {
    if (!token()) return;  // no token: the browser streams the file itself
    event.preventDefault();
    saveWithToken(href, name || digest).then(
      () => a.removeAttribute('aria-invalid'),
      err => { a.setAttribute('aria-invalid', 'true'); a.title = `download failed: ${err.message}`; });
  });
  return a;
}

async function saveWithToken(href, name) {
  const response = await fetch(href, {headers: {authorization: `Bearer ${token()}`}});
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const url = URL.createObjectURL(await response.blob());
  const save = h('a', {href: url, download: name, hidden: true});
  document.body.append(save);
  save.click();
  save.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Who the request acts as: the saved token, or the user named in the header bar. */
export function identityHeaders() {
  const headers = {};
  if (actingAs()) headers['x-modeldb-user'] = actingAs();
  if (token()) headers.authorization = `Bearer ${token()}`;
  return headers;
}

export class GraphQLFailure extends Error {
  constructor(errors, data) {
    super(errors.map(e => e.message).join('; '));
    this.errors = errors;
    this.data = data;
  }
}

/** POST a GraphQL document; answers `data`, throws GraphQLFailure carrying the API's messages. */
export async function gql(query, variables = {}) {
  const headers = {'content-type': 'application/json', ...identityHeaders()};
  let response;
  try {
    response = await fetch('/graphql', {method: 'POST', headers, body: JSON.stringify({query, variables})});
  } catch (err) {
    throw new GraphQLFailure([{message: `server unreachable: ${err.message}`}]);
  }
  let body;
  try { body = await response.json(); } catch {
    throw new GraphQLFailure([{message: `HTTP ${response.status} from /graphql`}]);
  }
  if (body.errors && body.errors.length) throw new GraphQLFailure(body.errors, body.data);
  return body.data;
}

/** h('a', {href: '#/x', class: 'y', onclick: f}, 'text', child, [more]) → an Element. */
export function h(tag, attrs = {}, ...children) {
  const svgA = tag === 'svg:a';  // a link inside an SVG drawing (keyboard-focusable, navigable)
  if (svgA) tag = 'a';
  const svg = svgA || ['svg', 'g', 'path', 'line', 'rect', 'text', 'circle', 'polyline', 'defs', 'marker',
               'title', 'tspan', 'clipPath'].includes(tag);
  const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'text') el.textContent = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) { el.replaceChildren(); append(el, children); return el; }

export function fmtNum(v) {
  if (v === null || v === undefined) return 'NaN';
  if (typeof v !== 'number') return String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : String(+v.toPrecision(5));
}

export function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString(undefined, {dateStyle: 'short', timeStyle: 'medium'});
}

export function duration(start, end) {
  if (!start) return '';
  const ms = (end ? new Date(end) : new Date()) - new Date(start);
  if (!(ms >= 0)) return '';
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export function badge(text) { return h('span', {class: `badge ${text}`}, text); }

/** An inline error box whose text is the API's message (role=alert, so it is announced). */
export function errorBox() { return h('div', {class: 'error', role: 'alert'}); }
export function showError(box, err) { box.textContent = err ? (err.message || String(err)) : ''; }

/** Hash routes: '#/runs?x=1' → {path: ['runs'], query: URLSearchParams}. */
export function parseHash(hash = location.hash) {
  const raw = hash.replace(/^#\/?/, '');
  const [path, search = ''] = raw.split('?');
  return {path: path.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(search)};
}

export function link(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return `#/${path}${s ? '?' + s : ''}`;
}

/** The node id the lineage and audit pages take for a run id. */
export const runNode = id => `run:${id}`;
export const versionNode = (name, version) => `modelversion:${name}/${version}`;

export const PALETTE = ['#2558c8', '#d9480f', '#2b8a3e', '#ae3ec9', '#e67700', '#1098ad', '#c2255c',
                        '#5c940d', '#364fc7', '#862e9c'];
