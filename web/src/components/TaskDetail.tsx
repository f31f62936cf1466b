import { useEffect, useState } from 'react'
import { type ActivityEntry, api, itemsOf, type Member, type Workspace } from '../api'
import type { WorkspaceSession } from '../doc/session'
import { DELETE_ORIGIN } from '../doc/session'
import {
  deleteTask,
  descriptionOf,
  type Label,
  PRIORITIES,
  PRIORITY_LABELS,
  type Priority,
  STATUS_LABELS,
  type Status,
  type Task,
  titleProblem,
  updateTask,
} from '../doc/tasks'
import { useAuth } from '../state/auth'
import { LabelPicker } from './Labels'
import { Checklist } from './Checklist'
import { Comments } from './Comments'
import { DescriptionView } from './Markdown'
import { useBoard } from '../state/board'
import { useWorkspaces } from '../state/workspaces'
import { useToasts } from '../state/toasts'
import { Avatar, Dialog, ErrorText, StatusSelect, useAction } from './common'
import { LazyDescriptionEditor } from './LazyEditor'
import { canEdit } from '../permissions'
import { memberName } from '../state/members'

/** Task detail (US6): fields, the shared description with others' cursors, who is here, activity. */
export function TaskDetail({
  workspace,
  taskId,
  session,
  task,
  labels,
  onClose,
}: {
  workspace: Workspace
  taskId: string
  session: WorkspaceSession
  task: Task | null
  labels: Label[]
  onClose: () => void
}) {
  const me = useAuth((s) => s.me)
  const editable = canEdit(workspace)
  const members = useWorkspaces((s) => s.members[workspace.id]) ?? []
  const peers = useBoard((s) => s.peers)
  const { synced, loadedLocally } = useBoard()
  const text = task ? descriptionOf(session.doc, taskId) : null
  const here = peers.filter((p) => p.viewing.includes(taskId))

  useEffect(() => {
    session.setViewing(taskId)
    return () => session.setViewing(null)
  }, [session, taskId])

  const [title, setTitle] = useState(task?.title ?? '')
  const [editingTitle, setEditingTitle] = useState(false)
  useEffect(() => {
    if (!editingTitle) setTitle(task?.title ?? '')
  }, [task?.title, editingTitle])

  const set = (patch: Parameters<typeof updateTask>[2]) => updateTask(session.doc, taskId, patch)
  const [titleError, setTitleError] = useState<string | null>(null)
  const commitTitle = () => {
    const problem = titleProblem(title)
    setTitleError(problem)
    if (problem) return // kept as typed (still being edited), never cut to fit
    setEditingTitle(false)
    const t = title.trim()
    if (t && t !== task?.title) set({ title: t })
    else setTitle(task?.title ?? '')
  }
  const remove = () => {
    const name = task?.title || 'Untitled task'
    deleteTask(session.doc, taskId, DELETE_ORIGIN)
    const item = session.history.undoStack[session.history.undoStack.length - 1]
    onClose()
    useToasts.getState().push(
      {
        kind: 'info',
        text: `Deleted “${name}”.`,
        action: {
          label: 'Undo',
          run: () => {
            const stack = session.history.undoStack
            if (stack[stack.length - 1] === item) session.history.undo()
            else useToasts.getState().push({ kind: 'error', text: 'That deletion can no longer be undone.' })
          },
        },
      },
      10000,
    )
  }

  const label = `Task: ${task?.title || 'Untitled task'}`
  return (
    <Dialog label={label} onClose={onClose} className="task-detail">
      <div className="detail-head">
        {task && editable ? (
          <label className="grow">
            <span className="sr-only">Title</span>
            <input
              className="title-input"
              value={title}
              onFocus={() => setEditingTitle(true)}
              onChange={(e) => {
                setTitle(e.target.value)
                if (titleError && !titleProblem(e.target.value)) setTitleError(null)
              }}
              onBlur={commitTitle}
              onKeyDown={(e) => {
                if (e.key === 'Enter') (e.target as HTMLInputElement).blur()
              }}
              aria-label="Title"
              aria-invalid={titleError ? true : undefined}
              aria-describedby={titleError ? 'detail-title-error' : undefined}
            />
            {titleError && (
              <span className="error" role="alert" id="detail-title-error" data-testid="title-error">
                {titleError}
              </span>
            )}
          </label>
        ) : (
          <h2 className="grow">{task ? task.title || 'Untitled task' : 'Task'}</h2>
        )}
        <button type="button" className="icon" onClick={onClose} aria-label="Close task">
          ×
        </button>
      </div>

      {!task ? (
        <p role="status">{synced || loadedLocally ? 'This task does not exist, or it has been deleted.' : 'Loading…'}</p>
      ) : (
        <>
          <div className="fields">
            <label>
              Status
              <StatusSelect value={task.status} disabled={!editable} label="Status" onChange={(status) => set({ status })} />
            </label>
            <label>
              Assignee
              <select
                value={task.assignee_id ?? ''}
                disabled={!editable}
                aria-label="Assignee"
                onChange={(e) => set({ assignee_id: e.target.value || null })}
              >
                <option value="">Unassigned</option>
                {task.assignee_id && !members.some((m) => m.user_id === task.assignee_id) && (
                  <option value={task.assignee_id}>{memberName(members, task.assignee_id)}</option>
                )}
                {members.map((m) => (
                  <option key={m.user_id} value={m.user_id}>
                    {m.display_name}
                  </option>
                ))}
              </select>
            </label>
            <label>
              Priority
              <select
                value={task.priority}
                disabled={!editable}
                aria-label="Priority"
                onChange={(e) => set({ priority: e.target.value as Priority })}
              >
                {PRIORITIES.map((p) => (
                  <option key={p} value={p}>
                    {PRIORITY_LABELS[p]}
                  </option>
                ))}
              </select>
            </label>
            <label>
              Due date
              <input
                type="date"
                aria-label="Due date"
                value={task.due_date ?? ''}
                disabled={!editable}
                onChange={(e) => set({ due_date: e.target.value || null })}
              />
            </label>
          </div>

          <div className="here" aria-label="Looking at this task" data-testid="task-viewers">
            {here.map((p) => (
              <span key={p.id} className="here-person">
                <Avatar name={p.name} color={p.color} size={22} />
                {p.self ? 'You' : p.name}
              </span>
            ))}
          </div>

          <h3 id="desc-label">Description</h3>
          {text ? (
            <DescriptionView text={text} nameOf={(id) => members.find((m) => m.user_id === id)?.display_name ?? null}>
              <LazyDescriptionEditor text={text} awareness={session.awareness} readOnly={!editable} label="Description" />
            </DescriptionView>
          ) : (
            <p className="muted">This task has no description field.</p>
          )}

          <h3 id="labels-label">Labels</h3>
          <LabelPicker doc={session.doc} taskId={taskId} labels={labels} selected={task.labels} editable={editable} />

          <Checklist doc={session.doc} task={task} editable={editable} />

          <Comments
            doc={session.doc}
            taskId={taskId}
            comments={task.comments}
            members={members}
            me={me?.id ?? null}
            role={workspace.role}
            editable={editable}
          />

          <Activity workspaceId={workspace.id} taskId={taskId} version={task.updated_at} />

          {editable && (
            <div className="detail-actions">
              <button type="button" className="danger" onClick={remove}>
                Delete task
              </button>
            </div>
          )}
        </>
      )}
    </Dialog>
  )
}

function describeValue(v: unknown, members: Member[], field: string): string {
  if (v === null || v === undefined || v === '') return '—'
  if (field === 'assignee_id' && typeof v === 'string') return memberName(members, v) ?? v
  if (field === 'status' && typeof v === 'string' && v in STATUS_LABELS) return STATUS_LABELS[v as Status]
  if (typeof v === 'string') return v.length > 60 ? `${v.slice(0, 57)}…` : v
  return JSON.stringify(v)
}

const FIELD_NAMES: Record<string, string> = { assignee_id: 'assignee', due_date: 'due date', completed_at: 'completion time' }

/** One activity row in words: "Ada changed status from To do to Done". */
export function describeActivity(a: ActivityEntry, members: Member[]): string {
  const kind = a.kind ?? (a.field === 'created' || a.field === 'deleted' ? a.field : 'updated')
  if (kind === 'created') return 'created the task'
  if (kind === 'deleted') return 'deleted the task'
  const field = String(a.field ?? 'task')
  if (field === 'description') {
    const ins = a.summary?.inserted ?? 0
    const del = a.summary?.deleted ?? 0
    const parts = [ins ? `+${ins}` : '', del ? `−${del}` : ''].filter(Boolean).join(' ')
    return `edited the description${parts ? ` (${parts} characters)` : ''}`
  }
  if (field === 'rank') return 'moved the task'
  if (field === 'labels') return 'changed the labels'
  if (field === 'checklist') return 'updated the checklist'
  if (field === 'comment' || field === 'comments')
    return a.old_value == null ? 'commented' : a.new_value == null ? 'deleted a comment' : 'edited a comment'
  const name = FIELD_NAMES[field] ?? field.replace(/_/g, ' ')
  return `changed ${name} from ${describeValue(a.old_value, members, field)} to ${describeValue(a.new_value, members, field)}`
}

function Activity({ workspaceId, taskId, version }: { workspaceId: string; taskId: string; version: string | null }) {
  const members = useWorkspaces((s) => s.members[workspaceId]) ?? []
  const [items, setItems] = useState<ActivityEntry[] | null>(null) // null: not loaded yet
  const { error, run } = useAction()
  useEffect(() => {
    const t = setTimeout(() => void run(async () => setItems(itemsOf(await api.taskActivity(workspaceId, taskId)))), 400)
    return () => clearTimeout(t)
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [workspaceId, taskId, version])
  return (
    <section className="activity" aria-labelledby="activity-heading">
      <h3 id="activity-heading">Activity</h3>
      <ErrorText error={error ? `Activity could not be loaded: ${error}` : null} />
      {items === null && !error && (
        <p className="muted" role="status">
          Loading activity…
        </p>
      )}
      {items?.length === 0 && !error && <p className="muted">No activity recorded yet.</p>}
      <ol data-testid="activity">
        {(items ?? []).map((a, i) => (
          <li key={String(a.id ?? i)}>
            <strong>{a.actor?.display_name ?? 'Someone'}</strong> {describeActivity(a, members)}
            {a.created_at && (
              <time dateTime={a.created_at} className="muted small">
                {' '}
                {new Date(a.created_at).toLocaleString()}
              </time>
            )}
          </li>
        ))}
      </ol>
    </section>
  )
}
