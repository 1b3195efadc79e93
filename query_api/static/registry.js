// The model registry: models, versions, stages and aliases, lock levels and rules, pending
// transition requests with approve / reject (as the "acting as" user), and transitions.
import {gql, actingAs, artifactLink, h, clear, errorBox, showError, fmtTime, badge, link, runNode, versionNode} from './api.js';

const STAGES = ['None', 'Staging', 'Production', 'Archived'];

const OVERVIEW = `{ registeredModels { name description lock { level } versions { version stage }
    aliases { alias version } pendingRequests { id } }
  transitionRequests(status: "pending") { id model version fromStage toStage requestedBy requestedAt comment } }`;

const MODEL = `query($name: String!) { registeredModel(name: $name) { name description revision redacted
  tags { key value } lock { level role comment lockedBy lockedAt } rules { singleProduction approvalRequired }
  modelVersions { version stage aliases description createdAt run { id } artifact { name digest } sourceUri
                  deployments { id status environment { name } } }
  pendingRequests { id model version fromStage toStage requestedBy requestedAt comment }
  transitions { version fromStage toStage actor comment cause requestedBy approvedBy at } } }`;

const DECIDE = verb => `mutation($name: String!, $id: String!, $comment: String!, $rev: Int) {
  ${verb}StageTransition(name: $name, requestId: $id, comment: $comment, expectedRevision: $rev) {
    revision modelVersion { version stage } } }`;

const REQUEST = `mutation($name: String!, $version: String!, $stage: String!, $comment: String!, $rev: Int) {
  requestStageTransition(name: $name, version: $version, stage: $stage, comment: $comment, expectedRevision: $rev) {
    revision request { id } } }`;

function who() { return actingAs() || 'the server user'; }

/** Pending requests, each with a comment field and approve / reject buttons. */
function requestsTable(requests, revisionOf, error, note, reload) {
  if (!requests.length) return h('p', {class: 'muted', id: 'no-requests'}, 'No pending transition requests.');
  return h('table', {class: 'data', id: 'pending-requests'},
    h('thead', {}, h('tr', {}, ['Model', 'Version', 'Transition', 'Requested by', 'At', 'Comment', 'Decision']
      .map(c => h('th', {scope: 'col'}, c)))),
    h('tbody', {}, requests.map(r => {
      const comment = h('input', {type: 'text', 'aria-label': `comment on request ${r.id}`, placeholder: 'comment'});
      const decide = verb => async evt => {
        evt.target.disabled = true;
        try {
          const data = await gql(DECIDE(verb), {name: r.model, id: r.id, comment: comment.value, rev: revisionOf(r.model)});
          const v = data[`${verb}StageTransition`].modelVersion;
          showError(error, null);
          note.textContent = verb === 'approve'
            ? `Approved by ${who()}: ${r.model} v${v ? v.version : r.version} is now ${v ? v.stage : r.toStage}.`
            : `Rejected by ${who()}: ${r.model} v${r.version} stays ${r.fromStage}.`;
          await reload();
        } catch (err) { note.textContent = ''; showError(error, err); evt.target.disabled = false; }
      };
      return h('tr', {'data-request': r.id},
        h('td', {}, h('a', {href: link('registry', {model: r.model})}, r.model)), h('td', {}, r.version),
        h('td', {}, badge(r.fromStage || 'None'), ' → ', badge(r.toStage)), h('td', {}, r.requestedBy || ''),
        h('td', {}, fmtTime(r.requestedAt)), h('td', {class: 'wrap'}, r.comment),
        h('td', {}, h('div', {class: 'row'}, comment,
          h('button', {type: 'button', class: 'primary', onclick: decide('approve')}, 'Approve'),
          h('button', {type: 'button', class: 'danger', onclick: decide('reject')}, 'Reject'))));
    })));
}

export async function registryPage(view, ctx) {
  const name = ctx.query.get('model');
  const error = errorBox();
  const note = h('p', {class: 'note', role: 'status', id: 'registry-note'});
  const body = h('div');
  clear(view, h('div', {class: 'row'}, h('h1', {}, name ? `Model ${name}` : 'Model registry'), h('span', {class: 'spacer'}),
    h('span', {class: 'small muted'}, `acting as ${who()}`)), error, note, body);
  const reload = async () => {
    try { name ? await showModel(body, name, error, note, reload) : await showOverview(body, error, note, reload); }
    catch (err) { showError(error, err); }
  };
  await reload();
}

async function showOverview(body, error, note, reload) {
  const data = await gql(OVERVIEW);
  clear(body,
    h('section', {class: 'panel'}, h('h2', {style: 'margin-top:0'}, 'Pending transition requests'),
      h('div', {class: 'scroll'}, requestsTable(data.transitionRequests, () => null, error, note, reload))),
    h('section', {class: 'panel'}, h('h2', {style: 'margin-top:0'}, 'Registered models'),
      data.registeredModels.length ? h('table', {class: 'data', id: 'models'},
        h('thead', {}, h('tr', {}, ['Model', 'Versions', 'Stages', 'Aliases', 'Lock', 'Pending'].map(c => h('th', {scope: 'col'}, c)))),
        h('tbody', {}, data.registeredModels.map(m => h('tr', {},
          h('td', {}, h('a', {href: link('registry', {model: m.name})}, m.name), h('div', {class: 'small muted'}, m.description)),
          h('td', {class: 'num'}, m.versions.length),
          h('td', {}, m.versions.map(v => h('span', {}, `v${v.version} `, badge(v.stage), ' '))),
          h('td', {}, m.aliases.map(a => h('span', {class: 'tag'}, `${a.alias} → v${a.version}`))),
          h('td', {}, m.lock.level), h('td', {class: 'num'}, m.pendingRequests.length)))))
        : h('p', {class: 'muted'}, 'No registered models yet. Register one with modeldb.register_model(…).')));
}

async function showModel(body, name, error, note, reload) {
  const data = await gql(MODEL, {name});
  const m = data.registeredModel;
  if (!m) { clear(body, h('p', {}, `No registered model ${name}. `, h('a', {href: link('registry')}, 'All models'))); return; }
  const requestForm = v => {
    const id = `stage-${v.version}`;
    const select = h('select', {id}, STAGES.filter(s => s !== v.stage).map(s => h('option', {value: s}, s)));
    return h('form', {class: 'row', onsubmit: async evt => {
      evt.preventDefault();
      try {
        await gql(REQUEST, {name, version: String(v.version), stage: select.value, comment: '', rev: m.revision});
        showError(error, null);
        note.textContent = `Requested v${v.version} → ${select.value} as ${who()}.`;
        await reload();
      } catch (err) { note.textContent = ''; showError(error, err); }
    }}, h('label', {for: id, class: 'small'}, 'to'), select, h('button', {type: 'submit'}, 'Request'));
  };
  clear(body,
    h('p', {class: 'small'}, h('a', {href: link('registry')}, '← All models')),
    h('div', {class: 'grid2'},
      h('section', {class: 'panel'}, h('h2', {style: 'margin-top:0'}, 'Model'),
        h('dl', {class: 'kv', id: 'model-facts'},
          h('dt', {}, 'Description'), h('dd', {}, m.description || '—'),
          h('dt', {}, 'Lock'), h('dd', {}, h('strong', {id: 'lock-level'}, m.lock.level),
            m.lock.role ? ` (role ${m.lock.role})` : '', m.lock.comment ? ` — ${m.lock.comment}` : '',
            m.lock.lockedBy ? h('span', {class: 'small muted'}, ` by ${m.lock.lockedBy} ${fmtTime(m.lock.lockedAt)}`) : ''),
          h('dt', {}, 'Rules'), h('dd', {}, m.rules.singleProduction ? 'at most one Production version; ' : '',
            m.rules.approvalRequired.length ? `approval required for ${m.rules.approvalRequired.join(', ')}` : 'no approvals required'),
          h('dt', {}, 'Tags'), h('dd', {}, m.tags.map(t => h('span', {class: 'tag'}, `${t.key}: ${t.value}`)), m.tags.length ? '' : '—'),
          h('dt', {}, 'Revision'), h('dd', {}, m.revision)),
        h('p', {}, h('a', {href: link('audit', {id: `registeredmodel:${m.name}`})}, 'Audit timeline of the model'))),
      h('section', {class: 'panel'}, h('h2', {style: 'margin-top:0'}, 'Versions by stage'),
        h('ul', {class: 'plain'}, STAGES.map(stage => h('li', {}, badge(stage), ' ',
          m.modelVersions.filter(v => v.stage === stage).map(v => `v${v.version}`).join(', ') || '—'))))),
    h('section', {class: 'panel'}, h('h2', {style: 'margin-top:0'}, 'Pending requests'),
      h('div', {class: 'scroll'}, requestsTable(m.pendingRequests, () => m.revision, error, note, reload))),
    h('section', {class: 'panel'}, h('h2', {style: 'margin-top:0'}, 'Versions'),
      h('table', {class: 'data', id: 'versions'},
        h('thead', {}, h('tr', {}, ['Version', 'Stage', 'Aliases', 'Source', 'Created', 'Deployments', 'Links', 'Request a stage']
          .map(c => h('th', {scope: 'col'}, c)))),
        h('tbody', {}, m.modelVersions.map(v => h('tr', {'data-version': v.version},
          h('td', {}, `v${v.version}`, h('div', {class: 'small muted'}, v.description)),
          h('td', {}, badge(v.stage)),
          h('td', {}, v.aliases.map(a => h('span', {class: 'tag'}, a))),
          h('td', {}, v.run ? h('a', {href: `#/run/${encodeURIComponent(v.run.id)}`}, 'run') : '',
            v.artifact ? [' · ', artifactLink(v.artifact.digest, v.artifact.name)] : '', v.sourceUri ? h('code', {class: 'small'}, v.sourceUri) : ''),
          h('td', {}, fmtTime(v.createdAt)),
          h('td', {}, v.deployments.map(d => h('span', {class: 'tag'}, `${d.environment?.name || d.id}: ${d.status}`))),
          h('td', {}, h('a', {href: link('lineage', {id: versionNode(m.name, v.version)})}, 'Lineage'), ' · ',
            h('a', {href: link('audit', {id: versionNode(m.name, v.version)})}, 'Audit'),
            v.run ? [' · ', h('a', {href: link('lineage', {id: runNode(v.run.id)})}, 'Run lineage')] : ''),
          h('td', {}, requestForm(v))))))),
    h('section', {class: 'panel'}, h('h2', {style: 'margin-top:0'}, 'Stage transitions'),
      m.transitions.length ? h('table', {class: 'data', id: 'transitions'},
        h('thead', {}, h('tr', {}, ['At', 'Version', 'From → to', 'By', 'Requested by', 'Approved by', 'Cause', 'Comment']
          .map(c => h('th', {scope: 'col'}, c)))),
        h('tbody', {}, [...m.transitions].reverse().map(t => h('tr', {},
          h('td', {}, fmtTime(t.at)), h('td', {}, `v${t.version}`),
          h('td', {}, badge(t.fromStage || 'None'), ' → ', badge(t.toStage)), h('td', {}, t.actor || ''),
          h('td', {}, t.requestedBy || ''), h('td', {}, t.approvedBy || ''), h('td', {}, t.cause),
          h('td', {class: 'wrap'}, t.comment)))))
        : h('p', {class: 'muted'}, 'No transitions yet.')));
}
