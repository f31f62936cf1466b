/**
 * A real Yjs client (npm `yjs` + `y-websocket`) remote-controlled by the Python test suite.
 *
 * One process = one Y.Doc + one Awareness + (after `connect`) one WebsocketProvider using the `ws`
 * package, `disableBc: true` (otherwise providers in one Node process bypass the server through
 * lib0's BroadcastChannel fallback) and `params: {token}`.
 *
 * Protocol: newline-delimited JSON. On start the process prints `{"ready": true, "clientId": N}`.
 * Each request line is `{"id": <any>, "cmd": "<name>", "args": {...}}`; each reply is one line
 * `{"id": <same>, "ok": true, "result": ...}` or `{"id": <same>, "ok": false, "error": "..."}`.
 * Replies may come out of order (waits are asynchronous). stdout carries only protocol lines;
 * logs go to stderr.
 *
 * Commands (args in braces):
 *   connect {url, room, token?, params?, headers?, resyncInterval?, maxBackoffTime?, reconnect?=true}
 *           creates the provider (replacing any previous one; the doc and awareness are kept).
 *           `reconnect: false` stops auto-reconnect after any server close.
 *   disconnect | reconnect (provider.connect()) | destroy (drop the provider)
 *   waitSynced {timeout?}        -> status, error on timeout
 *   waitClose {index?=0, timeout?} -> closes[index] ({code, reason, wasClean, at}) once it exists
 *   waitFor {expr, timeout?}     -> value of a JS expression once truthy; in scope: doc, Y, provider,
 *                                   awareness, state (function: same as the `state` command), status
 *   status -> {clientId, connected, connecting, synced, shouldConnect, closes, lastClose,
 *              terminalClose, errors, messagesReceived, bytesReceived, updatesApplied}
 *   state {texts?: [name], maps?: [name], arrays?: [name]}
 *         -> {tasks: {id: {...plain, description: string}}, texts: {}, maps: {}, arrays: {}}
 *   createTask {id?, title, description?, status?, assignee_id?, due_date?, created_by?,
 *               created_at?, updated_at?, completed_at?, priority?, rank?, v1?, extra?: {}} -> {id}
 *               (one transaction; a v2 task at the end of its column, or with `v1: true` the old shape)
 *   moveTask {task_id, status?, before_id?, after_id?} -> {rank}  (rank between neighbours, as a board does)
 *   addComment {task_id, body, author_id?, id?} -> {id} | editComment {task_id, comment_id, body}
 *   deleteComment {task_id, comment_id} | setCommentField {task_id, comment_id, field, value}
 *   createLabel {id?, name, color} -> {id} | deleteLabel {id} | setLabels {task_id, ids}
 *   addChecklistItem {task_id, text, done?} -> {id} | setChecklistDone {task_id, item_id, done}
 *   setField {task_id, field, value} | deleteField {task_id, field} | deleteTask {task_id}
 *   insertText {task_id, index, text} | deleteText {task_id, index, length} | setText {task_id, text}
 *   textInsert {name, index, text} | textDelete {name, index, length}
 *   mapSet {name, key, value} | mapDelete {name, key} | arrayPush {name, values}
 *   batch {ops: [{cmd, ...args}]}   runs document commands in ONE transaction (one update)
 *   setLocalState {state} | setLocalStateField {field, value} | getStates -> {clientId: state}
 *   encodeStateAsUpdate -> base64 | encodeStateVector -> base64 | applyUpdate {update_b64}
 *   sendRaw {bytes_b64 | text}       writes one raw binary (or text) frame on the provider's open websocket
 *   ping -> "pong" | exit
 */
import * as readline from 'node:readline'
import WebSocket from 'ws'
import * as Y from 'yjs'
import * as awarenessProtocol from 'y-protocols/awareness'
import { WebsocketProvider } from 'y-websocket'
import { generateKeyBetween } from 'fractional-indexing'

// y-websocket's resyncInterval reads the global `WebSocket.OPEN`, absent from Node 20.
if (typeof globalThis.WebSocket === 'undefined') globalThis.WebSocket = WebSocket
// Keep stdout clean for the protocol.
console.log = (...args) => console.error(...args)

const doc = new Y.Doc()
const awareness = new awarenessProtocol.Awareness(doc)
/** @type {WebsocketProvider | null} */
let provider = null
const closes = []
const errors = []
let terminalClose = null
let messagesReceived = 0
let bytesReceived = 0
let updatesApplied = 0
let connectHeaders = {}

doc.on('update', (_update, origin) => {
  if (origin === provider && provider !== null) updatesApplied++
})

/** `ws` with extra handshake headers (Origin, Authorization) and receive counters. */
class TestWebSocket extends WebSocket {
  constructor (url, protocols) {
    super(url, protocols, { headers: connectHeaders })
    this.addEventListener('message', (ev) => {
      messagesReceived++
      bytesReceived += ev.data.byteLength ?? ev.data.length ?? 0
    })
    this.on('unexpected-response', (_req, res) => {
      errors.push({ message: `unexpected response ${res.statusCode}`, status: res.statusCode, at: Date.now() })
      this.terminate()
    })
  }
}

const tasks = () => doc.getMap('tasks')

const getTask = (taskId) => {
  const task = tasks().get(taskId)
  if (!(task instanceof Y.Map)) throw new Error(`task ${taskId} is not a Y.Map (${typeof task})`)
  return task
}

const getDescription = (taskId) => {
  const text = getTask(taskId).get('description')
  if (!(text instanceof Y.Text)) throw new Error(`task ${taskId} description is not a Y.Text`)
  return text
}

const items = (taskId, name) => {
  const array = getTask(taskId).get(name)
  if (!(array instanceof Y.Array)) throw new Error(`task ${taskId} ${name} is not a Y.Array`)
  return array
}

const findItem = (taskId, name, itemId) => {
  const array = items(taskId, name)
  const index = array.toArray().findIndex((m) => m instanceof Y.Map && m.get('id') === itemId)
  if (index < 0) throw new Error(`no ${name} item ${itemId} in task ${taskId}`)
  return { array, index, item: array.get(index) }
}

/** (rank, id) of a column's tasks in board order. */
const column = (status, exclude) => {
  const out = []
  tasks().forEach((t, id) => {
    if (id !== exclude && t instanceof Y.Map && t.get('status') === status && typeof t.get('rank') === 'string') {
      out.push([t.get('rank'), id])
    }
  })
  return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : 1))
}

const between = (a, b) => generateKeyBetween(a, b !== null && a !== null && a >= b ? null : b)

const toPlain = (value) => (value instanceof Y.AbstractType ? value.toJSON() : value)

const state = ({ texts = [], maps = [], arrays = [] } = {}) => {
  const out = { tasks: toPlain(tasks()), texts: {}, maps: {}, arrays: {} }
  for (const n of texts) out.texts[n] = doc.getText(n).toString()
  for (const n of maps) out.maps[n] = doc.getMap(n).toJSON()
  for (const n of arrays) out.arrays[n] = doc.getArray(n).toJSON()
  return out
}

const status = () => ({
  clientId: doc.clientID,
  connected: provider?.wsconnected ?? false,
  connecting: provider?.wsconnecting ?? false,
  synced: provider?.synced ?? false,
  shouldConnect: provider?.shouldConnect ?? false,
  closes,
  lastClose: closes.length ? closes[closes.length - 1] : null,
  terminalClose,
  errors,
  messagesReceived,
  bytesReceived,
  updatesApplied
})

const b64 = (u8) => Buffer.from(u8).toString('base64')
const fromB64 = (s) => new Uint8Array(Buffer.from(s, 'base64'))
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Poll `fn` until it returns a truthy value; reject with `what` and the status on timeout. */
const waitUntil = async (fn, timeout, what) => {
  const deadline = Date.now() + (timeout ?? 10) * 1000
  for (;;) {
    const value = fn()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timeout waiting for ${what}; status=${JSON.stringify(status())}`)
    await sleep(5)
  }
}

const requireProvider = () => {
  if (provider === null) throw new Error('not connected: send connect first')
  return provider
}

/** Document commands: synchronous, so `batch` can run several in one transaction. */
const docCommands = {
  createTask (a) {
    const id = a.id ?? crypto.randomUUID()
    const now = new Date().toISOString()
    const status = a.status ?? 'todo'
    const task = new Y.Map()
    doc.transact(() => {
      const last = column(status).at(-1)
      tasks().set(id, task)
      task.set('id', id)
      task.set('title', a.title ?? '')
      task.set('description', new Y.Text(a.description ?? ''))
      task.set('status', status)
      task.set('assignee_id', a.assignee_id ?? null)
      task.set('due_date', a.due_date ?? null)
      task.set('created_by', a.created_by ?? null)
      task.set('created_at', a.created_at ?? now)
      task.set('updated_at', a.updated_at ?? now)
      task.set('completed_at', a.completed_at !== undefined ? a.completed_at : (status === 'done' ? now : null))
      if (!a.v1) {
        task.set('rank', a.rank ?? between(last ? last[0] : null, null))
        task.set('priority', a.priority ?? 'none')
        task.set('labels', new Y.Array())
        task.set('checklist', new Y.Array())
        task.set('comments', new Y.Array())
      }
      for (const [k, v] of Object.entries(a.extra ?? {})) task.set(k, v)
    })
    return { id }
  },
  moveTask (a) {
    const task = getTask(a.task_id)
    const status = a.status ?? task.get('status')
    const col = column(status, a.task_id)
    let rank
    if (a.before_id != null) {
      const i = col.findIndex(([, id]) => id === a.before_id)
      rank = between(i > 0 ? col[i - 1][0] : null, col[i][0])
    } else if (a.after_id != null) {
      const i = col.findIndex(([, id]) => id === a.after_id)
      rank = between(col[i][0], i + 1 < col.length ? col[i + 1][0] : null)
    } else {
      rank = between(col.length ? col[col.length - 1][0] : null, null)
    }
    doc.transact(() => {
      if (status !== task.get('status')) task.set('status', status)
      task.set('rank', rank)
      task.set('updated_at', new Date().toISOString())
    })
    return { rank }
  },
  addComment (a) {
    const id = a.id ?? crypto.randomUUID()
    const c = new Y.Map()
    doc.transact(() => {
      items(a.task_id, 'comments').push([c])
      c.set('id', id)
      c.set('author_id', a.author_id ?? null)
      c.set('body', a.body)
      c.set('created_at', new Date().toISOString())
      c.set('edited_at', null)
    })
    return { id }
  },
  editComment (a) {
    const { item } = findItem(a.task_id, 'comments', a.comment_id)
    doc.transact(() => { item.set('body', a.body); item.set('edited_at', new Date().toISOString()) })
    return null
  },
  setCommentField: (a) => { findItem(a.task_id, 'comments', a.comment_id).item.set(a.field, a.value); return null },
  deleteComment (a) {
    const { array, index } = findItem(a.task_id, 'comments', a.comment_id)
    array.delete(index, 1)
    return null
  },
  createLabel (a) {
    const id = a.id ?? crypto.randomUUID()
    const label = new Y.Map()
    doc.transact(() => {
      doc.getMap('labels').set(id, label)
      label.set('id', id); label.set('name', a.name); label.set('color', a.color)
    })
    return { id }
  },
  deleteLabel: (a) => { doc.getMap('labels').delete(a.id); return null },
  setLabels (a) {
    const labels = items(a.task_id, 'labels')
    doc.transact(() => { labels.delete(0, labels.length); labels.push(a.ids) })
    return null
  },
  addChecklistItem (a) {
    const id = crypto.randomUUID()
    const item = new Y.Map()
    doc.transact(() => {
      items(a.task_id, 'checklist').push([item])
      item.set('id', id); item.set('text', a.text); item.set('done', a.done ?? false)
    })
    return { id }
  },
  setChecklistDone: (a) => { findItem(a.task_id, 'checklist', a.item_id).item.set('done', a.done); return null },
  setField: (a) => { getTask(a.task_id).set(a.field, a.value); return null },
  deleteField: (a) => { getTask(a.task_id).delete(a.field); return null },
  deleteTask: (a) => { tasks().delete(a.task_id); return null },
  insertText: (a) => { getDescription(a.task_id).insert(a.index, a.text); return null },
  deleteText: (a) => { getDescription(a.task_id).delete(a.index, a.length); return null },
  setText (a) {
    const text = getDescription(a.task_id)
    doc.transact(() => {
      text.delete(0, text.length)
      text.insert(0, a.text)
    })
    return null
  },
  textInsert: (a) => { doc.getText(a.name).insert(a.index, a.text); return null },
  textDelete: (a) => { doc.getText(a.name).delete(a.index, a.length); return null },
  mapSet: (a) => { doc.getMap(a.name).set(a.key, a.value); return null },
  mapDelete: (a) => { doc.getMap(a.name).delete(a.key); return null },
  arrayPush: (a) => { doc.getArray(a.name).push(a.values); return null }
}

const commands = {
  ...docCommands,
  ping: () => 'pong',
  connect (a) {
    if (provider !== null) provider.destroy()
    closes.length = 0
    errors.length = 0
    terminalClose = null
    connectHeaders = a.headers ?? {}
    const params = { ...(a.params ?? {}) }
    if (a.token != null) params.token = a.token
    const opts = { WebSocketPolyfill: TestWebSocket, disableBc: true, params, awareness }
    if (a.resyncInterval != null) opts.resyncInterval = a.resyncInterval
    if (a.maxBackoffTime != null) opts.maxBackoffTime = a.maxBackoffTime
    if (a.reconnect === false) opts.shouldReconnect = () => false
    const p = new WebsocketProvider(a.url, a.room, doc, opts)
    p.on('connection-close', (event) => {
      // event is null when the close was local (disconnect / watchdog): not a server close code
      if (event != null && p === provider) {
        closes.push({ code: event.code, reason: event.reason ?? '', wasClean: event.wasClean ?? null, at: Date.now() })
      }
    })
    p.on('connection-error', (event) => {
      if (p === provider) errors.push({ message: String(event?.message ?? event?.error ?? 'error'), at: Date.now() })
    })
    p.on('closed', (event) => {
      if (p === provider) terminalClose = { code: event.code, reason: event.reason ?? '' }
    })
    provider = p
    return status()
  },
  disconnect: () => { requireProvider().disconnect(); return status() },
  reconnect: () => { requireProvider().connect(); return status() },
  destroy () {
    if (provider !== null) provider.destroy()
    provider = null
    return null
  },
  waitSynced: async (a) => {
    await waitUntil(() => provider?.synced, a.timeout, 'synced')
    return status()
  },
  waitClose: (a) => waitUntil(() => closes[a.index ?? 0], a.timeout, `close #${a.index ?? 0}`),
  waitFor (a) {
    // eslint-disable-next-line no-new-func
    const fn = new Function('doc', 'Y', 'provider', 'awareness', 'state', 'status', `return (${a.expr})`)
    return waitUntil(() => fn(doc, Y, provider, awareness, state, status), a.timeout, a.expr)
  },
  status,
  state: (a) => state(a),
  batch (a) {
    const results = []
    doc.transact(() => {
      for (const op of a.ops) {
        const handler = docCommands[op.cmd]
        if (!handler) throw new Error(`batch: not a document command: ${op.cmd}`)
        results.push(handler(op))
      }
    })
    return results
  },
  setLocalState: (a) => { awareness.setLocalState(a.state); return null },
  setLocalStateField: (a) => { awareness.setLocalStateField(a.field, a.value); return null },
  getStates: () => Object.fromEntries(awareness.getStates()),
  encodeStateAsUpdate: () => b64(Y.encodeStateAsUpdate(doc)),
  encodeStateVector: () => b64(Y.encodeStateVector(doc)),
  applyUpdate: (a) => { Y.applyUpdate(doc, fromB64(a.update_b64), 'test'); return null },
  sendRaw (a) {
    const ws = requireProvider().ws
    if (ws === null || ws.readyState !== WebSocket.OPEN) throw new Error('websocket is not open')
    ws.send(a.text != null ? String(a.text) : fromB64(a.bytes_b64))
    return null
  },
  exit () {
    setImmediate(() => {
      if (provider !== null) provider.destroy()
      process.exit(0)
    })
    return null
  }
}

const reply = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

const handle = async (line) => {
  let req
  try {
    req = JSON.parse(line)
  } catch (e) {
    reply({ id: null, ok: false, error: `bad JSON: ${e.message}` })
    return
  }
  const handler = commands[req.cmd]
  if (!handler) {
    reply({ id: req.id, ok: false, error: `unknown command: ${req.cmd}` })
    return
  }
  try {
    const result = await handler(req.args ?? {})
    reply({ id: req.id, ok: true, result: result ?? null })
  } catch (e) {
    reply({ id: req.id, ok: false, error: e?.stack ?? String(e) })
  }
}

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', (line) => { if (line.trim()) handle(line) })
// The test process went away: do not linger.
rl.on('close', () => {
  if (provider !== null) provider.destroy()
  process.exit(0)
})
reply({ ready: true, clientId: doc.clientID })
