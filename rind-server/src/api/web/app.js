// The rind web page: drives the REST API under /api/v1 of the server that served it.
// Everything shown that came from the API is set with textContent, never parsed as HTML:
// record names and data are whatever someone typed.
'use strict';

const TOKEN_KEY = 'rind.api-token';
const PAGE_SIZE = 1000;
// Bounds the walk over `Link: rel="next"` pages: 1000 pages of 1000 records.
const MAX_PAGES = 1000;

/** An API answer that was not a success, with the server's message in words. */
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const byId = (id) => document.getElementById(id);

/** Creates an element with text content and optional attributes. */
function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/**
 * One API request. Resolves to {status, data, headers}; rejects with an ApiError carrying
 * the API's {"error": "..."} message. A 401 also opens the token prompt.
 */
async function api(method, path, options = {}) {
  const headers = { Accept: 'application/json', ...(options.headers || {}) };
  const saved = token();
  if (saved) headers.Authorization = 'Bearer ' + saved;
  const init = { method, headers, cache: 'no-store', credentials: 'same-origin' };
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(options.body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'the server did not answer: ' + e.message);
  }
  let data = null;
  const type = response.headers.get('Content-Type') || '';
  if (response.status !== 204 && type.includes('json')) {
    try {
      data = await response.json();
    } catch (e) {
      throw new ApiError(response.status, 'the server sent JSON that does not parse');
    }
  }
  if (!response.ok) {
    const message = (data && typeof data.error === 'string') ? data.error
      : `the server answered ${response.status} ${response.statusText}`;
    // A request sent with a token since replaced says nothing about the new one.
    if (response.status === 401 && token() === saved) askForToken(message);
    throw new ApiError(response.status, message);
  }
  return { status: response.status, data, headers: response.headers };
}

const generations = {};

/**
 * Starts a load of one panel; the returned check turns false once a newer load of it has
 * started, so a slow answer (say, a 401 for a token since replaced) cannot paint over it.
 */
function begin(panel) {
  const generation = (generations[panel] || 0) + 1;
  generations[panel] = generation;
  return () => generations[panel] === generation;
}

/** Says something in the page's status line (read out by screen readers). */
function notice(text) {
  byId('notice').textContent = text;
}

/** A message for a failed load: the token prompt already says what a 401 needs. */
function failure(e) {
  return e.status === 401 ? 'Needs the API token (see above).' : 'Could not load: ' + e.message;
}

// ---- token ----------------------------------------------------------------------------

function askForToken(message) {
  const section = byId('token');
  const wasHidden = section.hidden;
  section.hidden = false;
  byId('token-reason').textContent = token()
    ? `The server refused the saved token (${message}). Enter the right one; the page keeps it for this tab only.`
    : `This server asks for an API token (${message}). The page keeps it for this tab only.`;
  if (wasHidden) byId('token-input').focus();
}

function setUpToken() {
  byId('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = byId('token-input').value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    byId('token-input').value = '';
    byId('token').hidden = true;
    showForget();
    notice('Token saved for this tab.');
    loadAll();
  });
  byId('forget-token').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showForget();
    notice('Token forgotten.');
    loadAll();
  });
  showForget();
}

function showForget() {
  byId('forget-token').hidden = !token();
}

// ---- records --------------------------------------------------------------------------

let records = [];

/** The path of the next page from a `Link: <...>; rel="next"` header, if any. */
function nextPage(link) {
  if (!link) return null;
  const match = /<([^>]*)>\s*;\s*rel="?next"?/.exec(link);
  // Only follow links to this server's records route: the token goes with the request.
  return match && match[1].startsWith('/api/v1/records?') ? match[1] : null;
}

async function loadRecords() {
  const summary = byId('records-summary');
  const current = begin('records');
  try {
    let all = [];
    let path = `/api/v1/records?limit=${PAGE_SIZE}`;
    for (let page = 0; path && page < MAX_PAGES; page++) {
      const answer = await api('GET', path);
      all = all.concat(Array.isArray(answer.data) ? answer.data : []);
      path = nextPage(answer.headers.get('Link'));
    }
    if (!current()) return;
    records = all;
    renderRecords();
  } catch (e) {
    if (!current()) return;
    records = [];
    byId('records-table').tBodies[0].replaceChildren();
    summary.textContent = failure(e);
  }
}

function describe(record) {
  return `${record.name} ${record.type} ${record.data}`;
}

function renderRecords() {
  const words = byId('search').value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  const kind = byId('search-kind').value;
  const shown = records.filter((r) => {
    if (kind && r.type !== kind) return false;
    const text = `${r.name} ${r.type} ${r.ttl} ${r.data}`.toLowerCase();
    return words.every((w) => text.includes(w));
  });
  const body = byId('records-table').tBodies[0];
  body.replaceChildren(...shown.map(recordRow));
  const total = records.length;
  byId('records-summary').textContent = total === 0 ? 'No local records yet.'
    : shown.length === total ? `${total} record${total === 1 ? '' : 's'}.`
      : `${shown.length} of ${total} records match.`;
}

function recordRow(record) {
  const row = el('tr', null, { 'data-id': record.id });
  row.append(
    el('td', record.name, { 'data-label': 'Name', class: 'mono' }),
    el('td', record.type, { 'data-label': 'Type' }),
    el('td', record.ttl, { 'data-label': 'TTL' }),
    el('td', record.data, { 'data-label': 'Data', class: 'mono' }),
  );
  const actions = el('td', null, { class: 'row-actions' });
  const edit = el('button', 'Edit', { type: 'button', 'aria-label': 'Edit ' + describe(record), 'data-action': 'edit' });
  const remove = el('button', 'Delete', { type: 'button', class: 'danger', 'aria-label': 'Delete ' + describe(record), 'data-action': 'delete' });
  edit.addEventListener('click', () => openEdit(record.id));
  remove.addEventListener('click', () => openDelete(record.id));
  actions.append(edit, remove);
  row.append(actions);
  return row;
}

/** The record body from a form's fields; TTL left to the API to judge when not a number. */
function draftFrom(form) {
  const draft = {
    name: form.elements.name.value.trim(),
    type: form.elements.type.value,
    data: form.elements.data.value.trim(),
  };
  const ttl = form.elements.ttl.value.trim();
  if (ttl !== '') draft.ttl = /^\d{1,15}$/.test(ttl) ? Number(ttl) : ttl;
  return draft;
}

/** Which field a 400 message is about; the API names it first (records/rdata.rs). */
function fieldOf(message) {
  const m = message.toLowerCase();
  if (m.startsWith('name ') || m.includes('field "name"')) return 'name';
  if (m.startsWith('ttl ') || m.includes('field "ttl"')) return 'ttl';
  if (m.startsWith('unknown record type') || m.includes('field "type"')) return 'type';
  return 'data';
}

const RECORD_FIELDS = ['name', 'type', 'ttl', 'data'];

/** Clears the messages of a form's fields (ids `${prefix}-${field}-error`) and its own. */
function clearErrors(form, prefix, fields = RECORD_FIELDS) {
  for (const field of fields) {
    form.elements[field].removeAttribute('aria-invalid');
    byId(`${prefix}-${field}-error`).textContent = '';
  }
  byId(`${prefix}-form-error`).textContent = '';
}

/** Puts an API error under the form and, when it is about `field`, next to that field. */
function showError(form, prefix, e, field, failed = 'Not saved') {
  const under = byId(`${prefix}-form-error`);
  if (e.status === 401) {
    under.textContent = failed + ': the server needs the API token.';
    return;
  }
  under.textContent = `${failed}: ${e.message}`;
  if (!field) return;
  const input = form.elements[field];
  input.setAttribute('aria-invalid', 'true');
  byId(`${prefix}-${field}-error`).textContent = e.message;
  input.focus();
}

/** The field a record's 400 is about; other errors are not about one field. */
function recordField(e) {
  return e.status === 400 ? fieldOf(e.message) : null;
}

function setUpRecords() {
  const form = byId('add-form');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(form, 'add');
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const answer = await api('POST', '/api/v1/records', { body: draftFrom(form) });
      notice('Added ' + describe(answer.data) + '.');
      form.elements.name.value = '';
      form.elements.data.value = '';
      await afterWrite();
      form.elements.name.focus();
    } catch (e) {
      showError(form, 'add', e, recordField(e));
    } finally {
      button.disabled = false;
    }
  });
  byId('search-form').addEventListener('submit', (event) => {
    event.preventDefault();
    loadRecords();
  });
  byId('search').addEventListener('input', renderRecords);
  byId('search-kind').addEventListener('change', renderRecords);
}

/** A record write moves a zone's serial and record count and the status's count too. */
function afterWrite() {
  return Promise.all([loadRecords(), loadZones(), loadStatus()]);
}

/** Reads one record with its ETag, for an edit or a delete. */
async function fetchRecord(id) {
  const answer = await api('GET', `/api/v1/records/${encodeURIComponent(id)}`);
  return { record: answer.data, etag: answer.headers.get('ETag') };
}

/** Opens a dialog made from a template; it is removed, and focus returned, on close. */
function openDialog(templateId, returnTo) {
  const dialog = byId(templateId).content.firstElementChild.cloneNode(true);
  document.body.append(dialog);
  dialog.addEventListener('close', () => {
    dialog.remove();
    const target = returnTo();
    if (target) target.focus();
  });
  dialog.querySelector('button[value=cancel]').addEventListener('click', () => dialog.close());
  dialog.showModal();
  return dialog;
}

/** The Edit or Delete button of a record's row, or the Add form when the row is gone. */
function rowButton(id, action) {
  const row = [...byId('records-table').tBodies[0].rows].find((r) => r.dataset.id === id);
  return row ? row.querySelector(`button[data-action=${action}]`) : byId('add-name');
}

/** The words for a 412: the record moved on since the dialog read it. */
const CHANGED = 'This record was changed by someone else since you opened it. ';

async function openEdit(id) {
  let current;
  try {
    current = await fetchRecord(id);
  } catch (e) {
    notice(e.status === 404 ? 'That record was deleted by someone else.' : 'Could not open the record: ' + e.message);
    await loadRecords();
    return;
  }
  const dialog = openDialog('edit-template', () => rowButton(id, 'edit'));
  const form = dialog.querySelector('form');
  const fill = ({ record }) => {
    form.elements.name.value = record.name;
    form.elements.type.value = record.type;
    form.elements.ttl.value = record.ttl;
    form.elements.data.value = record.data;
  };
  fill(current);
  form.elements.name.focus();
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(form, 'edit');
    try {
      const answer = await api('PUT', `/api/v1/records/${encodeURIComponent(id)}`, {
        body: draftFrom(form),
        headers: current.etag ? { 'If-Match': current.etag } : {},
      });
      notice('Saved ' + describe(answer.data) + '.');
      await afterWrite();
      dialog.close();
    } catch (e) {
      if (e.status === 412 || e.status === 404) {
        await changedUnderneath(id, e, dialog, (fresh) => {
          current = fresh;
          fill(fresh);
          byId('edit-form-error').textContent = CHANGED
            + 'The form now shows the current version: make your change again and save.';
        });
      } else {
        showError(form, 'edit', e, recordField(e));
      }
    }
  });
}

/** After a 412 or 404: reload the list and the record; closes the dialog when it is gone. */
async function changedUnderneath(id, e, dialog, onFresh) {
  await loadRecords();
  try {
    onFresh(await fetchRecord(id));
  } catch (gone) {
    notice(gone.status === 404 ? 'That record was deleted by someone else.' : 'Could not reload the record: ' + gone.message);
    dialog.close();
  }
}

async function openDelete(id) {
  let current;
  try {
    current = await fetchRecord(id);
  } catch (e) {
    notice(e.status === 404 ? 'That record was already deleted by someone else.' : 'Could not open the record: ' + e.message);
    await loadRecords();
    return;
  }
  const dialog = openDialog('confirm-template', () => rowButton(id, 'delete'));
  const form = dialog.querySelector('form');
  const show = ({ record }) => {
    byId('confirm-text').textContent = `${describe(record)} (TTL ${record.ttl}) stops answering at once.`;
  };
  byId('confirm-heading').textContent = 'Delete this record?';
  form.querySelector('button[value=yes]').textContent = 'Delete';
  show(current);
  dialog.querySelector('button[value=cancel]').focus();
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await api('DELETE', `/api/v1/records/${encodeURIComponent(id)}`, {
        headers: current.etag ? { 'If-Match': current.etag } : {},
      });
      notice('Deleted ' + describe(current.record) + '.');
      await afterWrite();
      dialog.close();
    } catch (e) {
      if (e.status === 412) {
        await changedUnderneath(id, e, dialog, (fresh) => {
          current = fresh;
          show(fresh);
          byId('confirm-error').textContent = CHANGED + 'It now reads as above: delete it anyway?';
        });
      } else if (e.status === 404) {
        notice('That record was already deleted by someone else.');
        await loadRecords();
        dialog.close();
      } else {
        byId('confirm-error').textContent = 'Not deleted: ' + e.message;
      }
    }
  });
}

// ---- zones ----------------------------------------------------------------------------

async function loadZones() {
  const body = byId('zones-table').tBodies[0];
  const summary = byId('zones-summary');
  const current = begin('zones');
  try {
    const zones = (await api('GET', '/api/v1/zones')).data || [];
    if (!current()) return;
    body.replaceChildren(...zones.map((z) => {
      const role = z.primary ? `secondary of ${z.primary}${z.expired ? ' (expired)' : ''}` : 'primary';
      const row = el('tr');
      row.append(
        el('td', z.name, { 'data-label': 'Zone', class: 'mono' }),
        el('td', z.serial, { 'data-label': 'Serial' }),
        el('td', z.records, { 'data-label': 'Records' }),
        el('td', role, { 'data-label': 'Role' }),
        el('td', (z.allow_transfer || []).join(', ') || 'nobody', { 'data-label': 'Transfers to' }),
        el('td', (z.notify || []).join(', ') || 'none', { 'data-label': 'Notifies' }),
      );
      return row;
    }));
    summary.textContent = zones.length === 0
      ? 'No zones: records are answered one by one (add a zone with rind-ctl zone add).'
      : `${zones.length} zone${zones.length === 1 ? '' : 's'}.`;
  } catch (e) {
    if (!current()) return;
    body.replaceChildren();
    summary.textContent = failure(e);
  }
}

// ---- cache ----------------------------------------------------------------------------

function cacheQuery() {
  const name = byId('cache-filter').value.trim();
  return name ? '?name=' + encodeURIComponent(name) : '';
}

async function loadCache() {
  const body = byId('cache-table').tBodies[0];
  const summary = byId('cache-summary');
  byId('cache-error').textContent = '';
  const current = begin('cache');
  try {
    const entries = (await api('GET', '/api/v1/cache' + cacheQuery())).data || [];
    if (!current()) return;
    body.replaceChildren(...entries.map((c) => {
      const row = el('tr');
      row.append(
        el('td', c.name, { 'data-label': 'Domain', class: 'mono' }),
        el('td', c.type, { 'data-label': 'Type' }),
        el('td', c.rcode, { 'data-label': 'Answer' }),
        el('td', c.ttl, { 'data-label': 'Seconds left' }),
      );
      return row;
    }));
    summary.textContent = entries.length === 0 ? 'Nothing cached.'
      : `${entries.length} cached answer${entries.length === 1 ? '' : 's'}.`;
  } catch (e) {
    if (!current()) return;
    body.replaceChildren();
    if (e.status === 400) byId('cache-error').textContent = e.message;
    summary.textContent = failure(e);
  }
}

function setUpCache() {
  byId('cache-form').addEventListener('submit', (event) => {
    event.preventDefault();
    loadCache();
  });
  byId('cache-flush').addEventListener('click', async () => {
    byId('cache-error').textContent = '';
    const name = byId('cache-filter').value.trim();
    try {
      await api('DELETE', '/api/v1/cache' + cacheQuery());
      notice(name ? `Flushed ${name} from the cache.` : 'Flushed the whole cache.');
    } catch (e) {
      byId('cache-error').textContent = 'Not flushed: ' + e.message;
    }
    await Promise.all([loadCache(), loadStatus()]);
  });
}

// ---- query log ------------------------------------------------------------------------

async function loadLog() {
  const body = byId('log-table').tBodies[0];
  const summary = byId('log-summary');
  byId('log-error').textContent = '';
  const params = new URLSearchParams();
  const client = byId('log-client').value.trim();
  const name = byId('log-domain').value.trim();
  const limit = byId('log-limit').value.trim();
  if (client) params.set('client', client);
  if (name) params.set('name', name);
  if (limit) params.set('limit', limit);
  const query = params.toString();
  const current = begin('log');
  try {
    const entries = (await api('GET', '/api/v1/querylog' + (query ? '?' + query : ''))).data || [];
    if (!current()) return;
    body.replaceChildren(...entries.map((q) => {
      const row = el('tr');
      row.append(
        el('td', String(q.time).replace('T', ' ').replace(/\.\d+Z$/, ''), { 'data-label': 'Time (UTC)' }),
        el('td', `${q.client} (${q.transport})`, { 'data-label': 'Client', class: 'mono' }),
        el('td', q.name, { 'data-label': 'Domain', class: 'mono' }),
        el('td', q.type, { 'data-label': 'Type' }),
        el('td', q.rcode === null ? 'dropped' : q.rcode, { 'data-label': 'Answer' }),
        sourceCell(q.source),
        el('td', `${(q.latency_us / 1000).toFixed(1)} ms`, { 'data-label': 'Latency' }),
      );
      return row;
    }));
    summary.textContent = entries.length === 0 ? 'No matching queries.'
      : `${entries.length} quer${entries.length === 1 ? 'y' : 'ies'}, newest first.`;
  } catch (e) {
    if (!current()) return;
    body.replaceChildren();
    if (e.status === 400) byId('log-error').textContent = e.message;
    summary.textContent = e.status === 404 ? e.message : failure(e);
  }
}

/** The Source cell of a logged query; a blocked one also stands out in colour. */
function sourceCell(source) {
  const cell = el('td', source, { 'data-label': 'Source' });
  if (source === 'blocked') cell.classList.add('blocked');
  return cell;
}

// ---- blocking -------------------------------------------------------------------------

let blocklists = [];

/** Seconds since the epoch as `YYYY-MM-DD HH:MM:SS` in UTC, like the query log's times. */
function utc(seconds) {
  return new Date(seconds * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');
}

async function loadBlocklists() {
  const body = byId('lists-table').tBodies[0];
  const summary = byId('lists-summary');
  const current = begin('blocklists');
  try {
    const lists = (await api('GET', '/api/v1/blocklists')).data || [];
    if (!current()) return;
    blocklists = lists;
    body.replaceChildren(...lists.map(listRow));
    summary.textContent = lists.length === 0 ? 'No blocklists: nothing is blocked.'
      : `${lists.length} blocklist${lists.length === 1 ? '' : 's'}.`;
  } catch (e) {
    if (!current()) return;
    blocklists = [];
    body.replaceChildren();
    summary.textContent = failure(e);
  }
}

function listRow(list) {
  const row = el('tr', null, { 'data-id': list.id });
  // A fetch that found the list unchanged moves `checked` only.
  const updated = list.checked && list.checked !== list.updated
    ? `${utc(list.updated)} (last tried ${utc(list.checked)})` : utc(list.updated);
  const error = el('td', list.error || 'none', { 'data-label': 'Last error' });
  if (list.error) error.classList.add('error');
  row.append(
    el('td', list.name, { 'data-label': 'Name' }),
    el('td', list.url || 'inline', list.url ? { 'data-label': 'URL', class: 'mono' } : { 'data-label': 'URL' }),
    el('td', list.domains, { 'data-label': 'Domains' }),
    el('td', list.skipped, { 'data-label': 'Skipped lines' }),
    el('td', updated, { 'data-label': 'Updated (UTC)' }),
    error,
  );
  const actions = el('td', null, { class: 'row-actions' });
  // A list given inline has nothing to fetch: the API refuses to refresh it.
  if (list.url) {
    const refresh = el('button', 'Refresh', { type: 'button', 'aria-label': 'Refresh list ' + list.name, 'data-action': 'refresh' });
    refresh.addEventListener('click', () => refreshList(list, refresh));
    actions.append(refresh);
  }
  const remove = el('button', 'Remove', { type: 'button', class: 'danger', 'aria-label': 'Remove list ' + list.name, 'data-action': 'remove' });
  remove.addEventListener('click', () => openRemoveList(list));
  actions.append(remove);
  row.append(actions);
  return row;
}

/** A button of a list's row, or the URL field when the row is gone. */
function listButton(id, action) {
  const row = [...byId('lists-table').tBodies[0].rows].find((r) => r.dataset.id === id);
  return (row && row.querySelector(`button[data-action=${action}]`)) || byId('fetch-url');
}

async function refreshList(list, button) {
  byId('lists-error').textContent = '';
  button.disabled = true;
  notice(`Fetching ${list.url}…`);
  try {
    const fresh = (await api('POST', `/api/v1/blocklists/${encodeURIComponent(list.id)}/refresh`)).data;
    notice(`Refreshed ${fresh.name}: ${fresh.domains} domains.`);
  } catch (e) {
    notice('');
    byId('lists-error').textContent = `Not refreshed: ${e.message}`;
  }
  await loadBlocklists();
  listButton(list.id, 'refresh').focus();
}

function openRemoveList(list) {
  const dialog = openDialog('confirm-template', () => listButton(list.id, 'remove'));
  const form = dialog.querySelector('form');
  byId('confirm-heading').textContent = 'Remove this blocklist?';
  byId('confirm-text').textContent = `${list.name} (${list.domains} domains) stops blocking at once.`;
  form.querySelector('button[value=yes]').textContent = 'Remove';
  dialog.querySelector('button[value=cancel]').focus();
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await api('DELETE', `/api/v1/blocklists/${encodeURIComponent(list.id)}`);
      notice(`Removed the list ${list.name}.`);
    } catch (e) {
      if (e.status !== 404) {
        byId('confirm-error').textContent = 'Not removed: ' + e.message;
        return;
      }
      notice(`The list ${list.name} was already removed by someone else.`);
    }
    await loadBlocklists();
    dialog.close();
  });
}

async function loadAllowlist() {
  const body = byId('allow-table').tBodies[0];
  const summary = byId('allow-summary');
  const current = begin('allowlist');
  try {
    const entries = (await api('GET', '/api/v1/allowlist')).data || [];
    if (!current()) return;
    body.replaceChildren(...entries.map(({ domain }) => {
      const row = el('tr', null, { 'data-id': domain });
      const remove = el('button', 'Remove', { type: 'button', class: 'danger', 'aria-label': `Remove ${domain} from the allowlist` });
      remove.addEventListener('click', () => disallow(domain));
      const actions = el('td', null, { class: 'row-actions' });
      actions.append(remove);
      row.append(el('td', domain, { 'data-label': 'Domain', class: 'mono' }), actions);
      return row;
    }));
    summary.textContent = entries.length === 0 ? 'Nothing on the allowlist.'
      : `${entries.length} name${entries.length === 1 ? '' : 's'} on the allowlist.`;
  } catch (e) {
    if (!current()) return;
    body.replaceChildren();
    summary.textContent = failure(e);
  }
}

async function disallow(domain) {
  byId('allow-form-error').textContent = '';
  try {
    await api('DELETE', `/api/v1/allowlist/${encodeURIComponent(domain)}`);
    notice(`Took ${domain} off the allowlist: the lists block it again.`);
  } catch (e) {
    if (e.status === 404) notice(`${domain} was already off the allowlist.`);
    else byId('allow-form-error').textContent = `Not removed: ${e.message}`;
  }
  await loadAllowlist();
  byId('allow-domain').focus();
}

/**
 * Wires up one of the blocking forms: `send` posts it and resolves to the words for the
 * status line; `fieldFor` says which field an error is about (null: none).
 */
function blockingForm(id, fields, send, fieldFor) {
  const form = byId(id);
  const prefix = id.replace(/-form$/, '');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(form, prefix, fields);
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      notice(await send(form.elements));
      form.reset();
      form.elements[fields[0]].focus();
    } catch (e) {
      notice('');
      showError(form, prefix, e, fieldFor(e), 'Not added');
    } finally {
      button.disabled = false;
    }
  });
}

function setUpBlocking() {
  blockingForm('fetch-form', ['url'], async (fields) => {
    const body = { url: fields.url.value.trim() };
    const name = fields.name.value.trim();
    if (name) body.name = name;
    notice(`Fetching ${body.url}…`);
    const list = (await api('POST', '/api/v1/blocklists', { body })).data;
    await loadBlocklists();
    return `Added ${list.name}: ${list.domains} domains, ${list.skipped} lines skipped.`;
  }, (e) => ([400, 409, 502].includes(e.status) ? 'url' : null));

  blockingForm('inline-form', ['name', 'domains'], async (fields) => {
    const domains = fields.domains.value.split('\n').map((line) => line.trim()).filter(Boolean);
    const body = { name: fields.name.value.trim(), domains };
    const list = (await api('POST', '/api/v1/blocklists', { body })).data;
    await loadBlocklists();
    return `Added ${list.name}: ${list.domains} domains, ${list.skipped} lines skipped.`;
  }, (e) => {
    if (e.status === 400 && e.message.includes('"name"')) return 'name';
    return [400, 413].includes(e.status) ? 'domains' : null;
  });

  blockingForm('allow-form', ['domain'], async (fields) => {
    const answer = await api('POST', '/api/v1/allowlist', { body: { domain: fields.domain.value.trim() } });
    await loadAllowlist();
    return `Allowed ${answer.data.domain}: it and the names below it are never blocked.`;
  }, (e) => ([400, 409].includes(e.status) ? 'domain' : null));
}

// ---- status ---------------------------------------------------------------------------

function duration(seconds) {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return [d && `${d} d`, (d || h) && `${h} h`, (d || h || m) && `${m} min`, `${s} s`]
    .filter(Boolean).join(' ');
}

async function loadStatus() {
  const list = byId('status-list');
  const body = byId('upstreams-table').tBodies[0];
  const current = begin('status');
  try {
    const s = (await api('GET', '/api/v1/status')).data;
    if (!current()) return;
    const ratio = s.cache.hit_ratio === null ? 'no lookups yet'
      : `${(s.cache.hit_ratio * 100).toFixed(1)} % (${s.cache.hits} hits, ${s.cache.misses} misses)`;
    const store = s.store.status === 'ok' ? 'ok' : `${s.store.status}: ${s.store.error || ''}`;
    const log = s.query_log.capacity === 0 ? 'off'
      : `keeps the last ${s.query_log.capacity}; ${s.query_log.recorded} logged since start`;
    const facts = [
      ['Version', s.version],
      ['Uptime', duration(s.uptime_seconds)],
      ['Queries', s.queries],
      ['Cached answers', s.cache.entries],
      ['Cache hit ratio', ratio],
      ['Store', store],
      ['Local records', s.store.records],
      ['Query log', log],
    ];
    list.replaceChildren(...facts.flatMap(([term, value]) => {
      const item = el('div');
      item.append(el('dt', term), el('dd', value));
      return [item];
    }));
    body.replaceChildren(...(s.upstreams || []).map((u) => {
      const row = el('tr');
      const health = u.status === 'ok' ? 'ok' : `${u.status} (${u.failures_in_a_row} failures in a row)`;
      row.append(
        el('td', u.upstream, { 'data-label': 'Upstream', class: 'mono' }),
        el('td', health, { 'data-label': 'Health' }),
        el('td', u.queries, { 'data-label': 'Queries' }),
        el('td', u.failures, { 'data-label': 'Failures' }),
      );
      return row;
    }));
  } catch (e) {
    if (!current()) return;
    list.replaceChildren(el('div', failure(e)));
    body.replaceChildren();
  }
}

// ---- start ----------------------------------------------------------------------------

function loadAll() {
  return Promise.all([
    loadRecords(), loadZones(), loadCache(), loadBlocklists(), loadAllowlist(), loadLog(), loadStatus(),
  ]);
}

function start() {
  setUpToken();
  setUpRecords();
  setUpCache();
  setUpBlocking();
  byId('log-form').addEventListener('submit', (event) => {
    event.preventDefault();
    loadLog();
  });
  byId('zones-reload').addEventListener('click', loadZones);
  byId('status-reload').addEventListener('click', loadStatus);
  loadAll();
}

start();
