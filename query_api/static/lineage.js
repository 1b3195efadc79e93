// Lineage explorer: the graph around any node (run, dataset version, model version, …),
// upstream or downstream to a depth, laid out in layers by distance; a node click re-centres.
import {gql, h, clear, errorBox, showError, link} from './api.js';

const BOX_W = 200, BOX_H = 42, COL_GAP = 90, ROW_GAP = 14, MARGIN = 20;
const MAX_PER_LAYER = 30;  // a dataset used by 10,000 runs: draw 30, list the rest below

const LINEAGE = `query($id: ID!, $dir: Direction!, $depth: Int!) {
  lineage(id: $id, direction: $dir, depth: $depth) { nodes { id kind name } edges { source target kind } truncated } }`;

/** Where a node has its own page besides the lineage: runs and model versions. */
export function pageOf(nodeId) {
  const [prefix, ...rest] = nodeId.split(':');
  const ident = rest.join(':');
  if (prefix === 'run') return `#/run/${encodeURIComponent(ident)}`;
  if (prefix === 'modelversion' || prefix === 'registeredmodel') {
    return link('registry', {model: prefix === 'registeredmodel' ? ident : ident.slice(0, ident.lastIndexOf('/'))});
  }
  return null;
}

/** Layers by breadth-first distance from the root over the returned edges (either way). */
function layers(rootId, nodes, edges) {
  const near = new Map(nodes.map(n => [n.id, []]));
  for (const e of edges) { near.get(e.source)?.push(e.target); near.get(e.target)?.push(e.source); }
  const depth = new Map([[rootId, 0]]);
  const queue = [rootId];
  while (queue.length) {
    const id = queue.shift();
    for (const next of near.get(id) || []) if (!depth.has(next)) { depth.set(next, depth.get(id) + 1); queue.push(next); }
  }
  const cols = [];
  for (const n of nodes) {
    const d = depth.has(n.id) ? depth.get(n.id) : Math.max(1, ...depth.values()) + 1;
    (cols[d] = cols[d] || []).push(n);
  }
  return cols.filter(Boolean).map(col => col.sort((a, b) => a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name)));
}

function clip(text, n) { return text.length > n ? `${text.slice(0, n - 1)}…` : text; }

function drawGraph(rootId, graph, direction, depth) {
  const all = layers(rootId, graph.nodes, graph.edges);
  const hidden = all.reduce((n, col) => n + Math.max(0, col.length - MAX_PER_LAYER), 0);
  const cols = all.map(col => col.slice(0, MAX_PER_LAYER));
  // Upstream reads right to left (the root is what was made from the rest), downstream left to right.
  const ordered = direction === 'UPSTREAM' ? [...cols].reverse() : cols;
  const tallest = Math.max(...cols.map(c => c.length));
  const width = MARGIN * 2 + ordered.length * BOX_W + (ordered.length - 1) * COL_GAP;
  const height = MARGIN * 2 + tallest * BOX_H + (tallest - 1) * ROW_GAP;
  const pos = new Map();
  ordered.forEach((col, i) => {
    const top = MARGIN + (height - MARGIN * 2 - (col.length * BOX_H + (col.length - 1) * ROW_GAP)) / 2;
    col.forEach((n, j) => pos.set(n.id, {x: MARGIN + i * (BOX_W + COL_GAP), y: top + j * (BOX_H + ROW_GAP)}));
  });
  const svg = h('svg', {viewBox: `0 0 ${width} ${height}`, style: `max-width:${width}px`, role: 'group',
                        'aria-label': `lineage graph, ${graph.nodes.length} nodes`},
    h('defs', {}, h('marker', {id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse'},
      h('path', {d: 'M0,0L10,5L0,10z', fill: '#a5adbb'}))));
  for (const e of graph.edges) {
    const a = pos.get(e.source), b = pos.get(e.target);
    if (!a || !b) continue;
    const leftToRight = a.x <= b.x;
    const x1 = leftToRight ? a.x + BOX_W : a.x, x2 = leftToRight ? b.x : b.x + BOX_W;
    const y1 = a.y + BOX_H / 2, y2 = b.y + BOX_H / 2, mid = (x1 + x2) / 2;
    const d = a.x === b.x ? `M${a.x + BOX_W},${y1}C${a.x + BOX_W + 40},${y1} ${a.x + BOX_W + 40},${y2} ${a.x + BOX_W},${y2}`
      : `M${x1},${y1}C${mid},${y1} ${mid},${y2} ${x2},${y2}`;
    svg.append(h('path', {class: 'edge', d, 'marker-end': 'url(#arrow)'}, h('title', {}, `${e.source} ${e.kind} ${e.target}`)),
      h('text', {class: 'edgelabel', x: mid, y: (y1 + y2) / 2 - 3, 'text-anchor': 'middle'}, e.kind));
  }
  for (const n of graph.nodes) {
    const p = pos.get(n.id);
    const href = link('lineage', {id: n.id, dir: direction, depth});
    svg.append(h('svg:a', {href, class: `node${n.id === rootId ? ' root' : ''}`, 'data-node': n.id,
                           'aria-label': `${n.kind} ${n.name}: re-centre the lineage here`},
      h('title', {}, n.id),
      h('rect', {x: p.x, y: p.y, width: BOX_W, height: BOX_H}),
      h('text', {class: 'kind', x: p.x + 8, y: p.y + 14}, n.kind),
      h('text', {x: p.x + 8, y: p.y + 32}, clip(n.name, 28))));
  }
  return h('div', {class: 'graph'}, svg,
    hidden ? h('p', {class: 'small muted'}, `${hidden} more nodes are not drawn (at most ${MAX_PER_LAYER} per layer); all are listed below.`) : null);
}

async function suggestions() {
  const data = await gql(`{ registeredModels { name versions { version stage } }
    runs(first: 8, orderBy: ["attributes.start_time DESC"]) { edges { node { id name } } } }`);
  return h('div', {class: 'grid2'},
    h('section', {class: 'panel'}, h('h2', {style: 'margin-top:0'}, 'Model versions'),
      h('ul', {class: 'plain'}, data.registeredModels.flatMap(m => m.versions.map(v =>
        h('li', {}, h('a', {href: link('lineage', {id: `modelversion:${m.name}/${v.version}`})}, `${m.name} v${v.version}`),
          ` (${v.stage})`))))),
    h('section', {class: 'panel'}, h('h2', {style: 'margin-top:0'}, 'Recent runs'),
      h('ul', {class: 'plain'}, data.runs.edges.map(({node}) =>
        h('li', {}, h('a', {href: link('lineage', {id: `run:${node.id}`})}, node.name || node.id))))));
}

export async function lineagePage(view, ctx) {
  const q = ctx.query;
  const id = q.get('id') || '';
  const direction = q.get('dir') === 'DOWNSTREAM' ? 'DOWNSTREAM' : 'UPSTREAM';
  const depth = Math.min(10, Math.max(1, +(q.get('depth') || 3)));
  const error = errorBox();
  const idInput = h('input', {id: 'lineage-id', type: 'text', class: 'wide', value: id,
                              placeholder: 'run:<id>, modelversion:<name>/<version>, datasetversion:<name>@sha256:…'});
  const depthInput = h('input', {id: 'lineage-depth', type: 'number', min: 1, max: 10, value: depth, style: 'width:5em'});
  const go = changes => { location.hash = link('lineage', {id, dir: direction, depth, ...changes}); };
  const dirButton = dir => h('button', {type: 'button', 'aria-pressed': String(direction === dir),
                                        onclick: () => go({dir})}, dir === 'UPSTREAM' ? 'Upstream' : 'Downstream');
  const form = h('form', {class: 'row panel', onsubmit: evt => {
    evt.preventDefault();
    go({id: idInput.value.trim(), depth: depthInput.value});
  }}, h('label', {for: 'lineage-id'}, 'Start from'), idInput,
  h('label', {for: 'lineage-depth'}, 'Depth'), depthInput, h('button', {type: 'submit', class: 'primary'}, 'Show'),
  h('span', {role: 'group', 'aria-label': 'Direction', class: 'row'}, dirButton('UPSTREAM'), dirButton('DOWNSTREAM')));
  clear(view, h('h1', {}, 'Lineage'), form, error);
  if (!id) {
    view.append(h('p', {class: 'muted'}, 'Pick a starting point, or type a node id above.'));
    try { view.append(await suggestions()); } catch (err) { showError(error, err); }
    return;
  }
  let graph;
  try { graph = (await gql(LINEAGE, {id, dir: direction, depth})).lineage; } catch (err) { showError(error, err); return; }
  if (!ctx.current()) return;
  const root = graph.nodes.find(n => n.id === id) || graph.nodes[0];
  if (!root) { view.append(h('p', {}, `Nothing is linked to ${id} ${direction.toLowerCase()}.`)); return; }
  const own = pageOf(root.id);
  view.append(h('div', {class: 'row'}, h('h2', {}, `${root.kind} ${root.name}`), h('span', {class: 'spacer'}),
    own ? h('a', {class: 'button', href: own}, 'Open') : null,
    h('a', {class: 'button', href: link('audit', {id: root.id})}, 'Audit timeline')),
  h('p', {class: 'small muted'}, `${graph.nodes.length} nodes, ${graph.edges.length} edges ${direction.toLowerCase()}, depth ${depth}. Click a node to re-centre.`),
  // The API stops at its node limit (nearest nodes first): say so rather than look complete.
  graph.truncated ? h('p', {class: 'small', id: 'lineage-truncated', role: 'status'},
    `Truncated: only the ${graph.nodes.length} nearest nodes are shown; more lie within depth ${depth}. Lower the depth or re-centre on a node to see the rest.`) : null,
  drawGraph(root.id, graph, direction, depth),
  h('h2', {}, 'Nodes'),
  h('table', {class: 'data', id: 'lineage-nodes'}, h('thead', {}, h('tr', {}, ['Kind', 'Name', 'Id', ''].map(c => h('th', {scope: 'col'}, c)))),
    h('tbody', {}, graph.nodes.map(n => h('tr', {'data-node': n.id}, h('td', {}, n.kind), h('td', {}, n.name),
      h('td', {class: 'wrap'}, h('code', {class: 'small'}, n.id)),
      h('td', {}, h('a', {href: link('lineage', {id: n.id, dir: direction, depth})}, 'Re-centre'), ' ',
        pageOf(n.id) ? h('a', {href: pageOf(n.id)}, 'Open') : null, ' ',
        h('a', {href: link('audit', {id: n.id})}, 'Audit')))))));
}
