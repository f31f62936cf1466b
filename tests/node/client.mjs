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
 *               created_at?, updated_at?, completed_at?, extra?: {}} -> {id}   (one transaction)
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
      for (const [k, v] of Object.entries(a.extra ?? {})) task.set(k, v)
    })
    return { id }
  },
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
