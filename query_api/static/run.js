// One run: params, tags, latest metrics, charts over steps (downsampled by the server),
// artifacts, inputs/outputs, code and environment; polled while the run is RUNNING.
import {gql, GraphQLFailure, artifactLink, h, clear, errorBox, showError, fmtNum, fmtTime, duration, badge, link, runNode} from './api.js';
import {lineChart} from './charts.js';

export const MAX_POINTS = 500;
const POLL_MS = 3000;
let serverDownsamples = true;  // false once the API says metricHistory has no maxPoints

const RUN = `query($id: ID!) { run(id: $id) { id name status startTime endTime project { name }
  experiment { name } parent { id name } params { key value } tags { key value }
  metrics { key value step timestamp min max count } artifacts { name digest uri kind size }
  inputs { id kind name } outputs { id kind name } codeVersion { commit repository branch dirty }
  environment } }`;

/** Histories of `keys` for one run, in as few requests as the alias limit allows. */
export async function metricHistories(runId, keys) {
  const out = {};
  for (let i = 0; i < keys.length; i += 25) {
    const chunk = keys.slice(i, i + 25);
    const ask = down => {
      const vars = chunk.map((_, j) => `$k${j}: String!`).join(', ');
      const fields = chunk.map((_, j) =>
        `m${j}: metricHistory(key: $k${j}${down ? `, maxPoints: ${MAX_POINTS}` : ''}) { step value }`).join(' ');
      const variables = {id: runId};
      chunk.forEach((k, j) => { variables[`k${j}`] = k; });
      return gql(`query($id: ID!, ${vars}) { run(id: $id) { ${fields} } }`, variables);
    };
    let data;
    try {
      data = await ask(serverDownsamples);
    } catch (err) {
      // An older server without server-side downsampling: take the full history.
      if (!(err instanceof GraphQLFailure) || !/maxPoints/.test(err.message)) throw err;
      serverDownsamples = false;
      data = await ask(false);
    }
    chunk.forEach((k, j) => { out[k] = data.run ? data.run[`m${j}`] : []; });
  }
  return out;
}

/** Where a run's input or output leads: a run page, an artifact download, or the lineage. */
export function entityLink(e) {
  const label = `${e.name || e.id}`;
  if (e.kind === 'Run') return h('a', {href: `#/run/${encodeURIComponent(e.id)}`}, label);
  const node = `${e.kind.toLowerCase()}:${e.id}`;
  return h('span', {}, h('a', {href: link('lineage', {id: node})}, label),
    e.kind === 'Artifact' ? [' ', artifactLink(e.id, e.name, 'download')] : '');
}

function kvTable(items, caption, numeric = false) {
  if (!items.length) return h('p', {class: 'muted'}, `No ${caption.toLowerCase()}.`);
  return h('table', {class: 'data', 'aria-label': caption},
    h('tbody', {}, items.map(i => h('tr', {}, h('th', {scope: 'row'}, i.key),
      h('td', {class: numeric ? 'num' : 'wrap'}, numeric ? fmtNum(i.value) : i.value)))));
}

function bytes(n) {
  return n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`;
}

export async function runPage(view, ctx) {
  const id = ctx.path[0];
  const error = errorBox();
  const header = h('div');
  const body = h('div');
  const charts = h('div', {class: 'grid2', id: 'charts'});
  clear(view, header, error, h('h2', {}, 'Metrics over steps'), charts, body);
  const drawn = new Map();  // metric key → chart, kept across polls so zoom and scale stay

  async function refresh() {
    const data = await gql(RUN, {id});
    if (!ctx.current()) return null;
    const run = data.run;
    if (!run) { clear(header, h('h1', {}, 'Run not found'), h('p', {}, `No run with id ${id}.`)); return null; }
    renderInfo(run);
    const keys = run.metrics.filter(m => m.count > 1).map(m => m.key);
    const histories = await metricHistories(id, keys);
    if (!ctx.current()) return null;
    for (const key of keys) {
      const series = [{name: key, points: histories[key]}];
      if (drawn.has(key)) drawn.get(key).update(series);
      else {
        const note = run.metrics.find(m => m.key === key).count > histories[key].length
          ? `${histories[key].length} of ${run.metrics.find(m => m.key === key).count} points` : '';
        const chart = lineChart(key, series, {note});
        drawn.set(key, chart);
        charts.append(chart.el);
      }
    }
    if (!keys.length) clear(charts, h('p', {class: 'muted'}, 'No metric has more than one step.'));
    return run;
  }

  function renderInfo(run) {
    clear(header,
      h('p', {class: 'small'}, h('a', {href: link('runs', {project: run.project?.name, experiment: run.experiment?.name})},
        `${run.project?.name || ''} / ${run.experiment?.name || ''}`)),
      h('div', {class: 'row'}, h('h1', {id: 'run-title'}, run.name || run.id), badge(run.status),
        run.status === 'RUNNING' ? h('span', {class: 'small muted', id: 'live'}, `live: refreshed ${new Date().toLocaleTimeString()}`) : null,
        h('span', {class: 'spacer'}),
        h('a', {class: 'button', href: link('lineage', {id: runNode(run.id)})}, 'Lineage'),
        h('a', {class: 'button', href: link('audit', {id: runNode(run.id)})}, 'Audit timeline')),
      h('dl', {class: 'kv panel'},
        h('dt', {}, 'Run id'), h('dd', {}, h('code', {}, run.id)),
        h('dt', {}, 'Started'), h('dd', {}, fmtTime(run.startTime)),
        h('dt', {}, 'Ended'), h('dd', {}, fmtTime(run.endTime) || '—'),
        h('dt', {}, 'Duration'), h('dd', {}, duration(run.startTime, run.endTime)),
        run.parent ? [h('dt', {}, 'Parent'), h('dd', {}, h('a', {href: `#/run/${encodeURIComponent(run.parent.id)}`}, run.parent.name || run.parent.id))] : null));
    const latest = run.metrics.map(m => h('tr', {}, h('th', {scope: 'row'}, m.key), h('td', {class: 'num'}, fmtNum(m.value)),
      h('td', {class: 'num'}, m.step), h('td', {class: 'num'}, fmtNum(m.min)), h('td', {class: 'num'}, fmtNum(m.max)),
      h('td', {class: 'num'}, m.count)));
    const code = run.codeVersion;
    clear(body, h('div', {class: 'grid2'},
      h('section', {class: 'panel', 'aria-labelledby': 'params-h'}, h('h2', {id: 'params-h', style: 'margin-top:0'}, 'Parameters'),
        kvTable(run.params, 'Parameters'), h('h3', {}, 'Tags'),
        run.tags.length ? h('p', {}, run.tags.map(t => h('span', {class: 'tag'}, `${t.key}: ${t.value}`))) : h('p', {class: 'muted'}, 'No tags.')),
      h('section', {class: 'panel', 'aria-labelledby': 'metrics-h'}, h('h2', {id: 'metrics-h', style: 'margin-top:0'}, 'Latest metrics'),
        run.metrics.length ? h('table', {class: 'data', id: 'latest-metrics'}, h('thead', {}, h('tr', {},
          ['Metric', 'Latest', 'Step', 'Min', 'Max', 'Points'].map(c => h('th', {scope: 'col'}, c)))), h('tbody', {}, latest))
          : h('p', {class: 'muted'}, 'No metrics.')),
      h('section', {class: 'panel', 'aria-labelledby': 'art-h'}, h('h2', {id: 'art-h', style: 'margin-top:0'}, 'Artifacts'),
        run.artifacts.length ? h('ul', {class: 'plain'}, run.artifacts.map(a => h('li', {},
          artifactLink(a.digest, a.name),
          ` · ${a.kind} · ${bytes(a.size)} `, h('code', {class: 'small muted'}, a.digest.slice(0, 19))))) : h('p', {class: 'muted'}, 'No artifacts.'),
        h('h3', {}, 'Inputs'), run.inputs.length ? h('ul', {class: 'plain', id: 'inputs'}, run.inputs.map(e => h('li', {}, `${e.kind}: `, entityLink(e)))) : h('p', {class: 'muted'}, 'None.'),
        h('h3', {}, 'Outputs'), run.outputs.length ? h('ul', {class: 'plain'}, run.outputs.map(e => h('li', {}, `${e.kind}: `, entityLink(e)))) : h('p', {class: 'muted'}, 'None.')),
      h('section', {class: 'panel', 'aria-labelledby': 'env-h'}, h('h2', {id: 'env-h', style: 'margin-top:0'}, 'Code and environment'),
        code ? h('dl', {class: 'kv'}, h('dt', {}, 'Commit'), h('dd', {}, h('code', {}, code.commit), code.dirty ? ' (dirty)' : ''),
          h('dt', {}, 'Branch'), h('dd', {}, code.branch || '—'), h('dt', {}, 'Repository'), h('dd', {}, code.repository || '—'))
          : h('p', {class: 'muted'}, 'No code version recorded.'),
        run.environment ? h('details', {}, h('summary', {}, 'Environment'), h('pre', {class: 'json'}, JSON.stringify(run.environment, null, 2)))
          : h('p', {class: 'muted'}, 'No environment recorded.'))));
  }

  let run;
  try { run = await refresh(); } catch (err) { showError(error, err); return; }
  if (run && run.status === 'RUNNING') {
    const timer = setInterval(async () => {
      try {
        const now = await refresh();
        showError(error, null);
        if (!now || now.status !== 'RUNNING') clearInterval(timer);
      } catch (err) { showError(error, err); }
    }, POLL_MS);
    ctx.onLeave(() => clearInterval(timer));
  }
}
