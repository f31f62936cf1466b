import { useEffect, useRef, useState } from 'react'
import { useNotifications, describeNotification, NOTIFICATION_TYPES } from '../state/notifications'
import { api } from '../api'
import { navigate } from '../router'
import { showError } from '../state/toasts'
import { ErrorText, useAction } from './common'

/** The bell: unread count, and the notification center it opens. */
export function Bell() {
  const { unread, unreadMore } = useNotifications()
  const [open, setOpen] = useState(false)
  const ref = useRef<HTMLDivElement>(null)
  useEffect(() => {
    if (!open) return
    const onDown = (e: MouseEvent) => {
      if (ref.current && !ref.current.contains(e.target as Node)) setOpen(false)
    }
    const onKey = (e: KeyboardEvent) => e.key === 'Escape' && setOpen(false)
    document.addEventListener('mousedown', onDown)
    document.addEventListener('keydown', onKey)
    return () => {
      document.removeEventListener('mousedown', onDown)
      document.removeEventListener('keydown', onKey)
    }
  }, [open])
  const count = unreadMore ? `${unread}+` : String(unread)
  return (
    <div className="bell" ref={ref}>
      <button
        type="button"
        className="icon bell-button"
        aria-label={unread ? `Notifications, ${count} unread` : 'Notifications'}
        aria-expanded={open}
        aria-haspopup="dialog"
        onClick={() => setOpen(!open)}
      >
        <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true">
          <path fill="currentColor" d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5-6.71V3.5a2 2 0 0 0-4 0v.79A7 7 0 0 0 5 11v5l-2 2v1h18v-1Z" />
        </svg>
        {unread > 0 && (
          <span className="count" data-testid="unread-count">
            {count}
          </span>
        )}
      </button>
      {open && <NotificationCenter onClose={() => setOpen(false)} />}
    </div>
  )
}

function NotificationCenter({ onClose }: { onClose: () => void }) {
  const { items, nextCursor, unread, loading, markRead, markAllRead, loadMore } = useNotifications()
  const act = (fn: () => Promise<void>) => () => void fn().catch(showError)
  return (
    <div className="popover notification-center" role="dialog" aria-label="Notification center">
      <div className="popover-head">
        <h2>Notifications</h2>
        <button type="button" className="link" onClick={act(markAllRead)} disabled={unread === 0}>
          Mark all read
        </button>
      </div>
      {items.length === 0 && <p className="muted">{loading ? 'Loading…' : 'Nothing here yet.'}</p>}
      <ul aria-label="Notifications">
        {items.map((n) => (
          <li key={n.id} className={n.read_at ? 'read' : 'unread'} data-testid="notification">
            <button
              type="button"
              className="notification-text"
              onClick={() => {
                void markRead(n.id).catch(showError)
                if (n.task_id) navigate(`/w/${n.workspace_id}/t/${n.task_id}`)
                else navigate(`/w/${n.workspace_id}`)
                onClose()
              }}
            >
              {!n.read_at && <span className="sr-only">Unread: </span>}
              {describeNotification(n)}
              <time dateTime={n.created_at}>{new Date(n.created_at).toLocaleString()}</time>
            </button>
            {!n.read_at && (
              <button type="button" className="link small" onClick={act(() => markRead(n.id))} aria-label={`Mark read: ${describeNotification(n)}`}>
                Mark read
              </button>
            )}
          </li>
        ))}
      </ul>
      {nextCursor && (
        <button type="button" className="link" onClick={act(loadMore)}>
          Show older
        </button>
      )}
      <a
        className="small"
        href="/settings/notifications"
        onClick={(e) => {
          e.preventDefault()
          onClose()
          navigate('/settings/notifications')
        }}
      >
        Notification preferences
      </a>
    </div>
  )
}

type Prefs = Record<string, boolean>

/** Accept the preference shapes a server may reasonably return and remember how to send them back. */
export function readPrefs(value: unknown): { prefs: Prefs; shape: 'map' | 'nested' | 'list' } {
  const prefs: Prefs = Object.fromEntries(Object.keys(NOTIFICATION_TYPES).map((t) => [t, true]))
  if (Array.isArray(value)) {
    for (const row of value as { type?: string; enabled?: boolean; in_app?: boolean }[]) {
      if (typeof row.type === 'string') prefs[row.type] = Boolean(row.enabled ?? row.in_app ?? true)
    }
    return { prefs, shape: 'list' }
  }
  const obj = (value ?? {}) as Record<string, unknown>
  const nested = obj.preferences && typeof obj.preferences === 'object' ? (obj.preferences as Record<string, unknown>) : null
  for (const [k, v] of Object.entries(nested ?? obj)) {
    if (typeof v === 'boolean') prefs[k] = v
    else if (v && typeof v === 'object' && 'in_app' in v) prefs[k] = Boolean((v as { in_app: unknown }).in_app)
  }
  return { prefs, shape: nested ? 'nested' : 'map' }
}

export function writePrefs(prefs: Prefs, shape: 'map' | 'nested' | 'list'): unknown {
  if (shape === 'list') return Object.entries(prefs).map(([type, enabled]) => ({ type, enabled }))
  return shape === 'nested' ? { preferences: prefs } : prefs
}

export function PreferencesPage() {
  const [state, setState] = useState<{ prefs: Prefs; shape: 'map' | 'nested' | 'list' } | null>(null)
  const load = useAction()
  const save = useAction()
  const [saved, setSaved] = useState(false)
  useEffect(() => {
    void load.run(async () => setState(readPrefs(await api.preferences())))
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [])
  const toggle = (type: string, on: boolean) => {
    if (!state) return
    const next = { ...state, prefs: { ...state.prefs, [type]: on } }
    setState(next)
    setSaved(false)
    void save.run(async () => {
      const answer = await api.savePreferences(writePrefs(next.prefs, next.shape))
      if (answer && typeof answer === 'object') setState(readPrefs(answer))
      setSaved(true)
    })
  }
  return (
    <main className="page" id="main">
      <h1>Notification preferences</h1>
      <p>Choose which events create a notification for you in Plait.</p>
      <ErrorText error={load.error ?? save.error} />
      {state && (
        <fieldset className="prefs">
          <legend>Notify me when</legend>
          {Object.entries(NOTIFICATION_TYPES).map(([type, label]) => (
            <label key={type} className="check">
              <input type="checkbox" checked={state.prefs[type] ?? true} onChange={(e) => toggle(type, e.target.checked)} />
              {label}
            </label>
          ))}
        </fieldset>
      )}
      <p role="status" className="muted">
        {save.busy ? 'Saving…' : saved ? 'Saved.' : ''}
      </p>
    </main>
  )
}
