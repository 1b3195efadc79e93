// SVG charts written for ModelDB: a metric line chart (drag or buttons to zoom, log scale,
// smoothing) and a parallel-coordinates view. No library: the UI ships without a build step.
import {h, fmtNum, PALETTE} from './api.js';

const W = 640, H = 280, PAD = {l: 70, r: 14, t: 14, b: 40};

function ticks(lo, hi, n = 5) {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / n, mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= step0) || step0;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

/** Exponential moving average with debiasing (TensorBoard's smoothing); nulls pass through. */
export function smooth(points, weight) {
  if (!weight) return points;
  let last = 0, n = 0;
  return points.map(p => {
    if (p.value === null || !isFinite(p.value)) return p;
    last = last * weight + (1 - weight) * p.value;
    n += 1;
    return {...p, value: last / (1 - weight ** n)};
  });
}

function segments(points, x, y, logY) {
  // A NaN (null) or, in log scale, a non-positive value breaks the line.
  const out = [];
  let cur = [];
  for (const p of points) {
    const ok = p.value !== null && isFinite(p.value) && (!logY || p.value > 0);
    if (ok) cur.push(`${x(p.step).toFixed(1)},${y(p.value).toFixed(1)}`);
    else if (cur.length) { out.push(cur); cur = []; }
  }
  if (cur.length) out.push(cur);
  return out.map(c => (c.length === 1 ? `M${c[0]}h0.1` : `M${c.join('L')}`)).join('');
}

/**
 * A metric chart. `series`: [{name, color?, points: [{step, value}]}]. Returns {el, update}:
 * update(series) redraws with new data (live runs) keeping zoom, scale and smoothing.
 */
export function lineChart(title, series, {note = ''} = {}) {
  const state = {series, zoom: null, logY: false, smoothing: 0, drag: null};
  const svg = h('svg', {viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${title} over steps`});
  const readout = h('div', {class: 'readout', 'aria-live': 'polite'});
  const legend = h('div', {class: 'legend'});
  const id = `s${Math.random().toString(36).slice(2, 8)}`;
  const logButton = h('button', {type: 'button', 'aria-pressed': 'false', onclick: () => {
    state.logY = !state.logY; logButton.setAttribute('aria-pressed', String(state.logY)); draw();
  }}, 'Log scale');
  const slider = h('input', {type: 'range', min: 0, max: 0.99, step: 0.01, value: 0, id,
                            oninput: () => { state.smoothing = +slider.value; sliderValue.textContent = slider.value; draw(); }});
  const sliderValue = h('span', {class: 'small muted'}, '0');
  const el = h('figure', {class: 'chart panel', 'data-metric': title, style: 'margin:0'},
    h('div', {class: 'tools'},
      h('strong', {}, title), note ? h('span', {class: 'small muted'}, note) : null, h('span', {class: 'spacer'}),
      h('button', {type: 'button', 'aria-label': `zoom in on ${title}`, onclick: () => zoomBy(0.5)}, 'Zoom in'),
      h('button', {type: 'button', 'aria-label': `zoom out of ${title}`, onclick: () => zoomBy(2)}, 'Zoom out'),
      h('button', {type: 'button', 'aria-label': `reset zoom of ${title}`, onclick: () => { state.zoom = null; draw(); }}, 'Reset'),
      logButton,
      h('label', {for: id, class: 'small'}, 'Smoothing'), slider, sliderValue),
    svg, legend, readout);

  function extent() {
    let xs = [Infinity, -Infinity];
    for (const s of state.series) for (const p of s.points) { xs = [Math.min(xs[0], p.step), Math.max(xs[1], p.step)]; }
    return xs[0] === Infinity ? [0, 1] : xs[0] === xs[1] ? [xs[0] - 1, xs[1] + 1] : xs;
  }
  function zoomBy(f) {
    const full = extent(), [a, b] = state.zoom || full, mid = (a + b) / 2, half = (b - a) * f / 2;
    state.zoom = [Math.max(full[0], mid - half), Math.min(full[1], mid + half)];
    if (state.zoom[0] <= full[0] && state.zoom[1] >= full[1]) state.zoom = null;
    draw();
  }
  let scales = null;
  function draw() {
    const [x0, x1] = state.zoom || extent();
    const shown = state.series.map((s, i) => ({...s, color: s.color || PALETTE[i % PALETTE.length],
                                               smoothed: smooth(s.points, state.smoothing)}));
    let lo = Infinity, hi = -Infinity;
    for (const s of shown) for (const p of s.smoothed.concat(s.points)) {
      if (p.step < x0 || p.step > x1 || p.value === null || !isFinite(p.value)) continue;
      if (state.logY && p.value <= 0) continue;
      lo = Math.min(lo, p.value); hi = Math.max(hi, p.value);
    }
    if (lo === Infinity) { lo = state.logY ? 1 : 0; hi = lo * 10 || 1; }
    if (lo === hi) { const d = Math.abs(lo) * 0.1 || 1; lo -= state.logY ? lo / 2 : d; hi += d; }
    const f = v => (state.logY ? Math.log10(v) : v);
    const [f0, f1] = [f(lo), f(hi)];
    const x = s => PAD.l + (s - x0) / (x1 - x0) * (W - PAD.l - PAD.r);
    const y = v => H - PAD.b - (f(v) - f0) / (f1 - f0 || 1) * (H - PAD.t - PAD.b);
    scales = {x0, x1};
    const yTicks = state.logY ? ticks(f0, f1, 4).map(t => 10 ** t) : ticks(lo, hi, 5);
    const clip = `${id}-clip`;
    svg.replaceChildren(
      h('defs', {}, h('clipPath', {id: clip}, h('rect', {x: PAD.l, y: PAD.t, width: W - PAD.l - PAD.r, height: H - PAD.t - PAD.b}))),
      ...yTicks.map(t => h('g', {},
        h('line', {class: 'gridline', x1: PAD.l, x2: W - PAD.r, y1: y(t), y2: y(t)}),
        h('text', {x: PAD.l - 6, y: y(t) + 5, 'text-anchor': 'end'}, fmtNum(t)))),
      ...ticks(x0, x1, 6).filter(t => Number.isInteger(t) || x1 - x0 < 6).map(t =>
        h('text', {x: x(t), y: H - PAD.b + 20, 'text-anchor': 'middle'}, fmtNum(t))),
      h('line', {class: 'axis', x1: PAD.l, x2: W - PAD.r, y1: H - PAD.b, y2: H - PAD.b}),
      h('line', {class: 'axis', x1: PAD.l, x2: PAD.l, y1: PAD.t, y2: H - PAD.b}),
      h('text', {x: W - PAD.r, y: H - 2, 'text-anchor': 'end'}, 'step'),
      h('g', {'clip-path': `url(#${clip})`},
        ...shown.flatMap(s => [
          state.smoothing ? h('path', {class: 'raw', stroke: s.color, d: segments(s.points, x, y, state.logY)}) : null,
          h('path', {class: 'series', stroke: s.color, d: segments(s.smoothed, x, y, state.logY),
                     'data-series': s.name, 'data-points': s.points.length}),
        ].filter(Boolean))),
      h('rect', {class: 'overlay', x: PAD.l, y: PAD.t, width: W - PAD.l - PAD.r, height: H - PAD.t - PAD.b,
                 fill: 'transparent'}));
    legend.replaceChildren(...shown.map(s => h('span', {style: `--c:${s.color}`},
      `${s.name} (${s.points.length} pts)`)));
  }

  function stepAt(evt) {
    const r = svg.getBoundingClientRect(), px = (evt.clientX - r.left) * W / r.width;
    const {x0, x1} = scales;
    return x0 + (Math.min(Math.max(px, PAD.l), W - PAD.r) - PAD.l) / (W - PAD.l - PAD.r) * (x1 - x0);
  }
  svg.addEventListener('mousedown', evt => { state.drag = {from: stepAt(evt)}; evt.preventDefault(); });
  svg.addEventListener('mousemove', evt => {
    const s = stepAt(evt);
    if (state.drag) {
      const {x0, x1} = scales, px = v => PAD.l + (v - x0) / (x1 - x0) * (W - PAD.l - PAD.r);
      svg.querySelector('.brush')?.remove();
      const [a, b] = [Math.min(state.drag.from, s), Math.max(state.drag.from, s)];
      svg.append(h('rect', {class: 'brush', x: px(a), y: PAD.t, width: Math.max(1, px(b) - px(a)), height: H - PAD.t - PAD.b}));
    }
    readout.textContent = state.series.map(se => {
      let best = null;
      for (const p of smooth(se.points, state.smoothing)) if (!best || Math.abs(p.step - s) < Math.abs(best.step - s)) best = p;
      return best ? `${se.name} @ step ${best.step}: ${fmtNum(best.value)}` : '';
    }).filter(Boolean).join(' · ');
  });
  const finish = evt => {
    if (!state.drag) return;
    const s = stepAt(evt), [a, b] = [Math.min(state.drag.from, s), Math.max(state.drag.from, s)];
    state.drag = null;
    if (b - a > (scales.x1 - scales.x0) / 100) state.zoom = [a, b];
    draw();
  };
  svg.addEventListener('mouseup', finish);
  svg.addEventListener('mouseleave', finish);
  draw();
  return {el, update(next) { state.series = next; draw(); }};
}

function colorScale(t) {
  // blue (low) → orange (high)
  const a = [37, 88, 200], b = [217, 72, 15];
  return `rgb(${a.map((v, i) => Math.round(v + (b[i] - v) * t)).join(',')})`;
}

/**
 * Parallel coordinates: one vertical axis per dimension (params, then the chosen metric last),
 * one polyline per run, coloured by that metric. dims: [{key, label}]; rows: [{name, values}].
 */
export function parallelCoords(dims, rows, colorKey) {
  const PW = Math.max(640, 140 * dims.length), PH = 300, top = 34, bottom = 24, left = 60, right = 60;
  const svg = h('svg', {viewBox: `0 0 ${PW} ${PH}`, role: 'img', style: `max-width:${PW}px`,
                        'aria-label': `parallel coordinates of ${dims.map(d => d.label).join(', ')}`});
  const axes = dims.map((d, i) => {
    const vals = rows.map(r => r.values[d.key]).filter(v => v !== undefined && v !== null && v !== '');
    const nums = vals.map(Number);
    const numeric = vals.length > 0 && nums.every(n => isFinite(n));
    const xPos = left + (dims.length === 1 ? 0 : i * (PW - left - right) / (dims.length - 1));
    if (numeric) {
      let lo = Math.min(...nums), hi = Math.max(...nums);
      if (lo === hi) { lo -= 1; hi += 1; }
      return {...d, x: xPos, numeric, lo, hi, pos: v => PH - bottom - (Number(v) - lo) / (hi - lo) * (PH - top - bottom)};
    }
    const cats = [...new Set(vals.map(String))].sort();
    const pos = v => PH - bottom - (cats.length === 1 ? 0.5 : cats.indexOf(String(v)) / (cats.length - 1)) * (PH - top - bottom);
    return {...d, x: xPos, numeric, cats, pos};
  });
  const colorAxis = axes.find(a => a.key === colorKey);
  const tone = r => {
    const v = Number(r.values[colorKey]);
    if (!colorAxis || !colorAxis.numeric || !isFinite(v)) return '#8895ab';
    return colorScale((v - colorAxis.lo) / (colorAxis.hi - colorAxis.lo));
  };
  svg.append(...rows.map(r => {
    const pts = axes.filter(a => r.values[a.key] !== undefined && r.values[a.key] !== null)
      .map(a => `${a.x},${a.pos(r.values[a.key]).toFixed(1)}`);
    return h('polyline', {points: pts.join(' '), fill: 'none', stroke: tone(r), 'stroke-width': 2, opacity: 0.85,
                          'data-run': r.name}, h('title', {}, r.name));
  }));
  for (const a of axes) {
    svg.append(h('line', {class: 'axis', x1: a.x, x2: a.x, y1: top, y2: PH - bottom}),
      h('text', {x: a.x, y: 14, 'text-anchor': 'middle', style: 'font-weight:600;fill:#1d2330'}, a.label));
    const labels = a.numeric ? [[a.lo, fmtNum(a.lo)], [a.hi, fmtNum(a.hi)]] : a.cats.map(c => [c, c.slice(0, 14)]);
    for (const [v, text] of labels) svg.append(h('text', {x: a.x + 4, y: a.pos(v) + 4}, text));
  }
  return h('div', {class: 'chart pc'}, svg);
}
