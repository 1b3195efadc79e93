// The shell: hash routing, the "acting as" user, and one page module per route.
import {actingAs, setActingAs, token, setToken, parseHash, h, clear} from './api.js';
import {runsPage} from './runs.js';
import {runPage} from './run.js';
import {comparePage} from './compare.js';
import {lineagePage} from './lineage.js';
import {registryPage} from './registry.js';
import {auditPage} from './audit.js';

const PAGES = {runs: runsPage, run: runPage, compare: comparePage, lineage: lineagePage,
               registry: registryPage, audit: auditPage};
let cleanup = null;
let generation = 0;

async function route() {
  const {path, query} = parseHash();
  const name = PAGES[path[0]] ? path[0] : 'runs';
  const view = document.getElementById('view');
  for (const a of document.querySelectorAll('header nav a')) {
    if (a.dataset.route === (name === 'run' ? 'runs' : name)) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (cleanup) { cleanup(); cleanup = null; }
  const mine = ++generation;
  // Pages register timers (live runs) through ctx.onLeave; ctx.current() tells a slow page
  // that the user has moved on, so it does not draw over the next one.
  const leaves = [];
  const ctx = {path: path.slice(1), query, onLeave: f => leaves.push(f), current: () => mine === generation};
  cleanup = () => leaves.forEach(f => f());
  clear(view);
  try {
    await PAGES[name](view, ctx);
  } catch (err) {
    if (mine === generation) clear(view, h('div', {class: 'error', role: 'alert'}, err.message || String(err)));
  }
  if (mine === generation) document.body.dataset.page = name;
}

function setupWho() {
  const input = document.getElementById('acting-as');
  const secret = document.getElementById('token');
  input.value = actingAs();
  secret.value = token();
  document.getElementById('who').addEventListener('submit', evt => {
    evt.preventDefault();
    setActingAs(input.value.trim());
    setToken(secret.value.trim());
    route();
  });
}

window.addEventListener('hashchange', route);
window.addEventListener('DOMContentLoaded', () => { setupWho(); route(); });
