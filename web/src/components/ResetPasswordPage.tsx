import { type FormEvent, useState } from 'react'
import { request } from '../api'
import { navigate } from '../router'
import { ErrorText, useAction } from './common'

/** Password reset: without a token, ask for a link by e-mail; with the mailed link's token, set a new password. */
export function ResetPasswordPage({ token }: { token: string | null }) {
  const [email, setEmail] = useState('')
  const [password, setPassword] = useState('')
  const [done, setDone] = useState(false)
  const { busy, error, run } = useAction()

  const submit = (e: FormEvent) => {
    e.preventDefault()
    void run(async () => {
      if (token) await request<void>('POST', '/api/auth/password-reset/confirm', { token, new_password: password })
      else await request<void>('POST', '/api/auth/password-reset', { email: email.trim() })
      setDone(true)
    })
  }
  const signIn = (
    <a
      href="/signin"
      onClick={(e) => {
        e.preventDefault()
        navigate('/signin')
      }}
    >
      Sign in
    </a>
  )

  return (
    <main className="auth" id="main">
      <div className="auth-card">
        <h1 className="brand">Plait</h1>
        <h2>{token ? 'Choose a new password' : 'Reset your password'}</h2>
        {done ? (
          <p className="notice" role="status">
            {token
              ? 'Your password is changed. You were signed out everywhere; sign in with the new password.'
              : 'If an account has this address, an e-mail with a link is on its way. The link works once, for an hour.'}
          </p>
        ) : (
          <form onSubmit={submit} aria-label={token ? 'Choose a new password' : 'Reset your password'}>
            {token ? (
              <label>
                New password
                <input
                  type="password"
                  value={password}
                  onChange={(e) => setPassword(e.target.value)}
                  required
                  minLength={8}
                  autoComplete="new-password"
                />
              </label>
            ) : (
              <label>
                Email
                <input type="email" value={email} onChange={(e) => setEmail(e.target.value)} required autoComplete="email" />
              </label>
            )}
            {token && <p className="hint">At least 8 characters.</p>}
            <ErrorText error={error} />
            <button type="submit" className="primary" disabled={busy}>
              {busy ? 'Please wait…' : token ? 'Set password' : 'Send me a link'}
            </button>
          </form>
        )}
        <p className="switch">{signIn}</p>
      </div>
    </main>
  )
}
