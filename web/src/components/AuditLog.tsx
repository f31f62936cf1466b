import { useCallback, useEffect, useMemo, useRef, useState } from 'react'
import { api, type AuditEntry } from '../api'
import {
  actionLabel,
  actionsFor,
  actorText,
  detailsText,
  type NameOf,
  shortId,
  targetText,
  workspaceNames,
} from './audit'
import { ErrorText, useAction } from './common'

/** Entries asked for per page ("Load more" asks for the next ones with the API's cursor). */
export const AUDIT_PAGE_SIZE = 25

interface Props {
  /** One workspace's log (its owners and admins); without it, the whole instance's (instance administrators). */
  workspaceId?: string
  /** Changes when the page did something the log records: the first page is read again. */
  refreshKey?: unknown
  /** Names for user ids the page knows (a workspace's members). */
  nameOf?: NameOf
}

/**
 * The audit log, newest first (docs/admin.md#audit-log): a table of entries with a filter by action and "Load
 * more". The server decides who may read it; the page shows the component only to those it lets.
 */
export function AuditLog({ workspaceId, refreshKey, nameOf }: Props) {
  const [action, setAction] = useState('')
  const log = useAuditPages(workspaceId, action, refreshKey)
  const names = useMemo(() => workspaceNames(log.items), [log.items])
  const instance = workspaceId === undefined
  const filtered = action ? ` of “${actionLabel(action)}”` : ''
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
          <select value={action} onChange={(e) => setAction(e.target.value)}>
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
            <AuditRow key={e.id} entry={e} names={names} nameOf={nameOf} instance={instance} />
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

function AuditRow({
  entry,
  names,
  nameOf,
  instance,
}: {
  entry: AuditEntry
  names: Map<string, string>
  nameOf?: NameOf
  instance: boolean
}) {
  const when = new Date(entry.created_at)
  const wid = entry.workspace_id
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
        <Wrappable text={actorText(entry)} />
      </td>
      <td data-label="Action">
        {actionLabel(entry.action)}
        <div>
          <code className="muted small">{entry.action}</code>
        </div>
      </td>
      <td data-label="Target" title={entry.target?.id ?? undefined}>
        <Wrappable text={targetText(entry, names, nameOf)} />
      </td>
      {instance && (
        <td data-label="Workspace" title={wid ?? undefined}>
          {!wid ? '—' : names.has(wid) ? `“${names.get(wid)}”` : shortId(wid)}
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
 * next one on "Load more". An answer that a newer request has overtaken is dropped. */
function useAuditPages(workspaceId: string | undefined, action: string, refreshKey: unknown) {
  const [items, setItems] = useState<AuditEntry[]>([])
  const [next, setNext] = useState<string | null>(null)
  const [loaded, setLoaded] = useState(false)
  const request = useAction()
  const latest = useRef(0)
  const load = useCallback(
    (cursor: string | null) => {
      const ticket = ++latest.current
      void request.run(async () => {
        const page = workspaceId
          ? await api.workspaceAudit(workspaceId, action, cursor, AUDIT_PAGE_SIZE)
          : await api.adminAudit({ action }, cursor, AUDIT_PAGE_SIZE)
        if (ticket !== latest.current) return
        setItems((prev) => (cursor ? [...prev, ...page.items] : page.items))
        setNext(page.next_cursor)
        setLoaded(true)
      })
    },
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [workspaceId, action],
  )
  useEffect(() => load(null), [load, refreshKey])
  return {
    items,
    next,
    loaded,
    busy: request.busy,
    error: request.error,
    more: () => load(next),
    reload: () => load(null),
  }
}
