import { type ReactNode, useCallback, useEffect, useMemo, useRef, useState } from 'react'
import { api, type AuditEntry } from '../api'
import {
  actionLabel,
  actionsFor,
  actorSubject,
  actorSubjectText,
  actorText,
  type AuditSubjects,
  detailsText,
  filterText,
  type NameOf,
  shortId,
  targetSubject,
  targetSubjectText,
  targetText,
  workspaceNames,
  workspaceSubject,
  workspaceSubjectText,
} from './audit'
import { ErrorText, useCursorPages } from './common'

/** Entries asked for per page ("Load more" asks for the next ones with the API's cursor). */
export const AUDIT_PAGE_SIZE = 25

interface Props {
  /** One workspace's log (its owners and admins); without it, the whole instance's (instance administrators). */
  workspaceId?: string
  /** Changes when the page did something the log records: the first page is read again. */
  refreshKey?: unknown
  /** Names for user ids the page knows (a workspace's members). */
  nameOf?: NameOf
  /** The instance's log only: whose entries and which workspace's it shows (chips that remove them)... */
  subjects?: AuditSubjects
  /** ...and how it changes them (a chip removed; an actor, target or workspace cell chosen, which narrows the log
   * to it). */
  onSubjects?: (subjects: AuditSubjects) => void
}

const NO_SUBJECTS: AuditSubjects = {}

/**
 * The audit log, newest first (docs/admin.md#audit-log): a table of entries with a filter by action and "Load
 * more"; the instance's log can also be narrowed to one account's entries, to what happened to one target, and to one
 * workspace's entries (`subjects`). The
 * server decides who may read it; the page shows the component only to those it lets.
 */
export function AuditLog({ workspaceId, refreshKey, nameOf, subjects = NO_SUBJECTS, onSubjects }: Props) {
  const [action, setAction] = useState('')
  const actionSelect = useRef<HTMLSelectElement>(null)
  const log = useAuditPages(workspaceId, action, subjects, refreshKey)
  const names = useMemo(() => {
    const known = workspaceNames(log.items)
    const ws = subjects.workspace
    if (ws?.name && !known.has(ws.id)) known.set(ws.id, ws.name) // the filter's own workspace, named by the page
    return known
  }, [log.items, subjects.workspace])
  const instance = workspaceId === undefined
  const filtered = filterText(action, subjects)
  const narrow = onSubjects && ((more: AuditSubjects) => onSubjects({ ...subjects, ...more }))
  const remove = (kind: keyof AuditSubjects) => {
    onSubjects?.({ ...subjects, [kind]: undefined })
    actionSelect.current?.focus() // the chip's button is gone: focus stays in the filters
  }
  return (
    <div className="audit-log">
      <form
        role="search"
        aria-label="Filter the audit log"
        className="audit-filter"
        onSubmit={(e) => e.preventDefault()}
      >
        <label>
          Action
          <select ref={actionSelect} value={action} onChange={(e) => setAction(e.target.value)}>
            <option value="">All actions</option>
            {actionsFor(instance ? 'instance' : 'workspace').map((a) => (
              <option key={a} value={a}>
                {actionLabel(a)} ({a})
              </option>
            ))}
          </select>
        </label>
        <button type="button" onClick={log.reload} disabled={log.busy}>
          Refresh<span className="sr-only"> the audit log</span>
        </button>
        {onSubjects && (subjects.actor || subjects.target || subjects.workspace) && (
          <ul className="audit-chips" aria-label="Audit log filters">
            {subjects.actor && (
              <FilterChip text={`Actor: ${actorSubjectText(subjects.actor)}`} onRemove={() => remove('actor')} />
            )}
            {subjects.target && (
              <FilterChip text={`About: ${targetSubjectText(subjects.target)}`} onRemove={() => remove('target')} />
            )}
            {subjects.workspace && (
              <FilterChip
                text={`Workspace: ${workspaceSubjectText(subjects.workspace)}`}
                onRemove={() => remove('workspace')}
              />
            )}
          </ul>
        )}
      </form>
      <ErrorText error={log.error} />
      <table className="members admin-table audit-table">
        <caption className="sr-only">Audit log entries{filtered}, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">Actor</th>
            <th scope="col">Action</th>
            <th scope="col">Target</th>
            {instance && <th scope="col">Workspace</th>}
            <th scope="col">Client address</th>
            <th scope="col">Details</th>
          </tr>
        </thead>
        <tbody>
          {log.items.map((e) => (
            <AuditRow
              key={e.id}
              entry={e}
              names={names}
              nameOf={nameOf}
              instance={instance}
              subjects={subjects}
              narrow={narrow}
            />
          ))}
        </tbody>
      </table>
      {log.loaded && log.items.length === 0 && <p className="muted">No entries{filtered}.</p>}
      {!log.loaded && log.busy && <p role="status">Loading…</p>}
      {log.next && (
        <button type="button" disabled={log.busy} onClick={log.more}>
          Load more entries
        </button>
      )}
    </div>
  )
}

/** One filter on the log, as a button that removes it ("Actor: ann@example.com ×"). */
function FilterChip({ text, onRemove }: { text: string; onRemove: () => void }) {
  return (
    <li>
      <button type="button" className="audit-chip" aria-label={`Remove the filter ${text}`} onClick={onRemove}>
        <Wrappable text={text} /> <span aria-hidden="true">×</span>
      </button>
    </li>
  )
}

function AuditRow({
  entry,
  names,
  nameOf,
  instance,
  subjects,
  narrow,
}: {
  entry: AuditEntry
  names: Map<string, string>
  nameOf?: NameOf
  instance: boolean
  subjects: AuditSubjects
  narrow?: (more: AuditSubjects) => void
}) {
  const when = new Date(entry.created_at)
  const wid = entry.workspace_id
  const actor = narrow && actorSubject(entry)
  const target = narrow && targetSubject(entry, names, nameOf)
  const workspace = narrow && workspaceSubject(entry, names)
  return (
    <tr data-testid="audit-row">
      <td data-label="Time">
        <time dateTime={entry.created_at}>
          {Number.isNaN(when.getTime()) ? (
            entry.created_at
          ) : (
            <>
              <span className="audit-when">{when.toLocaleDateString(undefined, { dateStyle: 'medium' })}</span>{' '}
              <span className="audit-when">{when.toLocaleTimeString(undefined, { timeStyle: 'medium' })}</span>
            </>
          )}
        </time>
      </td>
      <td data-label="Actor">
        {actor && actor.id !== subjects.actor?.id ? (
          <NarrowButton label={`Show only entries by ${actorText(entry)}`} onClick={() => narrow?.({ actor })}>
            <Wrappable text={actorText(entry)} />
          </NarrowButton>
        ) : (
          <Wrappable text={actorText(entry)} />
        )}
      </td>
      <td data-label="Action">
        {actionLabel(entry.action)}
        <div>
          <code className="muted small">{entry.action}</code>
        </div>
      </td>
      <td data-label="Target" title={entry.target?.id ?? undefined}>
        {target && target.id !== subjects.target?.id ? (
          <NarrowButton
            label={`Show only entries about ${targetSubjectText(target)}`}
            onClick={() => narrow?.({ target })}
          >
            <Wrappable text={targetText(entry, names, nameOf)} />
          </NarrowButton>
        ) : (
          <Wrappable text={targetText(entry, names, nameOf)} />
        )}
      </td>
      {instance && (
        <td data-label="Workspace" title={wid ?? undefined}>
          {!wid ? (
            '—'
          ) : workspace && wid !== subjects.workspace?.id ? (
            <NarrowButton
              label={`Show only entries in ${workspaceSubjectText(workspace)}`}
              onClick={() => narrow?.({ workspace })}
            >
              {workspaceSubjectText(workspace)}
            </NarrowButton>
          ) : names.has(wid) ? (
            `“${names.get(wid)}”`
          ) : (
            shortId(wid)
          )}
        </td>
      )}
      <td data-label="Client address" className="audit-free">
        {entry.address ?? '—'}
      </td>
      <td data-label="Details" className="audit-free">
        {detailsText(entry.action, entry.details) || '—'}
      </td>
    </tr>
  )
}

/** A cell's text as a button that narrows the log to it (its name says so; the text is still what it shows). */
function NarrowButton({ label, onClick, children }: { label: string; onClick: () => void; children: ReactNode }) {
  return (
    <button type="button" className="link audit-narrow" aria-label={label} title={label} onClick={onClick}>
      {children}
    </button>
  )
}

/** An email may wrap after its "@" rather than anywhere (a narrow column would cut it mid-word). */
function Wrappable({ text }: { text: string }) {
  const at = text.indexOf('@')
  if (at < 0) return text
  return (
    <>
      {text.slice(0, at + 1)}
      <wbr />
      {text.slice(at + 1)}
    </>
  )
}

/** The log's pages for one filter: the first page again whenever the filter or `refreshKey` changes, and the
 * next one on "Load more". */
function useAuditPages(
  workspaceId: string | undefined,
  action: string,
  subjects: AuditSubjects,
  refreshKey: unknown,
) {
  const actorId = subjects.actor?.id
  const targetId = subjects.target?.id
  const workspaceFilter = subjects.workspace?.id
  const fetchPage = useCallback(
    (_: null, cursor: string | null) =>
      workspaceId
        ? api.workspaceAudit(workspaceId, action, cursor, AUDIT_PAGE_SIZE)
        : api.adminAudit(
            { action, actor_id: actorId, target_id: targetId, workspace_id: workspaceFilter },
            cursor,
            AUDIT_PAGE_SIZE,
          ),
    [workspaceId, action, actorId, targetId, workspaceFilter],
  )
  const pages = useCursorPages(fetchPage)
  const { load } = pages
  useEffect(() => load(null, null), [load, refreshKey])
  return {
    items: pages.items,
    next: pages.next,
    loaded: pages.answered !== null,
    busy: pages.action.busy,
    error: pages.action.error,
    more: pages.more,
    reload: () => load(null, null),
  }
}
