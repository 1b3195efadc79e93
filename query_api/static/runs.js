// Projects, experiments and the runs table: the API's filter language, sortable and
// selectable columns, cursor pagination (runs(first, after) + totalCount), selection → compare.
import {gql, identityHeaders, h, clear, errorBox, showError, fmtNum, fmtTime, duration, badge, link} from './api.js';

const COLUMNS_KEY = 'modeldb.columns';
const selected = new Map();  // run id → name, kept across pages and filters for "compare"

const RUNS = `query($f: String, $o: [String!], $first: Int!, $after: String, $p: String, $e: String) {
  runs(filter: $f, orderBy: $o, first: $first, after: $after, project: $p, experiment: $e) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { id name status startTime endTime project { name } experiment { name }
                   params { key value } metrics { key value } tags { key value } } } } }`;

function savedColumns() {
  try { return JSON.parse(localStorage.getItem(COLUMNS_KEY)); } catch { return null; }
}

function valueOf(run, column) {
  const [group, ...rest] = column.split('.');
  const key = rest.join('.');
  const item = (run[group] || []).find(i => i.key === key);
  return item ? item.value : undefined;
}

/** Keys as the filter language spells them (back-quoted when they hold dots or spaces). */
export function filterKey(group, key) {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `${group}.${key}` : `${group}.\`${key}\``;
}

export async function runsPage(view, ctx) {
  const q = ctx.query;
  const state = {filter: q.get('filter') || '', order: q.get('order') || '', project: q.get('project') || '',
                 experiment: q.get('experiment') || '', size: +(q.get('size') || 50), cursors: [null], page: 0};
  const error = errorBox();
  const filterInput = h('input', {id: 'filter', type: 'search', class: 'wide', value: state.filter,
    placeholder: "metrics.accuracy > 0.9 and params.alpha < 0.1 and tags.family = 'linear'",
    'aria-describedby': 'filter-help'});
  const sizeSelect = h('select', {id: 'page-size'}, [25, 50, 100, 200].map(n =>
    h('option', {value: n, selected: n === state.size}, String(n))));
  const sidebar = h('nav', {class: 'panel', 'aria-label': 'Projects and experiments'}, h('p', {class: 'muted'}, 'Loading…'));
  const summary = h('p', {class: 'muted', id: 'run-count'});
  const table = h('div', {class: 'scroll'});
  const pager = h('div', {class: 'row pager'});
  const compareButton = h('button', {type: 'button', class: 'primary', id: 'compare-selected',
                                     onclick: () => { location.hash = link('compare', {ids: [...selected.keys()].join(',')}); }});
  const columnsBox = h('details', {class: 'columns'});
  const demoBox = h('div');

  const go = changes => { location.hash = link('runs', {...pick(state), ...changes}); };
  const form = h('form', {class: 'row', role: 'search', onsubmit: evt => {
    evt.preventDefault();
    go({filter: filterInput.value.trim(), size: sizeSelect.value});
  }},
  h('label', {for: 'filter'}, 'Filter'), filterInput, h('button', {type: 'submit', class: 'primary'}, 'Search'),
  h('label', {for: 'page-size'}, 'Per page'), sizeSelect);

  clear(view, h('div', {class: 'layout'}, sidebar, h('section', {'aria-labelledby': 'runs-title'},
    h('h1', {id: 'runs-title'}, 'Runs', state.project ? ` · ${state.project}` : '', state.experiment ? ` / ${state.experiment}` : ''),
    form,
    h('p', {id: 'filter-help', class: 'small muted'},
      'Comparisons = != < <= > >= on metrics.KEY, params.KEY, tags.KEY, attributes.status …; and, or, not, in (…), like, is null; metrics.loss.min.'),
    error,
    h('div', {class: 'row'}, summary, h('span', {class: 'spacer'}), columnsBox, compareButton),
    table, pager, demoBox)));

  let shown = null;
  loadSidebar(sidebar, state);
  await loadPage();

  async function loadPage() {
    let data;
    try {
      data = await gql(RUNS, {f: state.filter || null, o: state.order ? [state.order] : null, first: state.size,
                             after: state.cursors[state.page], p: state.project || null, e: state.experiment || null});
    } catch (err) {
      showError(error, err);
      summary.textContent = '';
      clear(table);
      return null;
    }
    if (!ctx.current()) return null;
    showError(error, null);
    render(data.runs);
    return data.runs;
  }

  function render(runs) {
    shown = runs;  // the column chooser re-renders the page already fetched
    const nodes = runs.edges.map(e => e.node);
    const from = state.page * state.size;
    summary.textContent = runs.totalCount
      ? `${from + 1}–${from + nodes.length} of ${runs.totalCount} runs` : 'No runs match.';
    const columns = chooseColumns(nodes);
    renderColumnsChooser(nodes, columns);
    const sortButton = (label, key) => {
      const [cur, dir] = state.order.split(' ');
      const active = cur === key;
      const next = active && dir !== 'DESC' ? `${key} DESC` : key;
      return h('th', {scope: 'col', 'aria-sort': active ? (dir === 'DESC' ? 'descending' : 'ascending') : 'none'},
        h('button', {type: 'button', class: 'sort', onclick: () => go({order: next})},
          label, active ? (dir === 'DESC' ? ' ▼' : ' ▲') : ''));
    };
    const head = h('tr', {},
      h('th', {scope: 'col'}, h('span', {class: 'muted small'}, 'Select')),
      sortButton('Name', 'attributes.name'), sortButton('Status', 'attributes.status'),
      h('th', {scope: 'col'}, 'Experiment'), sortButton('Started', 'attributes.start_time'),
      h('th', {scope: 'col'}, 'Duration'),
      columns.map(c => { const [g, ...k] = c.split('.'); return sortButton(c, filterKey(g, k.join('.'))); }));
    const rows = nodes.map(run => h('tr', {'data-run-id': run.id},
      h('td', {}, h('input', {type: 'checkbox', 'aria-label': `select ${run.name || run.id}`,
        checked: selected.has(run.id), onchange: evt => {
          if (evt.target.checked) selected.set(run.id, run.name); else selected.delete(run.id);
          updateCompare();
        }})),
      h('td', {}, h('a', {href: `#/run/${encodeURIComponent(run.id)}`}, run.name || run.id)),
      h('td', {}, badge(run.status)),
      h('td', {}, [run.project?.name, run.experiment?.name].filter(Boolean).join(' / ')),
      h('td', {}, fmtTime(run.startTime)),
      h('td', {class: 'num'}, duration(run.startTime, run.endTime)),
      columns.map(c => {
        const v = valueOf(run, c);
        return h('td', {class: c.startsWith('tags.') ? '' : 'num'}, v === undefined ? '' : c.startsWith('metrics.') ? fmtNum(v) : v);
      })));
    clear(table, h('table', {class: 'data', id: 'runs-table'}, h('thead', {}, head), h('tbody', {}, rows)));
    clear(pager,
      h('button', {type: 'button', disabled: state.page === 0, onclick: () => { state.page = 0; loadPage(); }}, 'First'),
      h('button', {type: 'button', disabled: state.page === 0, onclick: () => { state.page -= 1; loadPage(); }}, 'Previous'),
      h('span', {class: 'muted'}, `page ${state.page + 1} of ${Math.max(1, Math.ceil(runs.totalCount / state.size))}`),
      h('button', {type: 'button', id: 'next-page', disabled: !runs.pageInfo.hasNextPage, onclick: () => {
        state.cursors[state.page + 1] = runs.pageInfo.endCursor; state.page += 1; loadPage();
      }}, 'Next'));
    updateCompare();
    if (runs.totalCount === 0 && !state.filter) renderDemo(); else clear(demoBox);
  }

  function updateCompare() {
    compareButton.textContent = `Compare selected (${selected.size})`;
    compareButton.disabled = selected.size < 2;
  }

  function chooseColumns(nodes) {
    const saved = savedColumns();
    if (saved) return saved;
    const seen = {params: new Set(), metrics: new Set()};
    for (const n of nodes) for (const g of ['metrics', 'params']) for (const i of n[g]) seen[g].add(i.key);
    return [...[...seen.metrics].slice(0, 4).map(k => `metrics.${k}`), ...[...seen.params].slice(0, 4).map(k => `params.${k}`)];
  }

  function renderColumnsChooser(nodes, columns) {
    const keys = {metrics: new Set(), params: new Set(), tags: new Set()};
    for (const n of nodes) for (const g of Object.keys(keys)) for (const i of n[g]) keys[g].add(i.key);
    for (const c of columns) { const [g, ...k] = c.split('.'); keys[g]?.add(k.join('.')); }
    const chosen = new Set(columns);
    const open = columnsBox.open;
    clear(columnsBox, h('summary', {class: 'button'}, `Columns (${columns.length})`),
      h('div', {}, Object.entries(keys).map(([g, set]) => h('fieldset', {}, h('legend', {}, g),
        [...set].sort().map(k => {
          const col = `${g}.${k}`, id = `col-${col.replace(/[^A-Za-z0-9_-]/g, '_')}`;
          return h('div', {}, h('input', {type: 'checkbox', id, checked: chosen.has(col), onchange: evt => {
            if (evt.target.checked) chosen.add(col); else chosen.delete(col);
            localStorage.setItem(COLUMNS_KEY, JSON.stringify([...chosen]));
            render(shown);
          }}), ' ', h('label', {for: id}, k));
        }))),
      h('button', {type: 'button', onclick: () => { localStorage.removeItem(COLUMNS_KEY); render(shown); }}, 'Default columns')));
    columnsBox.open = open;
  }

  function renderDemo() {
    const button = h('button', {type: 'button', id: 'demo', class: 'primary', onclick: async () => {
      button.disabled = true;
      button.textContent = 'Training…';
      const r = await fetch('/api/v1/demo', {method: 'POST', headers: identityHeaders()});
      if (!r.ok && r.status !== 409) { button.textContent = `Demo failed (HTTP ${r.status})`; return; }
      for (let i = 0; i < 90 && ctx.current(); i++) {
        await new Promise(res => setTimeout(res, 2000));
        const runs = await loadPage();
        if (runs && runs.totalCount > 0) { loadSidebar(sidebar, state); if (runs.totalCount >= 15) break; }
      }
    }}, 'Load demo data');
    clear(demoBox, h('p', {class: 'panel'}, 'No runs yet? ', button,
      ' (trains a few real scikit-learn models; or run ', h('code', {}, 'modeldb demo --url URL'), ')'));
  }
}

function pick(state) {
  return {filter: state.filter, order: state.order, project: state.project, experiment: state.experiment,
          size: state.size === 50 ? '' : state.size};
}

async function loadSidebar(sidebar, state) {
  let data;
  try { data = await gql('{ projects { name description experiments { name } } }'); } catch (err) {
    clear(sidebar, h('div', {class: 'error', role: 'alert'}, err.message));
    return;
  }
  const here = (p, e) => (state.project === p && state.experiment === e ? 'true' : null);
  clear(sidebar, h('h2', {style: 'margin-top:0'}, 'Projects'),
    h('ul', {class: 'plain nav'},
      h('li', {}, h('a', {href: link('runs', {filter: state.filter}), 'aria-current': here('', '')}, 'All runs')),
      data.projects.map(p => h('li', {},
        h('a', {href: link('runs', {project: p.name}), 'aria-current': here(p.name, ''), title: p.description}, p.name),
        h('ul', {class: 'plain nav', style: 'padding-left:12px'}, p.experiments.map(e => h('li', {},
          h('a', {href: link('runs', {project: p.name, experiment: e.name}), 'aria-current': here(p.name, e.name)},
            e.name))))))));
}
