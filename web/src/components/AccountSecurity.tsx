import { type FormEvent, useCallback, useEffect, useState } from 'react'
import { type AccessToken, api, type TokenScope } from '../api'
import { expiryDays, MIN_PASSWORD, passwordProblem, SCOPE_LABELS, tokenSummary, widestScope } from './account'
import { ErrorText, useAction, useConfirm } from './common'

/** Change the password: the server keeps this session and ends every other one. */
export function PasswordForm({ onChanged }: { onChanged: () => void }) {
  const [current, setCurrent] = useState('')
  const [next, setNext] = useState('')
  const [confirm, setConfirm] = useState('')
  const [done, setDone] = useState(false)
  const action = useAction()
  const submit = (e: FormEvent) => {
    e.preventDefault()
    setDone(false)
    const problem = passwordProblem(current, next, confirm)
    if (problem) {
      action.setError(problem)
      return
    }
    void action.run(async () => {
      await api.changePassword(current, next)
      setCurrent('')
      setNext('')
      setConfirm('')
      setDone(true)
      onChanged()
    })
  }
  return (
    <section aria-labelledby="password-heading" className="account-section">
      <h2 id="password-heading">Password</h2>
      <form className="password-form" onSubmit={submit} aria-label="Change password">
        <label>
          Current password
          <input type="password" value={current} onChange={(e) => setCurrent(e.target.value)} autoComplete="current-password" />
        </label>
        <label>
          New password
          <input
            type="password"
            value={next}
            onChange={(e) => setNext(e.target.value)}
            autoComplete="new-password"
            aria-describedby="password-rule"
          />
        </label>
        <label>
          Confirm new password
          <input type="password" value={confirm} onChange={(e) => setConfirm(e.target.value)} autoComplete="new-password" />
        </label>
        <p id="password-rule" className="muted small">
          At least {MIN_PASSWORD} characters. Changing it signs your other devices out.
        </p>
        <ErrorText error={action.error} />
        <div>
          <button type="submit" className="primary" disabled={action.busy}>
            Change password
          </button>
        </div>
        <p role="status" className="muted small">
          {done ? 'Password changed. Your other devices were signed out.' : ''}
        </p>
      </form>
    </section>
  )
}

/** Personal access tokens for scripts: made here (the token is shown once), listed, deleted. */
export function Tokens() {
  const [tokens, setTokens] = useState<AccessToken[] | null>(null)
  const [fresh, setFresh] = useState<{ name: string; token: string } | null>(null)
  const action = useAction()
  const confirm = useConfirm()
  const refresh = useCallback(async () => setTokens(await api.tokens()), [])
  useEffect(() => {
    void action.run(refresh)
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [refresh])
  const remove = async (t: AccessToken) => {
    const ok = await confirm.ask(
      `Delete the token “${t.name}”? Scripts and integrations that use it stop working at once.`,
      'Delete token',
    )
    if (!ok) return
    await action.run(async () => {
      await api.deleteToken(t.id)
      await refresh()
    })
  }
  return (
    <section aria-labelledby="tokens-heading" className="account-section">
      <h2 id="tokens-heading">Personal access tokens</h2>
      <p className="muted">
        For scripts and integrations: send one as <code>Authorization: Bearer …</code>. A token never does more than
        your role in a workspace allows.
      </p>
      <NewToken
        onCreated={async (made) => {
          setFresh(made)
          await refresh()
        }}
      />
      {fresh && <FreshToken {...fresh} onDone={() => setFresh(null)} />}
      <ErrorText error={action.error} />
      {tokens && tokens.length === 0 && <p className="muted">No tokens yet.</p>}
      {tokens && tokens.length > 0 && (
        <ul className="sessions" aria-labelledby="tokens-heading">
          {tokens.map((t) => (
            <li key={t.id} className="session-row" data-testid="token-row">
              <div className="token-text">
                <strong>{t.name}</strong>
                <span className="badge">{SCOPE_LABELS[widestScope(t.scopes)]}</span>
                <div className="muted small">{tokenSummary(t)}</div>
              </div>
              <button
                type="button"
                className="danger small"
                disabled={action.busy}
                aria-label={`Delete token ${t.name}`}
                onClick={() => void remove(t)}
              >
                Delete
              </button>
            </li>
          ))}
        </ul>
      )}
      {confirm.dialog}
    </section>
  )
}

function NewToken({ onCreated }: { onCreated: (made: { name: string; token: string }) => Promise<void> }) {
  const [name, setName] = useState('')
  const [scope, setScope] = useState<TokenScope>('read')
  const [days, setDays] = useState('')
  const action = useAction()
  const submit = (e: FormEvent) => {
    e.preventDefault()
    const expiry = expiryDays(days)
    if (typeof expiry === 'string') {
      action.setError(expiry)
      return
    }
    void action.run(async () => {
      const made = await api.createToken(name.trim(), [scope], expiry)
      setName('')
      setDays('')
      await onCreated({ name: made.name, token: made.token })
    })
  }
  return (
    <form className="inline-form" onSubmit={submit} aria-label="Create a token">
      <label className="grow">
        Name
        <input value={name} onChange={(e) => setName(e.target.value)} required maxLength={100} placeholder="CI deploy" />
      </label>
      <label>
        Access
        <select value={scope} onChange={(e) => setScope(e.target.value as TokenScope)}>
          {(Object.keys(SCOPE_LABELS) as TokenScope[]).map((s) => (
            <option key={s} value={s}>
              {SCOPE_LABELS[s]}
            </option>
          ))}
        </select>
      </label>
      <label>
        Expires after (days)
        <input value={days} onChange={(e) => setDays(e.target.value)} inputMode="numeric" placeholder="never" className="narrow" />
      </label>
      <button type="submit" className="primary" disabled={action.busy}>
        Create token
      </button>
      <ErrorText error={action.error} />
    </form>
  )
}

function FreshToken({ name, token, onDone }: { name: string; token: string; onDone: () => void }) {
  const [copied, setCopied] = useState<string | null>(null)
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(token)
      setCopied('Copied to the clipboard.')
    } catch {
      setCopied('Copying is not allowed here: select the token and copy it yourself.')
    }
  }
  return (
    <div className="new-invite new-token">
      <label>
        New token “{name}”: copy it now, you won't see it again.
        <input readOnly value={token} onFocus={(e) => e.target.select()} data-testid="new-token" />
      </label>
      <button type="button" onClick={() => void copy()}>
        Copy token
      </button>
      <button type="button" onClick={onDone}>
        Done, hide the token
      </button>
      <span role="status" className="muted small">
        {copied}
      </span>
    </div>
  )
}
