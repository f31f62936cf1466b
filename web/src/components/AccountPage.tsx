import { type FormEvent, useCallback, useEffect, useState } from 'react'
import { api, type SessionInfo } from '../api'
import { navigate } from '../router'
import { useAuth } from '../state/auth'
import { deviceName, timeAgo } from '../describe'
import { ErrorText, useAction, useConfirm } from './common'
import { PasswordForm, Tokens } from './AccountSecurity'
import { DigestToggle, YourData } from './AccountData'

/**
 * The account: profile, password, where it is signed in, personal access tokens, the e-mail digest, and its
 * data (export, delete), each section talking to its own REST route (docs/accounts.md).
 */
export function AccountPage() {
  const me = useAuth((s) => s.me)
  // Bumped when the server ended sessions (a password change), so the list is read again.
  const [sessionsSeen, setSessionsSeen] = useState(0)
  useEffect(() => {
    document.title = 'Account · Plait'
    return () => {
      document.title = 'Plait'
    }
  }, [])
  return (
    <main className="page account-page" id="main">
      <h1>Account</h1>
      {me && (
        <p>
          {me.display_name} <span className="muted">· {me.email}</span>
        </p>
      )}
      {me && <Profile key={me.id} name={me.display_name} />}
      <PasswordForm onChanged={() => setSessionsSeen((n) => n + 1)} />
      <Sessions reload={sessionsSeen} />
      <Tokens />
      <section aria-labelledby="notify-heading" className="account-section">
        <h2 id="notify-heading">Notifications</h2>
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
          <span className="muted"> — which events notify you in Plait.</span>
        </p>
        <DigestToggle />
      </section>
      {me && <YourData email={me.email} />}
    </main>
  )
}

/** The display name: what others see on tasks, presence and notifications. */
function Profile({ name }: { name: string }) {
  const [value, setValue] = useState(name)
  const [saved, setSaved] = useState(false)
  const action = useAction()
  const submit = (e: FormEvent) => {
    e.preventDefault()
    setSaved(false)
    void action.run(async () => {
      await api.updateMe(value.trim())
      await useAuth.getState().loadMe() // the header and open boards take the name from here
      setSaved(true)
    })
  }
  return (
    <section aria-labelledby="profile-heading" className="account-section">
      <h2 id="profile-heading">Profile</h2>
      <form className="inline-form" onSubmit={submit} aria-label="Profile">
        <label className="grow">
          Display name
          <input value={value} onChange={(e) => setValue(e.target.value)} required maxLength={100} autoComplete="name" />
        </label>
        <button type="submit" className="primary" disabled={action.busy || !value.trim()}>
          Save name
        </button>
        <ErrorText error={action.error} />
      </form>
      <p role="status" className="muted small">
        {saved ? 'Name saved.' : ''}
      </p>
    </section>
  )
}

function Sessions({ reload }: { reload: number }) {
  const [sessions, setSessions] = useState<SessionInfo[] | null>(null)
  const [ended, setEnded] = useState<string | null>(null)
  const action = useAction()
  const confirm = useConfirm()
  const refresh = useCallback(async () => setSessions(await api.sessions()), [])
  useEffect(() => {
    void action.run(refresh)
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [refresh, reload])
  const signOut = (s: SessionInfo) =>
    void action.run(async () => {
      await api.endSession(s.id)
      setEnded(`Signed out ${deviceName(s.user_agent)}.`)
      await refresh()
    })
  const everywhere = async () => {
    if (!(await confirm.ask('Sign out of every device, this one included?', 'Sign out everywhere'))) return
    await action.run(async () => {
      await api.logoutAll()
      useAuth.getState().signOut() // this device too: to the sign-in page
    })
  }
  return (
    <section aria-labelledby="sessions-heading" className="account-section">
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
                    Signed in {timeAgo(s.created_at)} · last active {timeAgo(s.last_active_at)}
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
      <button type="button" className="danger" disabled={action.busy} onClick={() => void everywhere()}>
        Sign out everywhere
      </button>
      <p role="status" className="muted">
        {ended ?? ''}
      </p>
      {confirm.dialog}
    </section>
  )
}
