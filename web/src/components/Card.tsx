import type { DragEvent, KeyboardEvent } from 'react'
import type { Member } from '../api'
import { colorFor, type Peer } from '../doc/presence'
import { humanDue, type Label, PRIORITY_LABELS, progressOf, type Status, type Task } from '../doc/tasks'
import { memberName } from '../state/members'
import { Avatar, StatusSelect } from './common'
import { LabelChip } from './Labels'

/** Arrow keys with Alt move a focused card: up/down within its column, left/right to the next column. */
export type KeyMove = 'up' | 'down' | 'left' | 'right'
const KEY_MOVES: Record<string, KeyMove> = { ArrowUp: 'up', ArrowDown: 'down', ArrowLeft: 'left', ArrowRight: 'right' }

/**
 * One card: clamped title, priority, labels, assignee, a human due date, checklist progress and comment count.
 * Moves by drag and drop (the board computes the place) and by Alt+arrows; status also from a compact select.
 */
export function Card({
  task,
  labels,
  members,
  editable,
  viewers,
  today,
  dropBefore,
  onOpen,
  onMove,
  onKeyMove,
  onDragOverCard,
}: {
  task: Task
  labels: Label[]
  members: Member[]
  editable: boolean
  viewers: Peer[]
  today: string
  dropBefore: boolean
  onOpen: () => void
  onMove: (s: Status) => void
  onKeyMove: (m: KeyMove) => void
  onDragOverCard: (after: boolean) => void
}) {
  const name = task.title || 'Untitled task'
  const assignee = memberName(members, task.assignee_id)
  const due = task.due_date ? humanDue(task.due_date, today, task.status === 'done') : null
  const progress = progressOf(task)
  const shown = task.labels.map((id) => labels.find((l) => l.id === id)).filter((l): l is Label => !!l)
  const onKeyDown = (e: KeyboardEvent) => {
    const move = KEY_MOVES[e.key]
    if (!editable || !e.altKey || !move) return
    e.preventDefault()
    onKeyMove(move)
  }
  const onDragOver = (e: DragEvent) => {
    if (!editable) return
    e.preventDefault()
    e.stopPropagation()
    e.dataTransfer.dropEffect = 'move'
    const r = e.currentTarget.getBoundingClientRect()
    onDragOverCard(e.clientY > r.top + r.height / 2)
  }
  return (
    <li
      className={`card priority-${task.priority}${dropBefore ? ' drop-before' : ''}`}
      data-testid="task-card"
      data-task-id={task.id}
      draggable={editable}
      onDragStart={(e) => {
        e.dataTransfer.setData('application/x-plait-task', task.id)
        e.dataTransfer.effectAllowed = 'move'
      }}
      onDragOver={onDragOver}
      onKeyDown={onKeyDown}
    >
      {(task.priority !== 'none' || shown.length > 0) && (
        <div className="card-tags">
          {task.priority !== 'none' && (
            <span className={`priority-badge priority-${task.priority}`} data-testid="card-priority">
              {PRIORITY_LABELS[task.priority]}
            </span>
          )}
          {shown.map((l) => (
            <LabelChip key={l.id} label={l} />
          ))}
        </div>
      )}
      <button
        type="button"
        className="card-title"
        onClick={onOpen}
        aria-label={`Open task ${name}`}
        aria-keyshortcuts={editable ? 'Alt+ArrowUp Alt+ArrowDown Alt+ArrowLeft Alt+ArrowRight' : undefined}
        title={name}
      >
        {name}
      </button>
      <div className="card-meta">
        {due && task.due_date && (
          <span className={`due${due.overdue ? ' overdue' : ''}`} data-testid="card-due">
            <time dateTime={task.due_date} title={task.due_date}>
              {due.text}
            </time>
          </span>
        )}
        {progress.total > 0 && (
          <span
            className={`progress${progress.done === progress.total ? ' complete' : ''}`}
            data-testid="card-progress"
            aria-label={`Checklist: ${progress.done} of ${progress.total} done`}
          >
            ☑ {progress.done}/{progress.total}
          </span>
        )}
        {task.comments.length > 0 && (
          <span className="comment-count" data-testid="card-comments" aria-label={`${task.comments.length} comments`}>
            💬 {task.comments.length}
          </span>
        )}
        {viewers.length > 0 && (
          <span className="watchers" aria-label={`Looking at this task: ${viewers.map((v) => v.name).join(', ')}`} data-testid="card-viewers">
            {viewers.map((v) => (
              <Avatar key={v.id} name={v.name} color={v.color} size={18} title={`${v.name} is looking at this task`} />
            ))}
          </span>
        )}
        <span className="spacer" />
        {editable && (
          <label className="card-status">
            <StatusSelect value={task.status} onChange={onMove} label={`Status of ${name}`} />
          </label>
        )}
        {assignee && task.assignee_id && (
          <span className="assignee" data-testid="card-assignee">
            <Avatar name={assignee} color={colorFor(task.assignee_id)} size={22} title={`Assigned to ${assignee}`} />
            <span className="sr-only">{assignee}</span>
          </span>
        )}
      </div>
    </li>
  )
}
