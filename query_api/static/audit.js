// Audit timeline of any entity: its events with actor and time (history(id)), and the entity
// as it was at a chosen point (runAsOf / modelVersionAsOf), rebuilt by the server from events.
import {gql, h, clear, errorBox, showError, fmtNum, fmtTime, badge, link} from './api.js';

const HISTORY = `query($id: ID!, $actor: String) { history(id: $id, actor: $actor) {
  eventId type occurredAt recordedAt actor source schemaVersion payload } }`;
const RUN_AS_OF = `query($id: ID!, $at: DateTime!) { runAsOf(id: $id, at: $at) { id name status endTime
  params { key value } metrics { key value step } tags { key value } } }`;
const VERSION_AS_OF = `query($name: String!, $version: String!, $at: DateTime!) {
  modelVersionAsOf(name: $name, version: $version, at: $at) { name version stage aliases description
    transitions { fromStage toStage actor at } } }`;

/** What "as of" can rebuild for a node id: a run or a model version; null for other kinds. */
function asOfTarget(id) {
  const [prefix, ...rest] = id.split(':');
  const ident = rest.join(':');
  if (!rest.length) return {kind: 'run', id};  // a bare id is a run's, as in the API
  if (prefix === 'run') return {kind: 'run', id: ident};
  if (prefix === 'modelversion') {
    const cut = ident.lastIndexOf('/');
    return {kind: 'version', name: ident.slice(0, cut), version: ident.slice(cut + 1)};
  }
  return null;
}

async function asOf(target, at) {
  if (target.kind === 'run') {
    const run = (await gql(RUN_AS_OF, {id: target.id, at})).runAsOf;
    if (!run) return h('p', {class: 'muted'}, 'The run did not exist yet.');
    const list = (items, num) => items.length ? h('ul', {class: 'plain'}, items.map(i => h('li', {}, `${i.key} = `,
      num ? fmtNum(i.value) : i.value, num ? h('span', {class: 'muted small'}, ` (step ${i.step})`) : ''))) : h('p', {class: 'muted'}, 'none');
    return h('div', {id: 'as-of-state'}, h('p', {}, h('a', {href: `#/run/${encodeURIComponent(run.id)}`}, run.name || run.id), ' ', badge(run.status)),
      h('div', {class: 'grid2'}, h('div', {}, h('h3', {}, 'Params'), list(run.params)),
        h('div', {}, h('h3', {}, 'Metrics'), list(run.metrics, true)), h('div', {}, h('h3', {}, 'Tags'), list(run.tags))));
  }
  const v = (await gql(VERSION_AS_OF, {name: target.name, version: target.version, at})).modelVersionAsOf;
  if (!v) return h('p', {class: 'muted'}, 'The version did not exist yet.');
  return h('div', {id: 'as-of-state'}, h('p', {}, `${v.name} v${v.version} `, badge(v.stage), ' ',
    v.aliases.map(a => h('span', {class: 'tag'}, a))), v.description ? h('p', {}, v.description) : null,
  h('ul', {class: 'plain'}, v.transitions.map(t => h('li', {}, fmtTime(t.at), ': ', t.fromStage || 'None', ' → ', t.toStage,
    t.actor ? ` by ${t.actor}` : ''))));
}

export async function auditPage(view, ctx) {
  const id = ctx.query.get('id') || '';
  const at = ctx.query.get('at') || '';
  const actor = ctx.query.get('actor') || '';
  const error = errorBox();
  const idInput = h('input', {id: 'audit-id', type: 'text', class: 'wide', value: id,
                              placeholder: 'run:<id>, modelversion:<name>/<version>, registeredmodel:<name>, datasetversion:…'});
  const actorInput = h('input', {id: 'audit-actor', type: 'text', value: actor, style: 'width:10em'});
  clear(view, h('h1', {}, 'Audit timeline'),
    h('form', {class: 'row panel', onsubmit: evt => {
      evt.preventDefault();
      location.hash = link('audit', {id: idInput.value.trim(), actor: actorInput.value.trim()});
    }}, h('label', {for: 'audit-id'}, 'Entity'), idInput, h('label', {for: 'audit-actor'}, 'Actor'), actorInput,
    h('button', {type: 'submit', class: 'primary'}, 'Show')), error);
  if (!id) { view.append(h('p', {class: 'muted'}, 'Type an entity id, or follow an “Audit” link from a run, a lineage node or the registry.')); return; }
  let events;
  try { events = (await gql(HISTORY, {id, actor: actor || null})).history; } catch (err) { showError(error, err); return; }
  if (!ctx.current()) return;
  const target = asOfTarget(id);
  const statePanel = h('section', {class: 'panel', 'aria-labelledby': 'as-of-h'});
  const atInput = h('input', {id: 'as-of-time', type: 'datetime-local', step: 1});
  const timeline = h('ol', {class: 'plain timeline', id: 'timeline'}, events.map(e => h('li', {class: e.recordedAt === at ? 'chosen' : null, 'data-event': e.type},
    h('div', {class: 'row'}, h('strong', {}, e.type), h('span', {class: 'muted small'}, fmtTime(e.occurredAt)),
      h('span', {}, 'by ', h('em', {}, e.actor || 'unknown')), h('span', {class: 'small muted'}, `via ${e.source}`),
      target ? h('a', {href: link('audit', {id, actor, at: e.recordedAt}), class: 'small', 'aria-label': `state after ${e.type} at ${fmtTime(e.recordedAt)}`},
        'State after this') : null),
    h('details', {}, h('summary', {class: 'small'}, 'Payload'), h('pre', {class: 'json'}, JSON.stringify(e.payload, null, 2))))));
  view.append(h('p', {class: 'row'}, `${events.length} events for `, h('code', {}, id), h('span', {class: 'spacer'}),
    h('a', {class: 'button', href: link('lineage', {id: id.includes(':') ? id : `run:${id}`})}, 'Lineage')),
  h('div', {class: 'grid2'}, h('section', {class: 'panel', 'aria-label': 'Events'}, events.length ? timeline : h('p', {class: 'muted'}, 'No events.')),
    statePanel));
  if (!target) {
    clear(statePanel, h('h2', {id: 'as-of-h', style: 'margin-top:0'}, 'As of a point in time'),
      h('p', {class: 'muted'}, 'Rebuilding the state at a time is available for runs and model versions.'));
    return;
  }
  clear(statePanel, h('h2', {id: 'as-of-h', style: 'margin-top:0'}, 'As of a point in time'),
    h('form', {class: 'row', onsubmit: evt => {
      evt.preventDefault();
      if (atInput.value) location.hash = link('audit', {id, actor, at: new Date(atInput.value).toISOString()});
    }}, h('label', {for: 'as-of-time'}, 'Time'), atInput, h('button', {type: 'submit'}, 'Show state')),
    at ? h('p', {class: 'small muted'}, `as of ${fmtTime(at)}`) : h('p', {class: 'muted'}, 'Choose “State after this” on an event, or a time.'));
  if (at) {
    try { statePanel.append(await asOf(target, at)); } catch (err) { showError(error, err); }
  }
}
