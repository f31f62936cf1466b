import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'
import {
  addChecklistItem,
  addComment,
  bindTasks,
  compareRank,
  createLabel,
  deleteComment,
  deleteLabel,
  deriveLabels,
  editComment,
  filtersFromQuery,
  filtersToQuery,
  humanDue,
  matchesFilters,
  matchesQuery,
  mentionOf,
  moveTask,
  NO_FILTERS,
  progressOf,
  rankBetween,
  removeChecklistItem,
  setTaskLabel,
  splitMentions,
  updateChecklistItem,
  updateLabel,
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
    expect([...entry.keys()].sort()).toEqual([
      'assignee_id', 'checklist', 'comments', 'completed_at', 'created_at', 'created_by', 'description', 'due_date', 'id',
      'labels', 'priority', 'rank', 'status', 'title', 'updated_at',
    ])
    for (const key of ['labels', 'checklist', 'comments']) expect(entry.get(key)).toBeInstanceOf(Y.Array)
    expect(task).toMatchObject({ priority: 'none', labels: [], checklist: [], comments: [] })
    expect(typeof task.rank).toBe('string')
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
    const by = (assignee: string) => columns(tasks, (t) => matchesFilters(doc, t, { ...NO_FILTERS, assignee }, 'me', '2030-01-01'))
    const all = columns(tasks)
    expect([all.todo.length, all.in_progress.length, all.done.length]).toEqual([1, 1, 1])
    expect(by('mine').todo.map((t) => t.id)).toEqual([a])
    expect(by('mine').done).toHaveLength(0)
    expect(by('unassigned').in_progress.map((t) => t.title)).toEqual(['c'])
    expect(by('you').done.map((t) => t.title)).toEqual(['b'])
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

function order(doc: Y.Doc, status: 'todo' | 'in_progress' | 'done' = 'todo'): string[] {
  return columns(deriveTasks(doc))[status].map((t) => t.title)
}

describe('schema v2: order', () => {
  it('new tasks go to the end of their column; a column is ordered by rank then id', () => {
    const doc = new Y.Doc()
    for (const t of ['a', 'b', 'c']) createTask(doc, { title: t }, 'u')
    expect(order(doc)).toEqual(['a', 'b', 'c'])
    const ranks = columns(deriveTasks(doc)).todo.map((t) => t.rank!)
    expect(new Set(ranks).size).toBe(3)
    expect([...ranks].sort()).toEqual(ranks)
    expect(compareRank({ rank: 'a0', id: 'b', created_at: null }, { rank: 'a0', id: 'a', created_at: null })).toBe(1)
    expect(compareRank({ rank: null, id: 'a', created_at: null }, { rank: 'a0', id: 'b', created_at: null })).toBe(1)
  })

  it('moves within and between columns by neighbours, and concurrent moves converge', () => {
    const [a, b] = pair()
    const ids = ['one', 'two', 'three'].map((t) => createTask(a, { title: t }, 'u'))
    const col = () => columns(deriveTasks(a)).todo
    moveTask(a, ids[2], 'todo', 0, col())
    expect(order(b)).toEqual(['three', 'one', 'two'])
    moveTask(a, ids[0], 'todo', 3, col())
    expect(order(b)).toEqual(['three', 'two', 'one'])
    moveTask(b, ids[1], 'done', 0, [])
    expect(order(a)).toEqual(['three', 'one'])
    expect(order(a, 'done')).toEqual(['two'])
    expect(deriveTasks(a).find((t) => t.id === ids[1])!.completed_at).not.toBeNull()
    // offline: both move different tasks to the same place; one order everywhere, every task once
    const c = new Y.Doc()
    const d = new Y.Doc()
    Y.applyUpdate(c, Y.encodeStateAsUpdate(a))
    Y.applyUpdate(d, Y.encodeStateAsUpdate(a))
    const colOf = (doc: Y.Doc) => columns(deriveTasks(doc)).todo
    moveTask(c, ids[0], 'todo', 0, colOf(c))
    moveTask(d, ids[2], 'todo', 0, colOf(d))
    moveTask(d, ids[1], 'todo', 0, colOf(d))
    Y.applyUpdate(c, Y.encodeStateAsUpdate(d))
    Y.applyUpdate(d, Y.encodeStateAsUpdate(c))
    expect(order(c)).toEqual(order(d))
    expect([...order(c)].sort()).toEqual(['one', 'three', 'two'])
  })

  it('ranks between ties and unranked (pre-v2) neighbours without throwing', () => {
    expect(rankBetween('a1', 'a1') > 'a1').toBe(true)
    expect(rankBetween('a1', 'a0') > 'a1').toBe(true)
    expect(typeof rankBetween('not a key!', null)).toBe('string')
    const doc = new Y.Doc()
    const old = new Y.Map<unknown>()
    tasksMap(doc).set('old', old)
    old.set('title', 'old task')
    old.set('status', 'todo')
    createTask(doc, { title: 'new' }, 'u')
    expect(order(doc)).toEqual(['new', 'old task'])
    moveTask(doc, 'old', 'todo', 0, columns(deriveTasks(doc)).todo)
    expect(order(doc)).toEqual(['old task', 'new'])
  })

  it('a status change from a select puts the task at the end of the new column', () => {
    const doc = new Y.Doc()
    createTask(doc, { title: 'x', status: 'done' }, 'u')
    const y = createTask(doc, { title: 'y' }, 'u')
    updateTask(doc, y, { status: 'done' })
    expect(order(doc, 'done')).toEqual(['x', 'y'])
  })
})

describe('schema v2: priority, labels, checklist, comments', () => {
  it('labels: define, rename, recolor, assign once, delete takes them off tasks', () => {
    const [a, b] = pair()
    const seen: string[][] = []
    bindTasks(b, () => {}, (labels) => seen.push(labels.map((l) => l.name)))
    const bug = createLabel(a, '  Bug ', '#dc2626')
    const ux = createLabel(a, 'UX', 'red')
    expect(deriveLabels(b)).toEqual([
      { id: bug, name: 'Bug', color: '#dc2626' },
      { id: ux, name: 'UX', color: '#6b7280' },
    ])
    updateLabel(a, ux, { name: 'Design', color: '#7c3aed' })
    expect(seen.at(-1)).toEqual(['Bug', 'Design'])
    expect(updateLabel(a, 'nope', { name: 'x' })).toBe(false)
    const id = createTask(a, { title: 't', priority: 'high' }, 'u')
    setTaskLabel(a, id, bug, true)
    setTaskLabel(b, id, bug, true)
    setTaskLabel(a, id, ux, true)
    expect(deriveTasks(b)[0].labels).toEqual([bug, ux])
    setTaskLabel(a, id, ux, false)
    expect(deriveTasks(b)[0]).toMatchObject({ labels: [bug], priority: 'high' })
    deleteLabel(b, bug)
    expect(deriveTasks(a)[0].labels).toEqual([])
    expect(deriveLabels(a).map((l) => l.name)).toEqual(['Design'])
    expect(setTaskLabel(a, 'missing', ux, true)).toBe(false)
  })

  it('checklist items add, toggle, edit, remove; progress counts them', () => {
    const [a, b] = pair()
    const id = createTask(a, { title: 't' }, 'u')
    const one = addChecklistItem(a, id, 'one')!
    addChecklistItem(b, id, 'two')
    updateChecklistItem(b, id, one, { done: true, text: 'one!' })
    expect(progressOf(deriveTasks(a)[0])).toEqual({ done: 1, total: 2 })
    expect(deriveTasks(a)[0].checklist[0]).toEqual({ id: one, text: 'one!', done: true })
    expect(removeChecklistItem(a, id, one)).toBe(true)
    expect(removeChecklistItem(a, id, one)).toBe(false)
    expect(updateChecklistItem(a, id, 'nope', { done: true })).toBe(false)
    expect(deriveTasks(b)[0].checklist.map((i) => i.text)).toEqual(['two'])
    expect(addChecklistItem(a, 'missing', 'x')).toBeNull()
  })

  it('a task from before v2 gets its missing array on first use, never a second one', () => {
    const doc = new Y.Doc()
    const old = new Y.Map<unknown>()
    tasksMap(doc).set('old', old)
    addComment(doc, 'old', 'u', 'first')
    const arr = old.get('comments')
    addComment(doc, 'old', 'u', 'second')
    expect(old.get('comments')).toBe(arr)
    expect(deriveTasks(doc)[0].comments.map((c) => c.body)).toEqual(['first', 'second'])
  })

  it('comments: append, edit (edited_at), delete; mentions split into names and ids', () => {
    const doc = new Y.Doc()
    const id = createTask(doc, { title: 't' }, 'u')
    const c = addComment(doc, id, 'u1', `hi ${mentionOf('Bo]b', 'u2')}, see`)!
    const [comment] = deriveTasks(doc)[0].comments
    expect(comment).toMatchObject({ id: c, author_id: 'u1', edited_at: null, body: 'hi @[Bob](user:u2), see' })
    expect(splitMentions(comment.body)).toEqual([{ text: 'hi ' }, { mention: 'u2', name: 'Bob' }, { text: ', see' }])
    editComment(doc, id, c, 'changed')
    expect(deriveTasks(doc)[0].comments[0].edited_at).not.toBeNull()
    expect(editComment(doc, id, 'nope', 'x')).toBe(false)
    expect(deleteComment(doc, id, c)).toBe(true)
    expect(deleteComment(doc, id, c)).toBe(false)
    expect(deriveTasks(doc)[0].comments).toEqual([])
  })
})

describe('search, filters and dates', () => {
  it('instant search matches every word in title, description, comments or checklist', () => {
    const doc = new Y.Doc()
    const id = createTask(doc, { title: 'Launch plan', description: 'budget for Q3' }, 'u')
    addComment(doc, id, 'u', `ask ${mentionOf('Carol', 'u3')} about venue`)
    addChecklistItem(doc, id, 'book the caterer')
    const t = deriveTasks(doc)[0]
    for (const q of ['launch', 'BUDGET q3', 'venue carol', 'caterer', '  ']) expect(matchesQuery(doc, t, q)).toBe(true)
    expect(matchesQuery(doc, t, 'launch missing')).toBe(false)
  })

  it('filters round-trip through the URL query and select tasks', () => {
    const f = { ...NO_FILTERS, assignee: 'mine', label: 'L1', priority: 'high' as const, status: 'todo' as const, due: 'week' as const, q: 'a b' }
    expect(filtersFromQuery(filtersToQuery(f))).toEqual(f)
    expect(filtersToQuery(NO_FILTERS)).toBe('')
    expect(filtersFromQuery('?priority=bogus&due=never&status=x')).toEqual(NO_FILTERS)
    const doc = new Y.Doc()
    const id = createTask(doc, { title: 'x', assignee_id: 'me', due_date: '2030-01-03', priority: 'high' }, 'me')
    setTaskLabel(doc, id, 'L1', true)
    const t = deriveTasks(doc)[0]
    expect(matchesFilters(doc, t, { ...f, q: 'x' }, 'me', '2030-01-01')).toBe(true)
    expect(matchesFilters(doc, t, f, 'me', '2030-01-01')).toBe(false)
    expect(matchesFilters(doc, t, { ...NO_FILTERS, assignee: 'unassigned' }, 'me', '2030-01-01')).toBe(false)
    expect(matchesFilters(doc, t, { ...NO_FILTERS, assignee: 'other' }, 'me', '2030-01-01')).toBe(false)
    expect(matchesFilters(doc, t, { ...NO_FILTERS, assignee: 'me' }, 'me', '2030-01-01')).toBe(true)
    expect(matchesFilters(doc, t, { ...NO_FILTERS, due: 'overdue' }, 'me', '2030-01-05')).toBe(true)
    expect(matchesFilters(doc, t, { ...NO_FILTERS, due: 'today' }, 'me', '2030-01-03')).toBe(true)
    expect(matchesFilters(doc, t, { ...NO_FILTERS, due: 'none' }, 'me', '2030-01-03')).toBe(false)
    expect(matchesFilters(doc, t, { ...NO_FILTERS, due: 'week' }, 'me', '2030-01-20')).toBe(false)
    expect(matchesFilters(doc, t, { ...NO_FILTERS, label: 'L2' }, 'me', '2030-01-01')).toBe(false)
    expect(matchesFilters(doc, t, { ...NO_FILTERS, priority: 'low' }, 'me', '2030-01-01')).toBe(false)
    expect(matchesFilters(doc, t, { ...NO_FILTERS, status: 'done' }, 'me', '2030-01-01')).toBe(false)
  })

  it('human due dates', () => {
    expect(humanDue('2030-01-02', '2030-01-01')).toEqual({ text: 'due tomorrow', overdue: false })
    expect(humanDue('2030-01-01', '2030-01-01').text).toBe('due today')
    expect(humanDue('2030-01-04', '2030-01-01').text).toBe('due in 3 days')
    expect(humanDue('2030-03-01', '2030-01-01').text).toBe('due 2030-03-01')
    expect(humanDue('2029-12-31', '2030-01-01')).toEqual({ text: 'overdue since yesterday', overdue: true })
    expect(humanDue('2029-12-30', '2030-01-01')).toEqual({ text: 'overdue by 2 days', overdue: true })
    expect(humanDue('2029-12-31', '2030-01-01', true)).toEqual({ text: 'was due yesterday', overdue: false })
  })
})
