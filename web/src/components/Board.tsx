import { type DragEvent, type FormEvent, useMemo, useState } from 'react'
import type { Workspace } from '../api'
import { useBoard } from '../state/board'
import { useAuth } from '../state/auth'
import { useWorkspaces } from '../state/workspaces'
import { navigate } from '../router'
import { colorFor, type Peer } from '../doc/presence'
import {
  columns,
  createTask,
  STATUS_LABELS,
  STATUSES,
  type Status,
  type Task,
  type TaskFilter,
  titleProblem,
  updateTask,
} from '../doc/tasks'
import { Avatar, StatusSelect } from './common'
import { canEdit } from '../permissions'
import { memberName } from '../state/members'
import { TaskDetail } from './TaskDetail'

function filterValue(f: TaskFilter): string {
  return f.kind === 'user' ? `user:${f.id}` : f.kind
}
function parseFilter(v: string): TaskFilter {
  if (v.startsWith('user:')) return { kind: 'user', id: v.slice(5) }
  return { kind: v as 'anyone' | 'mine' | 'unassigned' }
}

function today(): string {
  const d = new Date()
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`
}

/** The board (US2): three columns derived from the doc; every change is a doc transaction. */
export function Board({ workspace, taskId }: { workspace: Workspace; taskId: string | null }) {
  const { tasks, session, peers, synced, loadedLocally } = useBoard()
  const me = useAuth((s) => s.me)
  const members = useWorkspaces((s) => s.members[workspace.id]) ?? []
  const [filter, setFilter] = useState<TaskFilter>({ kind: 'anyone' })
  const [title, setTitle] = useState('')
  const [dragOver, setDragOver] = useState<Status | null>(null)
  const editable = canEdit(workspace)
  const cols = useMemo(() => columns(tasks, filter, me?.id ?? null), [tasks, filter, me])

  const [titleError, setTitleError] = useState<string | null>(null)
  const add = (e: FormEvent) => {
    e.preventDefault()
    if (!session || !me || !title.trim()) return
    const problem = titleProblem(title)
    setTitleError(problem)
    if (problem) return
    createTask(session.doc, { title: title.trim() }, me.id)
    setTitle('')
  }
  const move = (id: string, status: Status) => session && updateTask(session.doc, id, { status })
  const drop = (status: Status) => (e: DragEvent) => {
    e.preventDefault()
    setDragOver(null)
    const id = e.dataTransfer.getData('application/x-plait-task')
    if (id && editable) move(id, status)
  }
  const open = (id: string) => navigate(`/w/${workspace.id}/t/${id}`)
  const viewersOf = (id: string): Peer[] => peers.filter((p) => !p.self && p.viewing.includes(id))

  return (
    <main className="board-page" id="main">
      <div className="board-toolbar">
        <h1 className="board-title">{workspace.name}</h1>
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
        <label className="filter">
          Assignee
          <select value={filterValue(filter)} onChange={(e) => setFilter(parseFilter(e.target.value))} aria-label="Filter by assignee">
            <option value="anyone">Anyone</option>
            <option value="mine">Mine</option>
            <option value="unassigned">Unassigned</option>
            {members
              .filter((m) => m.user_id !== me?.id)
              .map((m) => (
                <option key={m.user_id} value={`user:${m.user_id}`}>
                  {m.display_name}
                </option>
              ))}
          </select>
        </label>
      </div>
      {!synced && !loadedLocally && tasks.length === 0 && (
        <p className="muted" role="status">
          Loading the board…
        </p>
      )}
      <div className="columns">
        {STATUSES.map((status) => (
          <section
            key={status}
            className={`column${dragOver === status ? ' drag-over' : ''}`}
            aria-labelledby={`col-${status}`}
            data-testid={`column-${status}`}
            onDragOver={(e) => {
              if (!editable) return
              e.preventDefault()
              e.dataTransfer.dropEffect = 'move'
              setDragOver(status)
            }}
            onDragLeave={() => setDragOver(null)}
            onDrop={drop(status)}
          >
            <h2 id={`col-${status}`}>
              {STATUS_LABELS[status]} <span className="count-badge">{cols[status].length}</span>
            </h2>
            <ul aria-label={`${STATUS_LABELS[status]} tasks`}>
              {cols[status].map((t) => (
                <TaskCard
                  key={t.id}
                  task={t}
                  editable={editable}
                  assignee={memberName(members, t.assignee_id)}
                  viewers={viewersOf(t.id)}
                  onOpen={() => open(t.id)}
                  onMove={(s) => move(t.id, s)}
                />
              ))}
            </ul>
            {cols[status].length === 0 && <p className="muted empty">No tasks.</p>}
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
          onClose={() => navigate(`/w/${workspace.id}`)}
        />
      )}
    </main>
  )
}

function TaskCard({
  task,
  editable,
  assignee,
  viewers,
  onOpen,
  onMove,
}: {
  task: Task
  editable: boolean
  assignee: string | null
  viewers: Peer[]
  onOpen: () => void
  onMove: (s: Status) => void
}) {
  const overdue = task.due_date !== null && task.status !== 'done' && task.due_date < today()
  const name = task.title || 'Untitled task'
  return (
    <li
      className="card"
      data-testid="task-card"
      data-task-id={task.id}
      draggable={editable}
      onDragStart={(e) => {
        e.dataTransfer.setData('application/x-plait-task', task.id)
        e.dataTransfer.effectAllowed = 'move'
      }}
    >
      <button type="button" className="card-title" onClick={onOpen} aria-label={`Open task ${name}`}>
        {name}
      </button>
      <div className="card-meta">
        {assignee && task.assignee_id && (
          <span className="assignee" data-testid="card-assignee">
            <Avatar name={assignee} color={colorFor(task.assignee_id)} size={20} />
            <span>{assignee}</span>
          </span>
        )}
        {task.due_date && (
          <span className={`due${overdue ? ' overdue' : ''}`}>
            {overdue ? 'Overdue · ' : 'Due '}
            <time dateTime={task.due_date}>{task.due_date}</time>
          </span>
        )}
        {viewers.length > 0 && (
          <span className="watchers" aria-label={`Looking at this task: ${viewers.map((v) => v.name).join(', ')}`} data-testid="card-viewers">
            {viewers.map((v) => (
              <Avatar key={v.id} name={v.name} color={v.color} size={18} title={`${v.name} is looking at this task`} />
            ))}
          </span>
        )}
      </div>
      {editable && (
        <label className="move">
          <StatusSelect value={task.status} onChange={onMove} label={`Status of ${name}`} />
        </label>
      )}
    </li>
  )
}
