import { type FormEvent, type ReactNode, useCallback, useEffect, useRef, useState } from 'react'
import { type AdminStats, type AdminUser, type AdminWorkspace, api, ApiError, type Page } from '../api'
import { navigate } from '../router'
import { useAuth } from '../state/auth'
import { formatBytes, timeAgo } from '../describe'
import { ErrorText, useAction, useConfirm, useCursorPages } from './common'
import { AuditLog } from './AuditLog'
import type { AuditSubjects } from './audit'

/** Rows asked for per page (the API's cursor gives the next ones). */
export const ADMIN_PAGE_SIZE = 25

/** Which accounts the list shows (`disabled=` of GET /api/admin/users). */
export type AccountsShown = 'all' | 'active' | 'disabled'

/** Brings a section into view and moves focus to its heading (tabIndex -1), so keyboard and screen reader users
 * land where the list or log just changed. */
function jumpTo(headingId: string) {
  const heading = document.getElementById(headingId)
  heading?.scrollIntoView({ block: 'start' })
  heading?.focus({ preventScroll: true })
}

/**
 * Instance administration (docs/admin.md): the instance's figures, accounts (search, disable, enable),
 * workspaces and the audit log. Loaded on demand (its own chunk). The server decides who may see it: a 403 shows
 * "not available".
 */
export default function AdminPage() {
  const [stats, setStats] = useState<AdminStats | null>(null)
  const [denied, setDenied] = useState(false)
  const [changes, setChanges] = useState(0) // accounts disabled or enabled here: the audit log reads them
  const [shown, setShown] = useState<AccountsShown>('all')
  const [auditSubjects, setAuditSubjects] = useState<AuditSubjects>({})
  const showAudit = (subjects: AuditSubjects) => {
    setAuditSubjects(subjects) // one account's or one workspace's entries (the action filter stays)
    jumpTo('admin-audit')
  }
  const load = useAction()
  const reloadStats = useCallback(
    () =>
      void load.run(async () => {
        try {
          setStats(await api.adminStats())
        } catch (e) {
          if (e instanceof ApiError && e.status === 403) setDenied(true)
          else throw e
        }
      }),
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [],
  )
  useEffect(() => {
    reloadStats()
    document.title = 'Administration · Plait'
    return () => {
      document.title = 'Plait'
    }
  }, [reloadStats])

  if (denied) return <NotAvailable />
  return (
    <main className="page admin" id="main">
      <h1>Administration</h1>
      <ErrorText error={load.error} />
      {!stats ? (
        load.busy && <p role="status">Loading…</p>
      ) : (
        <>
          <Statistics
            stats={stats}
            onShowDisabled={() => {
              setShown('disabled')
              jumpTo('admin-users')
            }}
          />
          <Users
            shown={shown}
            onShown={setShown}
            onAudit={(u) => showAudit({ actor: { id: u.id, name: u.email } })}
            onChanged={() => {
              reloadStats()
              setChanges((n) => n + 1)
            }}
          />
          <Workspaces onAudit={(w) => showAudit({ workspace: { id: w.id, name: w.name } })} />
          <section aria-labelledby="admin-audit">
            <h2 id="admin-audit" tabIndex={-1}>
              Audit log
            </h2>
            <AuditLog refreshKey={changes} subjects={auditSubjects} onSubjects={setAuditSubjects} />
          </section>
        </>
      )}
    </main>
  )
}

function NotAvailable() {
  return (
    <main className="page" id="main">
      <h1>Not available</h1>
      <p role="alert" data-testid="admin-unavailable">
        This page is only for the administrators of this Plait server.
      </p>
      <button type="button" className="primary" onClick={() => navigate('/')}>
        Go to your workspaces
      </button>
    </main>
  )
}

function count(value: unknown): string {
  return typeof value === 'number' ? value.toLocaleString() : '—'
}

function Statistics({ stats, onShowDisabled }: { stats: AdminStats; onShowDisabled: () => void }) {
  const node = stats.node ?? {}
  const figures: [string, unknown][] = [
    ['Accounts', stats.users],
    ['Administrators', stats.admins],
    ['Disabled accounts', stats.disabled_users],
    ['Workspaces', stats.workspaces],
    ['Connected sockets (this node)', node.connected_sockets],
    ['Open documents (this node)', node.loaded_documents],
    ['Updates in the last minute (this node)', node.updates_last_minute],
  ]
  return (
    <section aria-labelledby="admin-stats">
      <h2 id="admin-stats">Statistics</h2>
      <dl className="stats" data-testid="admin-stats">
        {figures.map(([label, value]) => (
          <div key={label}>
            <dt>{label}</dt>
            <dd>
              {label === 'Disabled accounts' && typeof value === 'number' && value > 0 ? (
                <button
                  type="button"
                  className="link stat-link"
                  aria-label={`${count(value)}: show the disabled accounts`}
                  onClick={onShowDisabled}
                >
                  {count(value)}
                </button>
              ) : (
                count(value)
              )}
            </dd>
          </div>
        ))}
      </dl>
    </section>
  )
}

/** One searchable list read page by page with the API's cursor ("Show more" appends the next page). A change of
 * `filter` reads the first page again for the last search. */
function usePaged<T, F>(fetchPage: (q: string, cursor: string | null, filter: F) => Promise<Page<T>>, filter: F) {
  const asked = useRef('') // the newest search asked for (`query` is the one the items answer)
  const fetchFiltered = useCallback(
    (q: string, cursor: string | null) => fetchPage(q, cursor, filter),
    [fetchPage, filter],
  )
  const pages = useCursorPages(fetchFiltered)
  const { load } = pages
  useEffect(() => load(asked.current, null), [load])
  const search = (q: string) => {
    asked.current = q
    load(q, null)
  }
  return { ...pages, query: pages.answered?.args ?? '', search }
}

function SearchForm({
  label,
  onSearch,
  busy,
  children,
}: {
  label: string
  onSearch: (q: string) => void
  busy: boolean
  /** More controls of the same search (they apply when they change). */
  children?: ReactNode
}) {
  const [text, setText] = useState('')
  const submit = (e: FormEvent) => {
    e.preventDefault()
    onSearch(text.trim())
  }
  return (
    <form role="search" aria-label={label} className="row" onSubmit={submit}>
      <label>
        {label}
        <input type="search" value={text} maxLength={100} onChange={(e) => setText(e.target.value)} />
      </label>
      <button type="submit" disabled={busy}>
        Search
      </button>
      {children}
    </form>
  )
}

const fetchUsers = (q: string, cursor: string | null, shown: AccountsShown) =>
  api.adminUsers(q, cursor, ADMIN_PAGE_SIZE, shown === 'all' ? undefined : shown === 'disabled')
const fetchWorkspaces = (q: string, cursor: string | null) => api.adminWorkspaces(q, cursor, ADMIN_PAGE_SIZE)

const SHOWN: Record<AccountsShown, string> = { all: 'All accounts', active: 'Active', disabled: 'Disabled' }
const CAPTION: Record<AccountsShown, string> = {
  all: 'Accounts',
  active: 'Active accounts',
  disabled: 'Disabled accounts',
}

function Users({
  shown,
  onShown,
  onAudit,
  onChanged,
}: {
  shown: AccountsShown
  onShown: (shown: AccountsShown) => void
  onAudit: (user: AdminUser) => void
  onChanged: () => void
}) {
  const me = useAuth((s) => s.me)
  const users = usePaged(fetchUsers, shown)
  const change = useAction()
  const confirm = useConfirm()
  const setDisabled = async (user: AdminUser, disabled: boolean) => {
    if (disabled) {
      const ok = await confirm.ask(
        `Disable ${user.email}? They are signed out everywhere at once and cannot sign in until the account is enabled again.`,
        'Disable account',
      )
      if (!ok) return
    }
    await change.run(async () => {
      const updated = await api.setUserDisabled(user.id, disabled)
      users.setItems((list) => list.map((u) => (u.id === updated.id ? updated : u)))
      onChanged()
    })
  }
  return (
    <section aria-labelledby="admin-users">
      <h2 id="admin-users" tabIndex={-1}>
        Accounts
      </h2>
      <SearchForm label="Search accounts" onSearch={users.search} busy={users.action.busy}>
        <label>
          Show
          <select value={shown} onChange={(e) => onShown(e.target.value as AccountsShown)}>
            {Object.entries(SHOWN).map(([value, text]) => (
              <option key={value} value={value}>
                {text}
              </option>
            ))}
          </select>
        </label>
      </SearchForm>
      <ErrorText error={users.action.error ?? change.error} />
      <table className="members admin-table">
        <caption className="sr-only">
          {CAPTION[shown]}
          {users.query ? ` matching “${users.query}”` : ''}
        </caption>
        <thead>
          <tr>
            <th scope="col">Account</th>
            <th scope="col">Workspaces</th>
            <th scope="col">Registered</th>
            <th scope="col">Status</th>
            <th scope="col">
              <span className="sr-only">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {users.items.map((u) => (
            <tr key={u.id} data-testid="admin-user-row">
              <td>
                <strong>{u.display_name}</strong>
                <div className="muted small">{u.email}</div>
              </td>
              <td>{u.workspaces}</td>
              <td>{timeAgo(u.created_at)}</td>
              <td>
                {u.disabled_at ? 'Disabled' : 'Active'}
                {u.is_admin && <span className="badge">Admin</span>}
              </td>
              <td>
                <div className="row-buttons">
                  {u.id === me?.id ? (
                    <span className="muted small">You</span>
                  ) : (
                    <button
                      type="button"
                      className={u.disabled_at ? 'small' : 'small danger'}
                      disabled={change.busy}
                      aria-label={`${u.disabled_at ? 'Enable' : 'Disable'} ${u.email}`}
                      onClick={() => void setDisabled(u, !u.disabled_at)}
                    >
                      {u.disabled_at ? 'Enable' : 'Disable'}
                    </button>
                  )}
                  <AuditButton label={`Audit log entries by ${u.email}`} onClick={() => onAudit(u)} />
                </div>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {users.items.length === 0 && !users.action.busy && <p className="muted">No accounts found.</p>}
      {users.next && (
        <button type="button" disabled={users.action.busy} onClick={users.more}>
          Show more accounts
        </button>
      )}
      {confirm.dialog}
    </section>
  )
}

/** Narrows the audit log below to one row's account or workspace (its name says whose). */
function AuditButton({ label, onClick }: { label: string; onClick: () => void }) {
  return (
    <button type="button" className="small" aria-label={label} onClick={onClick}>
      Audit log
    </button>
  )
}

function Workspaces({ onAudit }: { onAudit: (workspace: AdminWorkspace) => void }) {
  const spaces = usePaged(fetchWorkspaces, null)
  return (
    <section aria-labelledby="admin-workspaces">
      <h2 id="admin-workspaces">Workspaces</h2>
      <SearchForm label="Search workspaces" onSearch={spaces.search} busy={spaces.action.busy} />
      <ErrorText error={spaces.action.error} />
      <table className="members admin-table">
        <caption className="sr-only">Workspaces{spaces.query ? ` matching “${spaces.query}”` : ''}</caption>
        <thead>
          <tr>
            <th scope="col">Workspace</th>
            <th scope="col">Members</th>
            <th scope="col">Document size</th>
            <th scope="col">Last activity</th>
            <th scope="col">
              <span className="sr-only">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {spaces.items.map((w) => (
            <tr key={w.id} data-testid="admin-workspace-row">
              <td>{w.name}</td>
              <td>{w.members}</td>
              <td>{formatBytes(w.document_bytes)}</td>
              <td>{timeAgo(w.last_activity_at)}</td>
              <td>
                <AuditButton label={`Audit log entries in “${w.name}”`} onClick={() => onAudit(w)} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {spaces.items.length === 0 && !spaces.action.busy && <p className="muted">No workspaces found.</p>}
      {spaces.next && (
        <button type="button" disabled={spaces.action.busy} onClick={spaces.more}>
          Show more workspaces
        </button>
      )}
    </section>
  )
}
