// Compare N runs: overlaid metric charts, params and metrics side by side with differences
// highlighted, and parallel coordinates of the params against a chosen metric.
import {gql, GraphQLFailure, h, clear, errorBox, showError, fmtNum, badge, link, PALETTE} from './api.js';
import {lineChart, parallelCoords} from './charts.js';
import {metricHistories, MAX_POINTS} from './run.js';

const MAX_RUNS = 20;

async function loadRuns(ids) {
  const vars = ids.map((_, i) => `$i${i}: ID!`).join(', ');
  const fields = ids.map((_, i) => `r${i}: run(id: $i${i}) { id name status params { key value }
    metrics { key value count } tags { key value } }`).join(' ');
  const variables = Object.fromEntries(ids.map((id, i) => [`i${i}`, id]));
  const data = await gql(`query(${vars}) { ${fields} }`, variables);
  return ids.map((_, i) => data[`r${i}`]).filter(Boolean);
}

const COMPARE = `query($ids: [ID!]!, $keys: [String!]) {
  compareRuns(ids: $ids, metricKeys: $keys, maxPoints: ${MAX_POINTS}) { histories { runId key points { step value } } } }`;

/** runs[i]'s histories of `keys`, as [{key: points}]: one compareRuns request (downsampled by
 * the server), or one request per run where the server has no compareRuns. */
async function histories(runs, keys) {
  try {
    const data = await gql(COMPARE, {ids: runs.map(r => r.id), keys});
    const byRun = new Map(runs.map(r => [r.id, {}]));
    for (const s of data.compareRuns.histories) if (byRun.has(s.runId)) byRun.get(s.runId)[s.key] = s.points;
    return runs.map(r => byRun.get(r.id));
  } catch (err) {
    if (!(err instanceof GraphQLFailure)) throw err;
    return Promise.all(runs.map(r => metricHistories(r.id, keys.filter(k => r.metrics.some(m => m.key === k)))));
  }
}

function table(runs, keys, group, {numeric = false, onlyDiff = false} = {}) {
  const value = (run, key) => run[group].find(i => i.key === key)?.value;
  const rows = keys.map(key => {
    const values = runs.map(r => value(r, key));
    const differs = new Set(values.map(v => (v === undefined ? '∅' : String(v)))).size > 1;
    if (onlyDiff && !differs) return null;
    return h('tr', {class: differs ? 'differs' : null, 'data-key': key},
      h('th', {scope: 'row'}, key, differs ? h('span', {class: 'small', style: 'color:#a15c00'}, ' (differs)') : ''),
      values.map(v => h('td', {class: numeric ? 'num' : ''}, v === undefined ? '—' : numeric ? fmtNum(v) : v)));
  });
  return h('div', {class: 'scroll'}, h('table', {class: 'data', id: `compare-${group}`},
    h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, group === 'params' ? 'Parameter' : 'Metric'),
      runs.map((r, i) => h('th', {scope: 'col'}, h('span', {style: `color:${PALETTE[i % PALETTE.length]}`}, '■ '),
        h('a', {href: `#/run/${encodeURIComponent(r.id)}`}, r.name || r.id))))),
    h('tbody', {}, rows)));
}

export async function comparePage(view, ctx) {
  const ids = (ctx.query.get('ids') || '').split(',').filter(Boolean).slice(0, MAX_RUNS);
  const error = errorBox();
  clear(view, h('h1', {}, 'Compare runs'), error);
  if (ids.length < 2) {
    view.append(h('p', {}, 'Select two or more runs in the ', h('a', {href: link('runs')}, 'runs table'),
      ' and press “Compare selected”.'));
    return;
  }
  let runs;
  try { runs = await loadRuns(ids); } catch (err) { showError(error, err); return; }
  if (!ctx.current()) return;
  const paramKeys = [...new Set(runs.flatMap(r => r.params.map(p => p.key)))].sort();
  const metricKeys = [...new Set(runs.flatMap(r => r.metrics.map(m => m.key)))].sort();
  const stepped = [...new Set(runs.flatMap(r => r.metrics.filter(m => m.count > 1).map(m => m.key)))].sort();

  const onlyDiff = h('input', {type: 'checkbox', id: 'only-diff'});
  const paramsBox = h('div');
  const drawParams = () => clear(paramsBox, table(runs, paramKeys, 'params', {onlyDiff: onlyDiff.checked}));
  onlyDiff.addEventListener('change', drawParams);
  drawParams();

  const metricSelect = h('select', {id: 'pc-metric'}, metricKeys.map(k => h('option', {value: k}, k)));
  const pcBox = h('div', {id: 'parallel'});
  const drawPc = () => {
    const key = metricSelect.value;
    const differing = paramKeys.filter(k => new Set(runs.map(r => r.params.find(p => p.key === k)?.value)).size > 1);
    // The params that differ tell the story; with fewer than two, show them all (constant axes too).
    const dims = (differing.length >= 2 ? differing : paramKeys).map(k => ({key: `params.${k}`, label: k}));
    if (key) dims.push({key: `metrics.${key}`, label: key});
    const rows = runs.map(r => ({name: r.name || r.id, values: Object.fromEntries([
      ...r.params.map(p => [`params.${p.key}`, p.value]), ...r.metrics.map(m => [`metrics.${m.key}`, m.value])])}));
    clear(pcBox, dims.length ? parallelCoords(dims, rows, `metrics.${key}`) : h('p', {class: 'muted'}, 'Nothing to plot.'));
  };
  metricSelect.addEventListener('change', drawPc);

  const charts = h('div', {class: 'grid2', id: 'charts'});
  view.append(
    h('p', {class: 'row'}, runs.map((r, i) => h('span', {class: 'tag'}, h('span', {style: `color:${PALETTE[i % PALETTE.length]}`}, '■ '),
      r.name || r.id, ' ', badge(r.status)))),
    h('h2', {}, 'Metrics over steps'), charts,
    h('div', {class: 'grid2'},
      h('section', {class: 'panel'}, h('div', {class: 'row'}, h('h2', {style: 'margin:0'}, 'Parameters'), h('span', {class: 'spacer'}),
        onlyDiff, h('label', {for: 'only-diff'}, 'Only differences')), paramsBox),
      h('section', {class: 'panel'}, h('h2', {style: 'margin-top:0'}, 'Latest metrics'), table(runs, metricKeys, 'metrics', {numeric: true}))),
    h('section', {class: 'panel'}, h('div', {class: 'row'}, h('h2', {style: 'margin:0'}, 'Parallel coordinates'),
      h('span', {class: 'spacer'}), h('label', {for: 'pc-metric'}, 'Colour by metric'), metricSelect), pcBox));
  drawPc();

  try {
    const byRun = await histories(runs, stepped);
    if (!ctx.current()) return;
    for (const key of stepped) {
      const series = runs.map((r, i) => ({name: r.name || r.id, color: PALETTE[i % PALETTE.length], points: byRun[i][key] || []}))
        .filter(s => s.points.length);
      charts.append(lineChart(key, series).el);
    }
    if (!stepped.length) charts.append(h('p', {class: 'muted'}, 'None of these runs has a metric with more than one step.'));
  } catch (err) { showError(error, err); }
}
