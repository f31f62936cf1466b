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
import { Dialog } from './common'

/** The board's keyboard shortcuts, as the `?` dialog lists them. */
export const SHORTCUTS: [string, string][] = [
  ['c', 'New task'],
  ['/', 'Search'],
  ['j / k', 'Next / previous card'],
  ['e or Enter', 'Open the focused card'],
  ['Alt + arrows', 'Move the focused card'],
  ['Ctrl + Z', 'Undo your last change'],
  ['Ctrl + Shift + Z or Ctrl + Y', 'Redo'],
  ['?', 'Show this list'],
  ['Esc', 'Close a panel'],
]

/** True when keys go to text: an input, a text area or an editor (they keep their own keys, and their undo). */
export function typingIn(t: EventTarget | null): boolean {
  if (!(t instanceof HTMLElement)) return false
  if (t.isContentEditable || t.tagName === 'TEXTAREA') return true
  return t.tagName === 'INPUT' && !['checkbox', 'radio', 'button', 'submit', 'reset'].includes((t as HTMLInputElement).type)
}

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
  const [showKeys, setShowKeys] = useState(false)
  const [tab, setTab] = useState<Status>('todo')
  const newTitle = useRef<HTMLInputElement>(null)
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

  // Board shortcuts (listed by `?`); none fires while typing. Ctrl+Z undoes this user's own changes only.
  const keys = useRef<(e: KeyboardEvent) => void>(() => {})
  keys.current = (e: KeyboardEvent) => {
    if (e.defaultPrevented || typingIn(e.target)) return
    const mod = e.ctrlKey || e.metaKey
    const history = session?.history
    if (mod && !e.altKey && history && editable) {
      const k = e.key.toLowerCase()
      const redo = (k === 'z' && e.shiftKey) || (k === 'y' && !e.shiftKey)
      if (k !== 'z' && !redo) return
      e.preventDefault()
      const stack = redo ? history.redoStack : history.undoStack
      if (stack.length === 0) return setAnnounce(redo ? 'Nothing to redo.' : 'Nothing to undo.')
      if (redo) history.redo()
      else history.undo()
      setAnnounce(redo ? 'Redone.' : 'Undone.')
      return
    }
    if (mod || e.altKey || (e.target instanceof HTMLElement && e.target.tagName === 'SELECT')) return
    // The keys act on the board, not behind an open panel.
    if (document.querySelector('.backdrop')) return
    if (e.key === '?') {
      e.preventDefault()
      setShowKeys(true)
      return
    }
    const cards = Array.from(document.querySelectorAll<HTMLElement>('[data-testid=task-card] .card-title')).filter(
      (el) => el.offsetParent !== null,
    )
    const at = cards.indexOf(document.activeElement as HTMLElement)
    if (e.key === 'c' && editable) {
      e.preventDefault()
      newTitle.current?.focus()
    } else if (e.key === 'j' || e.key === 'k') {
      e.preventDefault()
      const next = at < 0 ? (e.key === 'j' ? 0 : cards.length - 1) : at + (e.key === 'j' ? 1 : -1)
      cards[Math.max(0, Math.min(next, cards.length - 1))]?.focus()
    } else if (e.key === 'e' && at >= 0) {
      e.preventDefault()
      cards[at].click()
    }
  }
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => keys.current(e)
    document.addEventListener('keydown', onKey)
    return () => document.removeEventListener('keydown', onKey)
  }, [])

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
        <button type="button" className="small" onClick={() => setShowKeys(true)} aria-keyshortcuts="?" title="Keyboard shortcuts (?)">
          Shortcuts
        </button>
      </div>
      <Filters filters={filters} members={members} labels={labels} me={me?.id ?? null} onChange={setFilters} />
      <div className="board-add">
        {editable ? (
          <form className="inline-form add-task" onSubmit={add} aria-label="Add a task">
            <label className="grow">
              <span className="sr-only">New task title</span>
              <input
                ref={newTitle}
                aria-keyshortcuts="c"
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
      {/* On a phone one column shows at a time, chosen by these tabs (hidden on wider screens). */}
      <div className="column-tabs" role="tablist" aria-label="Columns">
        {STATUSES.map((status) => (
          <button
            key={status}
            type="button"
            role="tab"
            id={`tab-${status}`}
            aria-selected={tab === status}
            aria-controls={`column-${status}`}
            onClick={() => setTab(status)}
          >
            {STATUS_LABELS[status]} <span className="count-badge">{cols[status].length}</span>
          </button>
        ))}
      </div>
      <div className="columns">
        {STATUSES.map((status) => (
          <section
            key={status}
            id={`column-${status}`}
            className={`column${drop?.status === status ? ' drag-over' : ''}${tab === status ? '' : ' tab-hidden'}`}
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
      {showKeys && <ShortcutsHelp onClose={() => setShowKeys(false)} />}
      {showLabels && session && <LabelsManager doc={session.doc} labels={labels} editable={editable} onClose={() => setShowLabels(false)} />}
    </main>
  )
}

function ShortcutsHelp({ onClose }: { onClose: () => void }) {
  return (
    <Dialog label="Keyboard shortcuts" onClose={onClose} className="shortcuts-dialog">
      <div className="detail-head">
        <h2 className="grow">Keyboard shortcuts</h2>
        <button type="button" className="icon" onClick={onClose} aria-label="Close keyboard shortcuts">
          ×
        </button>
      </div>
      <table className="shortcuts" data-testid="shortcuts">
        <tbody>
          {SHORTCUTS.map(([key, what]) => (
            <tr key={key}>
              <th scope="row">
                <kbd>{key}</kbd>
              </th>
              <td>{what}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </Dialog>
  )
}
