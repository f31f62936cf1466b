import { useEffect, useRef, useState } from 'react'
import { api, ApiError, type InvitePreview } from '../api'
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

const ROLE_WORDS: Record<string, string> = { admin: 'an admin', editor: 'an editor', viewer: 'a viewer' }

/** What the link leads to, said before anyone is asked to create an account. */
function describe(p: InvitePreview): string {
  const who = p.inviter ? `${p.inviter} invited you` : 'You have been invited'
  return `${who} to join “${p.workspace_name}” as ${ROLE_WORDS[p.role] ?? p.role}.`
}

/** /invite/{token}: a dead link says so at once; otherwise sign up (or in) if needed, then join. */
export function InvitePage({ token }: { token: string }) {
  const { token: session, me } = useAuth()
  const [error, setError] = useState<string | null>(null)
  const [preview, setPreview] = useState<InvitePreview | null>(null)
  const started = useRef(false)

  useEffect(() => {
    api
      .previewInvite(token)
      .then((p) => {
        setPreview(p)
        if (p.status === 'expired') setError('This invite link has expired. Ask for a new one.')
        if (p.status === 'used_up') setError('This invite link has already been used as many times as allowed.')
      })
      .catch((e: unknown) => setError(inviteMessage(e)))
  }, [token])

  useEffect(() => {
    if (!session || started.current || preview?.status !== 'valid') return
    started.current = true
    api
      .acceptInvite(token)
      .then(async ({ workspace_id }) => {
        if (me) await useWorkspaces.getState().load(me.id).catch(() => {})
        navigate(`/w/${workspace_id}`, { replace: true })
      })
      .catch((e: unknown) => setError(inviteMessage(e)))
  }, [session, token, me, preview])

  if (!session && preview?.status === 'valid' && !error) {
    return (
      <AuthPage
        mode="signup"
        next={`/invite/${token}`}
        intro={`${describe(preview)} Create an account, or sign in, to join it.`}
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
              {session ? 'Go to my workspaces' : 'Go to Plait'}
            </button>
          </>
        ) : (
          <p role="status">{preview ? `${describe(preview)} Joining…` : 'Checking the invite link…'}</p>
        )}
      </div>
    </main>
  )
}
