import { type FormEvent, useState } from 'react'
import { useAuth } from '../state/auth'
import { navigate } from '../router'
import { ErrorText, useAction } from './common'

/** Sign in or sign up; `next` is where to go afterwards (an invite link, a board). */
export function AuthPage({ mode, next, intro }: { mode: 'signin' | 'signup'; next: string | null; intro?: string }) {
  const { signIn, signUp, notice } = useAuth()
  const [email, setEmail] = useState('')
  const [password, setPassword] = useState('')
  const [name, setName] = useState('')
  const { busy, error, run } = useAction()

  // Once signed in, the app leaves this page by itself (App: landingAfterSignIn; an invite page stays).
  const submit = (e: FormEvent) => {
    e.preventDefault()
    void run(async () => {
      if (mode === 'signup') await signUp(email.trim(), password, name.trim())
      else await signIn(email.trim(), password)
    })
  }
  const other = mode === 'signin' ? 'signup' : 'signin'
  const otherHref = `/${other}${next ? `?next=${encodeURIComponent(next)}` : ''}`

  return (
    <main className="auth" id="main">
      <div className="auth-card">
        <h1 className="brand">Plait</h1>
        {intro && <p className="intro">{intro}</p>}
        {notice && mode === 'signin' && (
          <p className="notice" role="status">
            {notice}
          </p>
        )}
        <h2>{mode === 'signin' ? 'Sign in' : 'Create an account'}</h2>
        <form onSubmit={submit} aria-label={mode === 'signin' ? 'Sign in' : 'Sign up'}>
          {mode === 'signup' && (
            <label>
              Display name
              <input value={name} onChange={(e) => setName(e.target.value)} required autoComplete="name" maxLength={100} />
            </label>
          )}
          <label>
            Email
            <input type="email" value={email} onChange={(e) => setEmail(e.target.value)} required autoComplete="email" />
          </label>
          <label>
            Password
            <input
              type="password"
              value={password}
              onChange={(e) => setPassword(e.target.value)}
              required
              minLength={mode === 'signup' ? 8 : undefined}
              autoComplete={mode === 'signup' ? 'new-password' : 'current-password'}
            />
          </label>
          {mode === 'signup' && <p className="hint">At least 8 characters.</p>}
          <ErrorText error={error} />
          <button type="submit" className="primary" disabled={busy}>
            {busy ? 'Please wait…' : mode === 'signin' ? 'Sign in' : 'Sign up'}
          </button>
        </form>
        <p className="switch">
          {mode === 'signin' ? 'New to Plait? ' : 'Already have an account? '}
          <a
            href={otherHref}
            onClick={(e) => {
              e.preventDefault()
              navigate(otherHref)
            }}
          >
            {mode === 'signin' ? 'Create an account' : 'Sign in'}
          </a>
        </p>
      </div>
    </main>
  )
}
