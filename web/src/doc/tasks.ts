/**
 * The task schema of a workspace document (docs/document-schema.md, issue 4) and the pure
 * functions that read it into plain objects and write user intentions back into it.
 * Everything here works on a bare Y.Doc so it is unit-tested without a browser or server.
 */
import * as Y from 'yjs'
import { generateKeyBetween } from 'fractional-indexing'

export const STATUSES = ['todo', 'in_progress', 'done'] as const
export type Status = (typeof STATUSES)[number]
export const STATUS_LABELS: Record<Status, string> = { todo: 'To do', in_progress: 'In progress', done: 'Done' }

export const PRIORITIES = ['none', 'low', 'medium', 'high', 'urgent'] as const
export type Priority = (typeof PRIORITIES)[number]
export const PRIORITY_LABELS: Record<Priority, string> = { none: 'No priority', low: 'Low', medium: 'Medium', high: 'High', urgent: 'Urgent' }

export interface ChecklistItem {
  id: string
  text: string
  done: boolean
}

export interface Comment {
  id: string
  author_id: string | null
  body: string
  created_at: string | null
  edited_at: string | null
}

export interface Label {
  id: string
  name: string
  color: string
}

export interface Task {
  id: string
  title: string
  status: Status
  assignee_id: string | null
  due_date: string | null
  created_by: string | null
  created_at: string | null
  updated_at: string | null
  completed_at: string | null
  /** Fractional index in its column; null on a task from before schema v2 (shown after the ranked ones). */
  rank: string | null
  priority: Priority
  labels: string[]
  checklist: ChecklistItem[]
  comments: Comment[]
}


export function tasksMap(doc: Y.Doc): Y.Map<Y.Map<unknown>> {
  return doc.getMap('tasks') as Y.Map<Y.Map<unknown>>
}

function str(value: unknown): string | null {
  return typeof value === 'string' ? value : null
}

export function labelsMap(doc: Y.Doc): Y.Map<Y.Map<unknown>> {
  return doc.getMap('labels') as Y.Map<Y.Map<unknown>>
}

export function isPriority(value: unknown): value is Priority {
  return typeof value === 'string' && (PRIORITIES as readonly string[]).includes(value)
}

export function isStatus(value: unknown): value is Status {
  return typeof value === 'string' && (STATUSES as readonly string[]).includes(value)
}

const DATE_RE = /^\d{4}-\d{2}-\d{2}$/

/** Read one entry; anything that is not a task map is skipped (the server repairs it for everyone). */
export function readTask(id: string, entry: unknown): Task | null {
  if (!(entry instanceof Y.Map)) return null
  const due = str(entry.get('due_date'))
  return {
    id,
    title: str(entry.get('title')) ?? '',
    status: isStatus(entry.get('status')) ? (entry.get('status') as Status) : 'todo',
    assignee_id: str(entry.get('assignee_id')),
    due_date: due && DATE_RE.test(due) ? due : null,
    created_by: str(entry.get('created_by')),
    created_at: str(entry.get('created_at')),
    updated_at: str(entry.get('updated_at')),
    completed_at: str(entry.get('completed_at')),
    rank: str(entry.get('rank')),
    priority: isPriority(entry.get('priority')) ? (entry.get('priority') as Priority) : 'none',
    labels: readLabelIds(entry.get('labels')),
    checklist: mapsOf(entry.get('checklist')).map((m, i) => ({
      id: str(m.get('id')) ?? `item-${i}`,
      text: str(m.get('text')) ?? '',
      done: m.get('done') === true,
    })),
    comments: mapsOf(entry.get('comments')).map((m, i) => ({
      id: str(m.get('id')) ?? `comment-${i}`,
      author_id: str(m.get('author_id')),
      body: str(m.get('body')) ?? '',
      created_at: str(m.get('created_at')),
      edited_at: str(m.get('edited_at')),
    })),
  }
}

function readLabelIds(value: unknown): string[] {
  if (!(value instanceof Y.Array)) return []
  const out: string[] = []
  for (const v of value.toArray()) if (typeof v === 'string' && !out.includes(v)) out.push(v)
  return out
}

function mapsOf(value: unknown): Y.Map<unknown>[] {
  return value instanceof Y.Array ? value.toArray().filter((v): v is Y.Map<unknown> => v instanceof Y.Map) : []
}

/** Column order (docs/document-schema.md): by rank byte by byte, ties by id; unranked tasks last. */
export function compareRank(a: Pick<Task, 'rank' | 'id' | 'created_at'>, b: Pick<Task, 'rank' | 'id' | 'created_at'>): number {
  if (a.rank !== null && b.rank !== null) {
    if (a.rank !== b.rank) return a.rank < b.rank ? -1 : 1
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
  }
  if (a.rank !== null) return -1
  if (b.rank !== null) return 1
  return (a.created_at ?? '').localeCompare(b.created_at ?? '') || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
}

/** All tasks, oldest first (ties by id, so every client shows the same order). */
export function deriveTasks(doc: Y.Doc): Task[] {
  const out: Task[] = []
  tasksMap(doc).forEach((entry, id) => {
    const task = readTask(id, entry)
    if (task) out.push(task)
  })
  out.sort((a, b) => (a.created_at ?? '').localeCompare(b.created_at ?? '') || a.id.localeCompare(b.id))
  return out
}

/** The workspace's label definitions, by name (ties by id); malformed entries are skipped. */
export function deriveLabels(doc: Y.Doc): Label[] {
  const out: Label[] = []
  labelsMap(doc).forEach((entry, id) => {
    if (!(entry instanceof Y.Map)) return
    const color = str(entry.get('color'))
    out.push({ id, name: str(entry.get('name')) ?? 'Label', color: color && /^#[0-9a-fA-F]{6}$/.test(color) ? color : '#6b7280' })
  })
  out.sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id))
  return out
}


/** Tasks per column in board order (rank, then id), keeping those `keep` accepts. */
export function columns(tasks: Task[], keep: (t: Task) => boolean = () => true): Record<Status, Task[]> {
  const cols: Record<Status, Task[]> = { todo: [], in_progress: [], done: [] }
  for (const t of tasks) if (keep(t)) cols[t.status].push(t)
  for (const s of STATUSES) cols[s].sort(compareRank)
  return cols
}

/** A key strictly between two neighbours' ranks; tolerant of ties and of unranked or malformed neighbours. */
export function rankBetween(before: string | null, after: string | null): string {
  try {
    if (before !== null && after !== null && before >= after) return generateKeyBetween(before, null)
    return generateKeyBetween(before, after)
  } catch {
    try {
      return generateKeyBetween(before, null)
    } catch {
      return generateKeyBetween(null, null)
    }
  }
}

/** The rank that puts a task at `index` of `column` (the column as shown, without the task itself). */
export function rankAt(column: Task[], index: number): string {
  const ranked = column.filter((t) => t.rank !== null)
  const i = Math.max(0, Math.min(index, ranked.length))
  return rankBetween(ranked[i - 1]?.rank ?? null, ranked[i]?.rank ?? null)
}

/**
 * Move a task to `status` at `index` of that column as the caller shows it (filtered or not): its new rank
 * lies between the neighbours there, so concurrent moves converge (one map key per task).
 */
export function moveTask(doc: Y.Doc, id: string, status: Status, index: number, column: Task[]): boolean {
  const others = column.filter((t) => t.id !== id)
  const rank = rankAt(others, index)
  const entry = tasksMap(doc).get(id)
  if (!(entry instanceof Y.Map)) return false
  doc.transact(() => {
    entry.set('rank', rank)
    if (entry.get('status') !== status) {
      entry.set('status', status)
      entry.set('completed_at', status === 'done' ? nowIso() : null)
    }
    entry.set('updated_at', nowIso())
  })
  return true
}

export function nowIso(): string {
  return new Date().toISOString()
}

export interface NewTask {
  title: string
  status?: Status
  assignee_id?: string | null
  due_date?: string | null
  description?: string
  priority?: Priority
}

/** Insert a task map with every schema field and its three arrays, in one transaction, at the end of its column. */
export function createTask(doc: Y.Doc, input: NewTask, userId: string, id: string = crypto.randomUUID()): string {
  const now = nowIso()
  const status = input.status ?? 'todo'
  const column = deriveTasks(doc).filter((t) => t.status === status)
  const rank = rankAt(column.sort(compareRank), column.length)
  doc.transact(() => {
    const m = new Y.Map<unknown>()
    m.set('id', id)
    m.set('title', input.title)
    m.set('description', new Y.Text(input.description ?? ''))
    m.set('status', status)
    m.set('assignee_id', input.assignee_id ?? null)
    m.set('due_date', input.due_date ?? null)
    m.set('created_by', userId)
    m.set('created_at', now)
    m.set('updated_at', now)
    m.set('completed_at', status === 'done' ? now : null)
    m.set('rank', rank)
    m.set('priority', input.priority ?? 'none')
    m.set('labels', new Y.Array<string>())
    m.set('checklist', new Y.Array<Y.Map<unknown>>())
    m.set('comments', new Y.Array<Y.Map<unknown>>())
    tasksMap(doc).set(id, m)
  })
  return id
}

export type TaskPatch = Partial<Pick<Task, 'title' | 'status' | 'assignee_id' | 'due_date' | 'priority'>>

/** Set only the fields that change; moving to/from done keeps completed_at consistent. */
export function updateTask(doc: Y.Doc, id: string, patch: TaskPatch): boolean {
  const entry = tasksMap(doc).get(id)
  if (!(entry instanceof Y.Map)) return false
  let changed = false
  doc.transact(() => {
    for (const [key, value] of Object.entries(patch) as [keyof TaskPatch, unknown][]) {
      if (value === undefined || entry.get(key) === value) continue
      entry.set(key, value)
      changed = true
      if (key === 'status') {
        entry.set('completed_at', value === 'done' ? nowIso() : null)
        // A status change from a select lands at the end of the new column, as a move there would.
        const column = deriveTasks(doc).filter((t) => t.status === value && t.id !== id)
        entry.set('rank', rankAt(column.sort(compareRank), column.length))
      }
    }
    if (changed) entry.set('updated_at', nowIso())
  })
  return changed
}

export function deleteTask(doc: Y.Doc, id: string, origin?: unknown): void {
  doc.transact(() => tasksMap(doc).delete(id), origin)
}

/** The shared description of a task; created if an older client left it out. */
export function descriptionOf(doc: Y.Doc, id: string): Y.Text | null {
  const entry = tasksMap(doc).get(id)
  if (!(entry instanceof Y.Map)) return null
  const text = entry.get('description')
  return text instanceof Y.Text ? text : null
}

/** Tasks are re-read only when a task map changes, not on every keystroke in a description. */
export function touchesTaskFields(events: Y.YEvent<Y.AbstractType<unknown>>[]): boolean {
  return events.some((e) => !(e.target instanceof Y.Text))
}

/** Wire a doc to a setter: re-derive tasks when a task map (not just a description) changes. */
export function bindTasks(doc: Y.Doc, onTasks: (tasks: Task[]) => void, onLabels?: (labels: Label[]) => void): () => void {
  const map = tasksMap(doc)
  const labels = labelsMap(doc)
  const handler = (events: Y.YEvent<Y.AbstractType<unknown>>[]) => {
    if (touchesTaskFields(events)) onTasks(deriveTasks(doc))
  }
  const labelHandler = () => onLabels?.(deriveLabels(doc))
  map.observeDeep(handler)
  labels.observeDeep(labelHandler)
  onTasks(deriveTasks(doc))
  labelHandler()
  return () => {
    map.unobserveDeep(handler)
    labels.unobserveDeep(labelHandler)
  }
}

function taskEntry(doc: Y.Doc, id: string): Y.Map<unknown> | null {
  const entry = tasksMap(doc).get(id)
  return entry instanceof Y.Map ? entry : null
}

/**
 * A task's array field. Created only when missing (a task from before schema v2, or a repaired one): a task
 * created by this client always has its arrays, and making them on an existing task races other clients.
 */
function arrayOf<T>(entry: Y.Map<unknown>, key: 'labels' | 'checklist' | 'comments'): Y.Array<T> {
  const value = entry.get(key)
  if (value instanceof Y.Array) return value as Y.Array<T>
  const made = new Y.Array<T>()
  entry.set(key, made)
  return made
}

function findIndex(arr: Y.Array<unknown>, pred: (v: unknown) => boolean): number {
  const items = arr.toArray()
  for (let i = 0; i < items.length; i++) if (pred(items[i])) return i
  return -1
}

const byId = (id: string) => (v: unknown) => v instanceof Y.Map && v.get('id') === id

const COLOR_RE = /^#[0-9a-fA-F]{6}$/
export const LABEL_COLORS = ['#2563eb', '#16a34a', '#d97706', '#dc2626', '#7c3aed', '#0891b2', '#db2777', '#6b7280']

/** Define a label (name 1–50 characters, color #rrggbb); returns its id. */
export function createLabel(doc: Y.Doc, name: string, color: string, id: string = crypto.randomUUID()): string {
  doc.transact(() => {
    const m = new Y.Map<unknown>()
    m.set('id', id)
    m.set('name', name.trim().slice(0, 50) || 'Label')
    m.set('color', COLOR_RE.test(color) ? color : '#6b7280')
    labelsMap(doc).set(id, m)
  })
  return id
}

export function updateLabel(doc: Y.Doc, id: string, patch: { name?: string; color?: string }): boolean {
  const entry = labelsMap(doc).get(id)
  if (!(entry instanceof Y.Map)) return false
  doc.transact(() => {
    const name = patch.name?.trim().slice(0, 50)
    if (name && name !== entry.get('name')) entry.set('name', name)
    if (patch.color && COLOR_RE.test(patch.color) && patch.color !== entry.get('color')) entry.set('color', patch.color)
  })
  return true
}

/** Delete a definition and take it off every task in the same transaction (the server would do the latter too). */
export function deleteLabel(doc: Y.Doc, id: string): void {
  doc.transact(() => {
    labelsMap(doc).delete(id)
    tasksMap(doc).forEach((entry) => {
      if (!(entry instanceof Y.Map)) return
      const arr = entry.get('labels')
      if (!(arr instanceof Y.Array)) return
      for (let i = arr.length - 1; i >= 0; i--) if (arr.get(i) === id) arr.delete(i, 1)
    })
  })
}

/** Put a label on a task, or take it off; each label at most once. */
export function setTaskLabel(doc: Y.Doc, taskId: string, labelId: string, on: boolean): boolean {
  const entry = taskEntry(doc, taskId)
  if (!entry) return false
  doc.transact(() => {
    const arr = arrayOf<string>(entry, 'labels')
    const at = arr.toArray().indexOf(labelId)
    if (on && at < 0) arr.push([labelId])
    if (!on) for (let i = arr.length - 1; i >= 0; i--) if (arr.get(i) === labelId) arr.delete(i, 1)
    entry.set('updated_at', nowIso())
  })
  return true
}

export function addChecklistItem(doc: Y.Doc, taskId: string, text: string, id: string = crypto.randomUUID()): string | null {
  const entry = taskEntry(doc, taskId)
  if (!entry) return null
  doc.transact(() => {
    const item = new Y.Map<unknown>()
    item.set('id', id)
    item.set('text', text)
    item.set('done', false)
    arrayOf<Y.Map<unknown>>(entry, 'checklist').push([item])
    entry.set('updated_at', nowIso())
  })
  return id
}

export function updateChecklistItem(doc: Y.Doc, taskId: string, itemId: string, patch: { text?: string; done?: boolean }): boolean {
  const entry = taskEntry(doc, taskId)
  const arr = entry?.get('checklist')
  if (!entry || !(arr instanceof Y.Array)) return false
  const item = arr.toArray().find(byId(itemId))
  if (!(item instanceof Y.Map)) return false
  doc.transact(() => {
    if (patch.text !== undefined && patch.text !== item.get('text')) item.set('text', patch.text)
    if (patch.done !== undefined && patch.done !== item.get('done')) item.set('done', patch.done)
    entry.set('updated_at', nowIso())
  })
  return true
}

export function removeChecklistItem(doc: Y.Doc, taskId: string, itemId: string): boolean {
  const entry = taskEntry(doc, taskId)
  const arr = entry?.get('checklist')
  if (!entry || !(arr instanceof Y.Array)) return false
  const at = findIndex(arr, byId(itemId))
  if (at < 0) return false
  doc.transact(() => {
    arr.delete(at, 1)
    entry.set('updated_at', nowIso())
  })
  return true
}

/** Append a comment as one map in one transaction; the server sets `author_id` to whoever really sent it. */
export function addComment(doc: Y.Doc, taskId: string, authorId: string, body: string, id: string = crypto.randomUUID()): string | null {
  const entry = taskEntry(doc, taskId)
  if (!entry) return null
  const now = nowIso()
  doc.transact(() => {
    const c = new Y.Map<unknown>()
    c.set('id', id)
    c.set('author_id', authorId)
    c.set('body', body)
    c.set('created_at', now)
    c.set('edited_at', null)
    arrayOf<Y.Map<unknown>>(entry, 'comments').push([c])
  })
  return id
}

export function editComment(doc: Y.Doc, taskId: string, commentId: string, body: string): boolean {
  const arr = taskEntry(doc, taskId)?.get('comments')
  if (!(arr instanceof Y.Array)) return false
  const c = arr.toArray().find(byId(commentId))
  if (!(c instanceof Y.Map)) return false
  doc.transact(() => {
    c.set('body', body)
    c.set('edited_at', nowIso())
  })
  return true
}

export function deleteComment(doc: Y.Doc, taskId: string, commentId: string): boolean {
  const arr = taskEntry(doc, taskId)?.get('comments')
  if (!(arr instanceof Y.Array)) return false
  const at = findIndex(arr, byId(commentId))
  if (at < 0) return false
  doc.transact(() => arr.delete(at, 1))
  return true
}

/** `@[Display Name](user:ID)`: the id is what counts, the name is what it said when written. */
export const MENTION_RE = /@\[([^\]\n]{0,200})\]\(user:([A-Za-z0-9-]{1,64})\)/g

export function mentionOf(name: string, id: string): string {
  return `@[${name.replace(/[[\]\n]/g, '')}](user:${id})`
}

/** Split a text into plain runs and mentions, for rendering a mention under the member's current name. */
export function splitMentions(text: string): ({ text: string } | { mention: string; name: string })[] {
  const out: ({ text: string } | { mention: string; name: string })[] = []
  let last = 0
  for (const m of text.matchAll(MENTION_RE)) {
    if (m.index > last) out.push({ text: text.slice(last, m.index) })
    out.push({ mention: m[2], name: m[1] })
    last = m.index + m[0].length
  }
  if (last < text.length) out.push({ text: text.slice(last) })
  return out
}

/** Plain text of a body for searching: mentions read as their names. */
function plain(text: string): string {
  return text.replace(MENTION_RE, (_m, name: string) => `@${name}`)
}

/** Instant search over the loaded document: every word of `q` in the title, description, comments or checklist. */
export function matchesQuery(doc: Y.Doc, task: Task, q: string): boolean {
  const words = q.toLowerCase().split(/\s+/).filter(Boolean)
  if (words.length === 0) return true
  const hay = [
    task.title,
    descriptionOf(doc, task.id)?.toString() ?? '',
    ...task.comments.map((c) => plain(c.body)),
    ...task.checklist.map((i) => i.text),
  ]
    .join('\n')
    .toLowerCase()
  return words.every((w) => hay.includes(w))
}

export function progressOf(task: Task): { done: number; total: number } {
  return { done: task.checklist.filter((i) => i.done).length, total: task.checklist.length }
}

/** A local calendar day as YYYY-MM-DD. */
export function isoDay(d: Date): string {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`
}

function dayNumber(day: string): number {
  const [y, m, d] = day.split('-').map(Number)
  return Math.round(Date.UTC(y, m - 1, d) / 86_400_000)
}

/** Days from `today` to `due` (negative: overdue). */
export function daysUntil(due: string, today: string): number {
  return dayNumber(due) - dayNumber(today)
}

/** "due today", "due tomorrow", "due in 3 days", "overdue by 2 days", "due on 2030-01-31". */
export function humanDue(due: string, today: string, done = false): { text: string; overdue: boolean } {
  const n = daysUntil(due, today)
  if (!done && n < 0) return { text: n === -1 ? 'overdue since yesterday' : `overdue by ${-n} days`, overdue: true }
  if (n === 0) return { text: 'due today', overdue: false }
  if (n === 1) return { text: 'due tomorrow', overdue: false }
  if (n === -1) return { text: 'was due yesterday', overdue: false }
  if (n > 1 && n < 7) return { text: `due in ${n} days`, overdue: false }
  return { text: `due ${due}`, overdue: false }
}

/** Board filters; every one is kept in the URL's query so a filtered board can be shared. */
export interface BoardFilters {
  assignee: string | null // 'mine' | 'unassigned' | a user id
  label: string | null
  priority: Priority | null
  status: Status | null
  due: 'overdue' | 'today' | 'week' | 'none' | null
  q: string
}

export const NO_FILTERS: BoardFilters = { assignee: null, label: null, priority: null, status: null, due: null, q: '' }
const DUE_FILTERS = ['overdue', 'today', 'week', 'none'] as const

export function filtersFromQuery(search: string): BoardFilters {
  const p = new URLSearchParams(search)
  const due = p.get('due')
  const priority = p.get('priority')
  const status = p.get('status')
  return {
    assignee: p.get('assignee') || null,
    label: p.get('label') || null,
    priority: isPriority(priority) ? priority : null,
    status: isStatus(status) ? status : null,
    due: (DUE_FILTERS as readonly string[]).includes(due ?? '') ? (due as BoardFilters['due']) : null,
    q: p.get('q') ?? '',
  }
}

/** The query string of a set of filters (keys in a fixed order, empty ones left out), with its `?`. */
export function filtersToQuery(f: BoardFilters): string {
  const p = new URLSearchParams()
  if (f.assignee) p.set('assignee', f.assignee)
  if (f.label) p.set('label', f.label)
  if (f.priority) p.set('priority', f.priority)
  if (f.status) p.set('status', f.status)
  if (f.due) p.set('due', f.due)
  if (f.q) p.set('q', f.q)
  const s = p.toString()
  return s ? `?${s}` : ''
}

export function matchesFilters(doc: Y.Doc | null, task: Task, f: BoardFilters, me: string | null, today: string): boolean {
  if (f.assignee === 'mine' && (me === null || task.assignee_id !== me)) return false
  if (f.assignee === 'unassigned' && task.assignee_id !== null) return false
  if (f.assignee && f.assignee !== 'mine' && f.assignee !== 'unassigned' && task.assignee_id !== f.assignee) return false
  if (f.label && !task.labels.includes(f.label)) return false
  if (f.priority && task.priority !== f.priority) return false
  if (f.status && task.status !== f.status) return false
  if (f.due === 'none' && task.due_date !== null) return false
  if (f.due && f.due !== 'none') {
    if (task.due_date === null) return false
    const n = daysUntil(task.due_date, today)
    if (f.due === 'overdue' && !(n < 0 && task.status !== 'done')) return false
    if (f.due === 'today' && n !== 0) return false
    if (f.due === 'week' && !(n >= 0 && n < 7)) return false
  }
  if (f.q && doc && !matchesQuery(doc, task, f.q)) return false
  return true
}

/** The longest task title the API accepts (api/routes/tasks.py); longer ones are refused, never cut. */
export const TITLE_MAX = 500

/** Why a title cannot be saved, or null when it can. */
export function titleProblem(title: string): string | null {
  const n = [...title.trim()].length
  return n > TITLE_MAX ? `The title is too long: ${n} characters (at most ${TITLE_MAX}). Shorten it to save.` : null
}
