import { useEffect, useState } from 'react'
import { api, type EmailPreferences } from '../api'
import { useAuth } from '../state/auth'
import { confirmsDeletion, digestCadence, exportFileName } from './account'
import { Dialog, ErrorText, useAction } from './common'

/** The e-mail digest of unread notifications: opt-in, off until switched on. */
export function DigestToggle() {
  const [prefs, setPrefs] = useState<EmailPreferences | null>(null)
  const [said, setSaid] = useState('')
  const action = useAction()
  useEffect(() => {
    void action.run(async () => setPrefs(await api.emailPreferences()))
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [])
  const toggle = (before: EmailPreferences, digest: boolean) => {
    setPrefs({ ...before, digest }) // shown at once; put back if the server refuses
    setSaid('')
    void action.run(async () => {
      try {
        setPrefs(await api.saveEmailPreferences(digest))
      } catch (e) {
        setPrefs(before)
        throw e
      }
      setSaid(digest ? 'Digest on.' : 'Digest off.')
    })
  }
  return (
    <div className="prefs">
      <label className="check">
        <input
          type="checkbox"
          checked={prefs?.digest ?? false}
          disabled={!prefs || action.busy}
          onChange={(e) => prefs && toggle(prefs, e.target.checked)}
        />
        E-mail me a digest of unread notifications
      </label>
      {prefs && (
        <p className="muted small">
          {digestCadence(prefs.interval_seconds)}, only when you have unread notifications.
          {!prefs.available && ' This server has no e-mail set up yet, so nothing is sent until it has.'}
        </p>
      )}
      <ErrorText error={action.error} />
      <p role="status" className="muted small">
        {said}
      </p>
    </div>
  )
}

/** Export everything Plait keeps about the account, or delete it. */
export function YourData({ email }: { email: string }) {
  const [deleting, setDeleting] = useState(false)
  const action = useAction()
  const download = () =>
    void action.run(async () => {
      const data = await api.exportMe()
      const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: 'application/json' }))
      const a = document.createElement('a')
      a.href = url
      a.download = exportFileName()
      document.body.append(a)
      a.click()
      a.remove()
      setTimeout(() => URL.revokeObjectURL(url), 60_000) // the download has begun by then
    })
  return (
    <section aria-labelledby="data-heading" className="account-section">
      <h2 id="data-heading">Your data</h2>
      <p className="muted">
        The export is a JSON file of your profile, memberships, notifications, preferences, sessions and tokens (never
        the tokens themselves). A workspace's tasks are exported from the workspace.
      </p>
      <div className="row-buttons">
        <button type="button" disabled={action.busy} onClick={download}>
          Export my data
        </button>
        <button type="button" className="danger" onClick={() => setDeleting(true)}>
          Delete account…
        </button>
      </div>
      <ErrorText error={action.error} />
      {deleting && <DeleteAccount email={email} onClose={() => setDeleting(false)} />}
    </section>
  )
}

function DeleteAccount({ email, onClose }: { email: string; onClose: () => void }) {
  const [typed, setTyped] = useState('')
  const action = useAction()
  const remove = () =>
    void action.run(async () => {
      await api.deleteMe()
      useAuth.getState().signOut() // every session of the account has ended: to the sign-in page
    })
  return (
    <Dialog label="Delete your account" onClose={onClose} className="delete-account">
      <h2>Delete your account?</h2>
      <p>
        Your memberships end, workspaces where you are the only member are deleted, and you are signed out everywhere.
        What you wrote in shared workspaces stays, shown as “Deleted user”. This cannot be undone.
      </p>
      <label>
        Type your e-mail address to confirm
        <input value={typed} onChange={(e) => setTyped(e.target.value)} autoComplete="off" spellCheck={false} />
      </label>
      <ErrorText error={action.error} />
      <div className="confirm-actions">
        <button type="button" onClick={onClose}>
          Cancel
        </button>
        <button type="button" className="danger" disabled={action.busy || !confirmsDeletion(typed, email)} onClick={remove}>
          Delete my account
        </button>
      </div>
    </Dialog>
  )
}
