import { useEffect, useRef, useState } from 'react'
import { api, ApiError } from '../api'
import { useAuth } from '../state/auth'
import { useWorkspaces } from '../state/workspaces'
import { navigate } from '../router'
import { AuthPage } from './AuthPage'

function inviteMessage(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 404) return 'This invite link is not valid: it may have been revoked or mistyped.'
    if (e.status === 410) return 'This invite link has expired or has already been used the maximum number of times.'
    return e.message
  }
  return String(e)
}

/** /invite/{token}: sign up (or in) first if needed, then join and open the workspace. */
export function InvitePage({ token }: { token: string }) {
  const { token: session, me } = useAuth()
  const [error, setError] = useState<string | null>(null)
  const started = useRef(false)

  useEffect(() => {
    if (!session || started.current) return
    started.current = true
    api
      .acceptInvite(token)
      .then(async ({ workspace_id }) => {
        if (me) await useWorkspaces.getState().load(me.id).catch(() => {})
        navigate(`/w/${workspace_id}`, { replace: true })
      })
      .catch((e: unknown) => setError(inviteMessage(e)))
  }, [session, token, me])

  if (!session) {
    return (
      <AuthPage
        mode="signup"
        next={`/invite/${token}`}
        intro="You have been invited to a Plait workspace. Create an account, or sign in, to join it."
      />
    )
  }
  return (
    <main className="auth" id="main">
      <div className="auth-card">
        <h1 className="brand">Plait</h1>
        {error ? (
          <>
            <p className="error" role="alert">
              {error}
            </p>
            <button type="button" className="primary" onClick={() => navigate('/')}>
              Go to my workspaces
            </button>
          </>
        ) : (
          <p role="status">Joining the workspace…</p>
        )}
      </div>
    </main>
  )
}
