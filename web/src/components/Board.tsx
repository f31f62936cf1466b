import { type DragEvent, type FormEvent, useEffect, useMemo, useRef, useState } from 'react'
import type { Workspace } from '../api'
import { useBoard } from '../state/board'
import { useAuth } from '../state/auth'
import { useWorkspaces } from '../state/workspaces'
import { navigate, setQuery, useQuery } from '../router'
import type { Peer } from '../doc/presence'
import {
  type BoardFilters,
  columns,
  createTask,
  filtersFromQuery,
  filtersToQuery,
  isoDay,
  matchesFilters,
  moveTask,
  STATUS_LABELS,
  STATUSES,
  type Status,
  titleProblem,
  updateTask,
} from '../doc/tasks'
import { canEdit } from '../permissions'
import { TaskDetail } from './TaskDetail'
import { Card, type KeyMove } from './Card'
import { Filters } from './Filters'
import { Search } from './Search'
import { LabelsManager } from './Labels'
import { loadMarkdown } from './Markdown'
import { prefetchEditor } from './LazyEditor'

/** Where a dragged card would land: before the card at `index` of the column as shown (length = the end). */
interface DropAt {
  status: Status
  index: number
}

/**
 * The board: three columns in rank order, filtered by the URL's query; every change is a doc transaction.
 * Cards move by drag and drop, by Alt+arrows on a focused card, or by their status select.
 */
export function Board({ workspace, taskId }: { workspace: Workspace; taskId: string | null }) {
  const { tasks, labels, session, peers, synced, loadedLocally } = useBoard()
  const me = useAuth((s) => s.me)
  const members = useWorkspaces((s) => s.members[workspace.id]) ?? []
  const query = useQuery()
  const filters = useMemo(() => filtersFromQuery(query), [query])
  const [title, setTitle] = useState('')
  const [drop, setDrop] = useState<DropAt | null>(null)
  const [showLabels, setShowLabels] = useState(false)
  const [announce, setAnnounce] = useState('')
  const focusAfterMove = useRef<string | null>(null)
  const editable = canEdit(workspace)
  const today = isoDay(new Date())
  const doc = session?.doc ?? null
  const cols = useMemo(
    () => columns(tasks, (t) => matchesFilters(doc, t, filters, me?.id ?? null, today)),
    [tasks, filters, me, doc, today],
  )
  const filtered = query !== ''

  const [titleError, setTitleError] = useState<string | null>(null)

  useEffect(() => {
    // The editor and the Markdown renderer are split out of the initial bundle; fetch them once the board
    // shows, so they are ready when a task opens (and the service worker keeps them for an offline reload).
    void prefetchEditor()
    void loadMarkdown()
  }, [])

  useEffect(() => {
    const id = focusAfterMove.current
    if (!id) return
    focusAfterMove.current = null
    document.querySelector<HTMLElement>(`[data-task-id="${CSS.escape(id)}"] .card-title`)?.focus()
  }, [tasks])

  const setFilters = (f: BoardFilters) => setQuery(filtersToQuery(f))
  const add = (e: FormEvent) => {
    e.preventDefault()
    if (!session || !me || !title.trim()) return
    const problem = titleProblem(title)
    setTitleError(problem)
    if (problem) return
    createTask(session.doc, { title: title.trim() }, me.id)
    setTitle('')
  }
  const setStatus = (id: string, status: Status) => session && updateTask(session.doc, id, { status })
  /** Put task `id` at `index` of `status`'s column as shown now (an index counted with the task itself in it). */
  const place = (id: string, status: Status, index: number) => {
    if (!session) return
    const column = cols[status]
    const from = column.findIndex((t) => t.id === id)
    moveTask(session.doc, id, status, from >= 0 && from < index ? index - 1 : index, column)
  }
  const keyMove = (id: string, status: Status, move: KeyMove) => {
    if (!session) return
    const column = cols[status]
    const i = column.findIndex((t) => t.id === id)
    const name = column[i]?.title || 'Untitled task'
    let target = status
    let index = i
    if (move === 'up') index = i - 1
    else if (move === 'down') index = i + 1
    else {
      const s = STATUSES.indexOf(status) + (move === 'left' ? -1 : 1)
      if (s < 0 || s >= STATUSES.length) return
      target = STATUSES[s]
      index = Math.min(i, cols[target].length)
    }
    if (index < 0 || (target === status && index >= column.length)) return
    focusAfterMove.current = id
    moveTask(session.doc, id, target, index, cols[target])
    setAnnounce(`Moved ${name} to ${STATUS_LABELS[target]}, position ${index + 1}.`)
  }
  const onDrop = (status: Status) => (e: DragEvent) => {
    e.preventDefault()
    const at = drop?.status === status ? drop.index : cols[status].length
    setDrop(null)
    const id = e.dataTransfer.getData('application/x-plait-task')
    if (id && editable) place(id, status, at)
  }
  const open = (id: string) => navigate(`/w/${workspace.id}/t/${id}${query}`)
  const viewersOf = (id: string): Peer[] => peers.filter((p) => !p.self && p.viewing.includes(id))

  return (
    <main className="board-page" id="main">
      <div className="board-toolbar">
        <h1 className="board-title">{workspace.name}</h1>
        <Search q={filters.q} onChange={(q) => setFilters({ ...filters, q })} />
        <button type="button" className="small" onClick={() => setShowLabels(true)} disabled={!session}>
          Labels
        </button>
      </div>
      <Filters filters={filters} members={members} labels={labels} me={me?.id ?? null} onChange={setFilters} />
      <div className="board-add">
        {editable ? (
          <form className="inline-form add-task" onSubmit={add} aria-label="Add a task">
            <label className="grow">
              <span className="sr-only">New task title</span>
              <input
                value={title}
                onChange={(e) => {
                  setTitle(e.target.value)
                  if (titleError && !titleProblem(e.target.value)) setTitleError(null)
                }}
                placeholder="What needs doing?"
                aria-invalid={titleError ? true : undefined}
                aria-describedby={titleError ? 'new-title-error' : undefined}
              />
            </label>
            <button type="submit" className="primary" disabled={!title.trim()}>
              Add task
            </button>
            {titleError && (
              <p className="error" role="alert" id="new-title-error" data-testid="title-error">
                {titleError}
              </p>
            )}
          </form>
        ) : (
          <p className="muted viewer-note" data-testid="viewer-note">
            You are a viewer: you see changes live but cannot edit.
          </p>
        )}
      </div>
      <p className="sr-only" aria-live="polite" data-testid="move-announcement">
        {announce}
      </p>
      {!synced && !loadedLocally && tasks.length === 0 && (
        <p className="muted" role="status">
          Loading the board…
        </p>
      )}
      <div className="columns">
        {STATUSES.map((status) => (
          <section
            key={status}
            className={`column${drop?.status === status ? ' drag-over' : ''}`}
            aria-labelledby={`col-${status}`}
            data-testid={`column-${status}`}
            onDragOver={(e) => {
              if (!editable) return
              e.preventDefault()
              e.dataTransfer.dropEffect = 'move'
              if (drop?.status !== status || drop.index !== cols[status].length) setDrop({ status, index: cols[status].length })
            }}
            onDragLeave={(e) => {
              if (!e.currentTarget.contains(e.relatedTarget as Node | null)) setDrop(null)
            }}
            onDrop={onDrop(status)}
          >
            <h2 id={`col-${status}`}>
              {STATUS_LABELS[status]} <span className="count-badge">{cols[status].length}</span>
            </h2>
            <ul aria-label={`${STATUS_LABELS[status]} tasks`}>
              {cols[status].map((t, i) => (
                <Card
                  key={t.id}
                  task={t}
                  labels={labels}
                  members={members}
                  editable={editable}
                  viewers={viewersOf(t.id)}
                  today={today}
                  dropBefore={drop?.status === status && drop.index === i}
                  onOpen={() => open(t.id)}
                  onMove={(s) => setStatus(t.id, s)}
                  onKeyMove={(m) => keyMove(t.id, status, m)}
                  onDragOverCard={(after) => {
                    const index = after ? i + 1 : i
                    if (drop?.status !== status || drop.index !== index) setDrop({ status, index })
                  }}
                />
              ))}
            </ul>
            {drop?.status === status && drop.index === cols[status].length && <div className="drop-end" aria-hidden="true" />}
            {cols[status].length === 0 && <p className="muted empty">{filtered ? 'No matching tasks.' : 'No tasks.'}</p>}
          </section>
        ))}
      </div>
      {taskId && session && (
        <TaskDetail
          key={taskId}
          workspace={workspace}
          taskId={taskId}
          session={session}
          task={tasks.find((t) => t.id === taskId) ?? null}
          labels={labels}
          onClose={() => navigate(`/w/${workspace.id}${query}`)}
        />
      )}
      {showLabels && session && <LabelsManager doc={session.doc} labels={labels} editable={editable} onClose={() => setShowLabels(false)} />}
    </main>
  )
}
