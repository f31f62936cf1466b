import { useCallback, useEffect, useState } from 'react'
import { api, type SessionInfo } from '../api'
import { navigate } from '../router'
import { useAuth } from '../state/auth'
import { deviceName, timeAgo } from '../describe'
import { ErrorText, useAction } from './common'

/** The account: who is signed in, and where (each live session, with a way to sign the others out). */
export function AccountPage() {
  const me = useAuth((s) => s.me)
  useEffect(() => {
    document.title = 'Account · Plait'
    return () => {
      document.title = 'Plait'
    }
  }, [])
  return (
    <main className="page" id="main">
      <h1>Account</h1>
      {me && (
        <p>
          {me.display_name} <span className="muted">· {me.email}</span>
        </p>
      )}
      <p>
        <a
          href="/settings/notifications"
          onClick={(e) => {
            e.preventDefault()
            navigate('/settings/notifications')
          }}
        >
          Notification preferences
        </a>
      </p>
      <Sessions />
    </main>
  )
}

function Sessions() {
  const [sessions, setSessions] = useState<SessionInfo[] | null>(null)
  const [ended, setEnded] = useState<string | null>(null)
  const action = useAction()
  const refresh = useCallback(async () => setSessions(await api.sessions()), [])
  useEffect(() => {
    void action.run(refresh)
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [refresh])
  const signOut = (s: SessionInfo) =>
    void action.run(async () => {
      await api.endSession(s.id)
      setEnded(`Signed out ${deviceName(s.user_agent)}.`)
      await refresh()
    })
  return (
    <section aria-labelledby="sessions-heading">
      <h2 id="sessions-heading">Where you're signed in</h2>
      <p className="muted">Signing a device out ends its session there at once; it has to sign in again.</p>
      <ErrorText error={action.error} />
      {sessions && (
        <ul className="sessions" aria-labelledby="sessions-heading">
          {sessions.map((s) => {
            const name = deviceName(s.user_agent)
            return (
              <li key={s.id} data-testid="session-row" className="session-row">
                <div>
                  <strong title={s.user_agent ?? undefined}>{name}</strong>
                  {s.current && <span className="badge">This device</span>}
                  <div className="muted small">
                    Signed in {timeAgo(s.created_at)} · last active {timeAgo(s.last_refreshed_at)}
                  </div>
                </div>
                {!s.current && (
                  <button
                    type="button"
                    className="small"
                    disabled={action.busy}
                    aria-label={`Sign out ${name}, signed in ${timeAgo(s.created_at)}`}
                    onClick={() => signOut(s)}
                  >
                    Sign out
                  </button>
                )}
              </li>
            )
          })}
        </ul>
      )}
      <p role="status" className="muted">
        {ended ?? ''}
      </p>
    </section>
  )
}
