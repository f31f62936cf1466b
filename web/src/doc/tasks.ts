/**
 * The task schema of a workspace document (docs/document-schema.md, issue 4) and the pure
 * functions that read it into plain objects and write user intentions back into it.
 * Everything here works on a bare Y.Doc so it is unit-tested without a browser or server.
 */
import * as Y from 'yjs'

export const STATUSES = ['todo', 'in_progress', 'done'] as const
export type Status = (typeof STATUSES)[number]
export const STATUS_LABELS: Record<Status, string> = { todo: 'To do', in_progress: 'In progress', done: 'Done' }

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
}

export type TaskFilter = { kind: 'anyone' } | { kind: 'mine' } | { kind: 'unassigned' } | { kind: 'user'; id: string }

export function tasksMap(doc: Y.Doc): Y.Map<Y.Map<unknown>> {
  return doc.getMap('tasks') as Y.Map<Y.Map<unknown>>
}

function str(value: unknown): string | null {
  return typeof value === 'string' ? value : null
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
  }
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

export function matchesFilter(task: Task, filter: TaskFilter, me: string | null): boolean {
  switch (filter.kind) {
    case 'anyone':
      return true
    case 'mine':
      return me !== null && task.assignee_id === me
    case 'unassigned':
      return task.assignee_id === null
    case 'user':
      return task.assignee_id === filter.id
  }
}

export function columns(tasks: Task[], filter: TaskFilter, me: string | null): Record<Status, Task[]> {
  const cols: Record<Status, Task[]> = { todo: [], in_progress: [], done: [] }
  for (const t of tasks) if (matchesFilter(t, filter, me)) cols[t.status].push(t)
  return cols
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
}

/** Insert a task map with every schema field, under a fresh UUID; works offline. */
export function createTask(doc: Y.Doc, input: NewTask, userId: string, id: string = crypto.randomUUID()): string {
  const now = nowIso()
  const status = input.status ?? 'todo'
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
    tasksMap(doc).set(id, m)
  })
  return id
}

export type TaskPatch = Partial<Pick<Task, 'title' | 'status' | 'assignee_id' | 'due_date'>>

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
      if (key === 'status') entry.set('completed_at', value === 'done' ? nowIso() : null)
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
export function bindTasks(doc: Y.Doc, onTasks: (tasks: Task[]) => void): () => void {
  const map = tasksMap(doc)
  const handler = (events: Y.YEvent<Y.AbstractType<unknown>>[]) => {
    if (touchesTaskFields(events)) onTasks(deriveTasks(doc))
  }
  map.observeDeep(handler)
  onTasks(deriveTasks(doc))
  return () => map.unobserveDeep(handler)
}

/** The longest task title the API accepts (api/routes/tasks.py); longer ones are refused, never cut. */
export const TITLE_MAX = 500

/** Why a title cannot be saved, or null when it can. */
export function titleProblem(title: string): string | null {
  const n = [...title.trim()].length
  return n > TITLE_MAX ? `The title is too long: ${n} characters (at most ${TITLE_MAX}). Shorten it to save.` : null
}
