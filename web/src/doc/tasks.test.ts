import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import {
  bindTasks,
  columns,
  createTask,
  deleteTask,
  deriveTasks,
  descriptionOf,
  readTask,
  tasksMap,
  type Task,
  TITLE_MAX,
  titleProblem,
  updateTask,
} from './tasks'

/** Two replicas wired to each other, as two browsers behind a sync server would be. */
function pair(): [Y.Doc, Y.Doc] {
  const a = new Y.Doc()
  const b = new Y.Doc()
  a.on('update', (u: Uint8Array, origin: unknown) => origin !== 'remote' && Y.applyUpdate(b, u, 'remote'))
  b.on('update', (u: Uint8Array, origin: unknown) => origin !== 'remote' && Y.applyUpdate(a, u, 'remote'))
  return [a, b]
}

describe('task schema', () => {
  it('creates a task map with every schema field and a Y.Text description', () => {
    const doc = new Y.Doc()
    const id = createTask(doc, { title: 'Write docs', description: 'first draft' }, 'u1')
    const entry = tasksMap(doc).get(id)!
    expect(entry).toBeInstanceOf(Y.Map)
    expect(entry.get('id')).toBe(id)
    expect(id).toMatch(/^[0-9a-f-]{36}$/)
    expect(entry.get('description')).toBeInstanceOf(Y.Text)
    expect(descriptionOf(doc, id)!.toString()).toBe('first draft')
    const task = deriveTasks(doc)[0]
    expect(task).toMatchObject({ title: 'Write docs', status: 'todo', assignee_id: null, due_date: null, created_by: 'u1', completed_at: null })
    expect(Date.parse(task.created_at!)).not.toBeNaN()
    expect([...entry.keys()].sort()).toEqual(
      ['assignee_id', 'completed_at', 'created_at', 'created_by', 'description', 'due_date', 'id', 'status', 'title', 'updated_at'],
    )
  })

  it('moving to done sets completed_at and moving back clears it; unchanged fields are not rewritten', () => {
    const doc = new Y.Doc()
    const id = createTask(doc, { title: 't' }, 'u1')
    let updates = 0
    doc.on('update', () => updates++)
    expect(updateTask(doc, id, { status: 'done' })).toBe(true)
    expect(deriveTasks(doc)[0].completed_at).not.toBeNull()
    expect(updateTask(doc, id, { status: 'done' })).toBe(false)
    expect(updates).toBe(1)
    updateTask(doc, id, { status: 'in_progress', assignee_id: 'u2', due_date: '2030-01-31' })
    expect(deriveTasks(doc)[0]).toMatchObject({ status: 'in_progress', completed_at: null, assignee_id: 'u2', due_date: '2030-01-31' })
  })

  it('reads bad values safely: unknown status shows as todo, non-map entries are skipped', () => {
    const doc = new Y.Doc()
    const m = new Y.Map<unknown>()
    tasksMap(doc).set('x', m)
    m.set('status', 'archived')
    m.set('title', 42)
    m.set('due_date', 'tomorrow')
    ;(doc.getMap('tasks') as Y.Map<unknown>).set('junk', 'not a map')
    const tasks = deriveTasks(doc)
    expect(tasks).toHaveLength(1)
    expect(tasks[0]).toMatchObject({ id: 'x', status: 'todo', title: '', due_date: null })
    expect(readTask('y', 'string')).toBeNull()
  })

  it('groups into columns and filters by assignee', () => {
    const doc = new Y.Doc()
    const a = createTask(doc, { title: 'a', assignee_id: 'me' }, 'me')
    createTask(doc, { title: 'b', status: 'done', assignee_id: 'you' }, 'me')
    createTask(doc, { title: 'c', status: 'in_progress' }, 'me')
    const tasks = deriveTasks(doc)
    const all = columns(tasks, { kind: 'anyone' }, 'me')
    expect([all.todo.length, all.in_progress.length, all.done.length]).toEqual([1, 1, 1])
    expect(columns(tasks, { kind: 'mine' }, 'me').todo.map((t) => t.id)).toEqual([a])
    expect(columns(tasks, { kind: 'mine' }, 'me').done).toHaveLength(0)
    expect(columns(tasks, { kind: 'unassigned' }, 'me').in_progress.map((t) => t.title)).toEqual(['c'])
    expect(columns(tasks, { kind: 'user', id: 'you' }, 'me').done.map((t) => t.title)).toEqual(['b'])
  })
})

describe('derived store', () => {
  it('re-derives on remote task changes but not on description keystrokes', () => {
    const [a, b] = pair()
    const seen: Task[][] = []
    const unbind = bindTasks(b, (tasks) => seen.push(tasks))
    expect(seen).toEqual([[]])
    const id = createTask(a, { title: 'from A' }, 'ua')
    expect(seen.at(-1)!.map((t) => t.title)).toEqual(['from A'])
    const calls = seen.length
    descriptionOf(a, id)!.insert(0, 'typing…')
    expect(seen.length).toBe(calls)
    expect(descriptionOf(b, id)!.toString()).toBe('typing…')
    updateTask(a, id, { title: 'renamed' })
    expect(seen.at(-1)![0].title).toBe('renamed')
    unbind()
    updateTask(a, id, { title: 'after unbind' })
    expect(seen.at(-1)![0].title).toBe('renamed')
  })

  it('concurrent offline edits converge once exchanged', () => {
    const a = new Y.Doc()
    const b = new Y.Doc()
    const id = createTask(a, { title: 'shared' }, 'ua')
    Y.applyUpdate(b, Y.encodeStateAsUpdate(a))
    descriptionOf(a, id)!.insert(0, 'Hello ')
    descriptionOf(b, id)!.insert(0, 'World')
    updateTask(b, id, { status: 'done' })
    createTask(b, { title: 'made offline' }, 'ub')
    Y.applyUpdate(a, Y.encodeStateAsUpdate(b, Y.encodeStateVector(a)))
    Y.applyUpdate(b, Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)))
    expect(deriveTasks(a)).toEqual(deriveTasks(b))
    expect(descriptionOf(a, id)!.toString()).toBe(descriptionOf(b, id)!.toString())
    expect(descriptionOf(a, id)!.toString()).toContain('Hello ')
    expect(descriptionOf(a, id)!.toString()).toContain('World')
    expect(deriveTasks(a).map((t) => t.title).sort()).toEqual(['made offline', 'shared'])
  })

  it('a deletion is undone whole, description included, and the peer sees it come back', () => {
    const [a, b] = pair()
    const DEL = Symbol('del')
    const undo = new Y.UndoManager(tasksMap(a), { trackedOrigins: new Set([DEL]), captureTimeout: 0 })
    const id = createTask(a, { title: 'keep me', description: 'important text' }, 'ua')
    deleteTask(a, id, DEL)
    expect(deriveTasks(b)).toHaveLength(0)
    undo.undo()
    expect(deriveTasks(b).map((t) => t.title)).toEqual(['keep me'])
    expect(descriptionOf(b, id)!.toString()).toBe('important text')
  })
})

describe('title limit', () => {
  it('refuses a title over the limit with the numbers, counting characters not UTF-16 units', () => {
    expect(titleProblem('x'.repeat(TITLE_MAX))).toBeNull()
    expect(titleProblem(`  ${'x'.repeat(TITLE_MAX)}  `)).toBeNull()
    expect(titleProblem('😀'.repeat(TITLE_MAX))).toBeNull()
    expect(titleProblem('x'.repeat(TITLE_MAX + 1))).toContain(`${TITLE_MAX + 1} characters (at most ${TITLE_MAX})`)
  })
})
