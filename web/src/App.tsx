import { lazy, type ReactNode, Suspense, useEffect, useState } from 'react'
import { api, ApiError, itemsOf, type PresenceEntry, type Workspace } from './api'
import { currentPath, landingAfterSignIn, lastBoardKey, navigate, type Route, useRoute } from './router'
import { tokenSubject, useAuth } from './state/auth'
import { useWorkspaces } from './state/workspaces'
import { useNotifications } from './state/notifications'
import { selectConnection, useBoard } from './state/board'
import { showError, useToasts } from './state/toasts'
import { colorFor, type Peer } from './doc/presence'
import { type ThemeChoice, useTheme } from './state/theme'
import { AuthPage } from './components/AuthPage'
import { InvitePage } from './components/InvitePage'
import { ResetPasswordPage } from './components/ResetPasswordPage'
import { Home } from './components/Home'
import { Board } from './components/Board'
import { MembersPage } from './components/Members'
import { Bell, PreferencesPage } from './components/Notifications'
import { AccountPage } from './components/AccountPage'
import { Avatar, ConnectionPill, Toaster } from './components/common'

/** Only administrators open it: its own chunk, fetched on the first visit to /admin. */
const AdminPage = lazy(() => import('./components/AdminPage'))

function Redirect({ to }: { to: string }) {
  useEffect(() => navigate(to, { replace: true }), [to])
  return null
}

export function App() {
  const route = useRoute()
  const token = useAuth((s) => s.token)
  let body
  if (route.name === 'invite') body = <InvitePage token={route.token} />
  else if (route.name === 'reset') body = <ResetPasswordPage token={route.token} />
  else if (!token) {
    if (route.name === 'signin' || route.name === 'signup') body = <AuthPage mode={route.name} next={route.next} />
    else body = <Redirect to={`/signin${currentPath() === '/' ? '' : `?next=${encodeURIComponent(currentPath())}`}`} />
  } else if (route.name === 'signin' || route.name === 'signup')
    // The one place that decides where signing in lands (the token is set before the account is read).
    body = <Redirect to={landingAfterSignIn(route.next, tokenSubject(token))} />
  else body = <Shell route={route} token={token} />
  return (
    <>
      <a href="#main" className="skip">
        Skip to content
      </a>
      {body}
      <Toaster />
    </>
  )
}

function workspaceIdOf(route: Route): string | null {
  return route.name === 'board' || route.name === 'members' ? route.wid : null
}

/** Signed-in frame: header (workspace switcher, presence, connection, bell, account) and the page. */
function Shell({ route, token }: { route: Route; token: string }) {
  const { me, loadMe, signOut } = useAuth()
  const { list, load, loaded } = useWorkspaces()
  const wid = workspaceIdOf(route)

  // The account as cached (this browser, last time) shows at once; it is read again on every page load (quietly
  // when cached), so what changed meanwhile (the name, instance administration) shows without signing in again.
  const uid = me?.id
  const cached = uid !== undefined
  useEffect(() => {
    void loadMe().catch((e: unknown) => !cached && showError(e))
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [loadMe])
  useEffect(() => {
    if (uid) void load(uid).catch((e: unknown) => !(e instanceof ApiError && e.status === 0) && showError(e))
  }, [uid, load])
  useEffect(() => {
    useNotifications.getState().start(token)
    return () => useNotifications.getState().stop()
  }, [token])
  useEffect(() => {
    if (!wid) useBoard.getState().close()
  }, [wid])
  // Signed out (this frame goes): the board's socket must not go on syncing with the ended session's token.
  useEffect(() => () => useBoard.getState().close(), [])

  let page
  if (route.name === 'home') page = <Home />
  else if (route.name === 'preferences') page = <PreferencesPage />
  else if (route.name === 'account') page = <AccountPage />
  else if (route.name === 'admin')
    page = (
      <Suspense fallback={<Loading />}>
        <AdminPage />
      </Suspense>
    )
  else if (route.name === 'board' || route.name === 'members') page = me ? <WorkspaceRoute route={route} /> : <Loading />
  else page = <NotFound />

  return (
    <div className="app">
      <header className="topbar">
        <a
          className="brand"
          href="/"
          onClick={(e) => {
            e.preventDefault()
            navigate('/')
          }}
        >
          Plait
        </a>
        <label className="switcher">
          <span className="sr-only">Switch workspace</span>
          <select
            value={wid ?? ''}
            onChange={(e) => navigate(e.target.value ? `/w/${e.target.value}` : '/')}
            aria-label="Switch workspace"
          >
            <option value="">All workspaces</option>
            {list.map((w) => (
              <option key={w.id} value={w.id}>
                {w.name}
              </option>
            ))}
          </select>
        </label>
        {/* No members link or presence for a workspace the server says this user is not (or no longer) in. */}
        {wid && (!loaded || list.some((w) => w.id === wid)) && <WorkspaceStatus wid={wid} />}
        <span className="spacer" />
        <ThemeMenu />
        <Bell />
        <div className="account">
          <span className="me" title={me?.email}>
            {me && <Avatar name={me.display_name} color={colorFor(me.id)} size={26} />}
            <span className="me-name">{me?.display_name}</span>
          </span>
          <nav aria-label="Account" className="account-links">
            <InternalLink to="/settings/account" className="small">
              Account
            </InternalLink>
            {me?.is_admin && (
              <InternalLink to="/admin" className="small">
                Admin
              </InternalLink>
            )}
          </nav>
          <button type="button" className="small" onClick={() => signOut()}>
            Sign out
          </button>
        </div>
      </header>
      {page}
    </div>
  )
}

/** A link the router follows without reloading the page. */
function InternalLink({ to, className, children }: { to: string; className?: string; children: ReactNode }) {
  return (
    <a
      href={to}
      className={className}
      onClick={(e) => {
        e.preventDefault()
        navigate(to)
      }}
    >
      {children}
    </a>
  )
}

/** Light, dark, or whatever the system prefers (the default). */
function ThemeMenu() {
  const { choice, choose } = useTheme()
  return (
    <label className="theme-choice">
      <span className="sr-only">Theme</span>
      <select value={choice} onChange={(e) => choose(e.target.value as ThemeChoice)} aria-label="Theme">
        <option value="system">System theme</option>
        <option value="light">Light</option>
        <option value="dark">Dark</option>
      </select>
    </label>
  )
}

/** Who is here (awareness, plus the server's presence list across nodes) and the connection state. */
function WorkspaceStatus({ wid }: { wid: string }) {
  const peers = useBoard((s) => s.peers)
  const state = useBoard(selectConnection)
  const open = useBoard((s) => s.workspaceId === wid)
  const [remote, setRemote] = useState<PresenceEntry[]>([])
  useEffect(() => {
    let stop = false
    const poll = () =>
      api
        .presence(wid)
        .then((p) => !stop && setRemote(itemsOf(p)))
        .catch(() => {})
    void poll()
    const t = setInterval(poll, 15000)
    return () => {
      stop = true
      clearInterval(t)
    }
  }, [wid])
  const online: Peer[] = [...peers]
  if (state === 'connected') {
    for (const r of remote) {
      if (!online.some((p) => p.id === r.user_id))
        online.push({ id: r.user_id, name: r.display_name, color: colorFor(r.user_id), viewing: [], self: false })
    }
  }
  return (
    <div className="ws-status">
      <ul className="presence" aria-label={`Online now: ${online.map((p) => (p.self ? 'you' : p.name)).join(', ')}`} data-testid="presence">
        {online.slice(0, 6).map((p) => (
          <li key={p.id}>
            <Avatar name={p.name} color={p.color} size={26} title={p.self ? `${p.name} (you)` : `${p.name} is online`} />
          </li>
        ))}
        {online.length > 6 && <li className="more">+{online.length - 6}</li>}
      </ul>
      {open && <ConnectionPill state={state} />}
      <a
        className="small"
        href={`/w/${wid}/members`}
        onClick={(e) => {
          e.preventDefault()
          navigate(`/w/${wid}/members`)
        }}
      >
        Members
      </a>
    </div>
  )
}

function Loading() {
  return (
    <main className="page" id="main">
      <p role="status">Loading…</p>
    </main>
  )
}

function NotFound() {
  return (
    <main className="page" id="main">
      <h1>Page not found</h1>
      <p>
        <a href="/" onClick={(e) => (e.preventDefault(), navigate('/'))}>
          Go to your workspaces
        </a>
      </p>
    </main>
  )
}

function NoAccess() {
  return (
    <main className="page" id="main">
      <h1>No access</h1>
      <p role="alert" data-testid="no-access">
        You don't have access to this workspace (any more). It may have been deleted, or your membership was removed.
      </p>
      <button type="button" className="primary" onClick={() => navigate('/')}>
        Go to your workspaces
      </button>
    </main>
  )
}

/**
 * Board and members pages of one workspace: opens the Y.Doc session, keeps the caller's role fresh
 * (a demoted editor loses the editing controls), and turns the server's refusals into screens.
 */
function WorkspaceRoute({ route }: { route: Extract<Route, { name: 'board' | 'members' }> }) {
  const { me, token } = useAuth()
  const cached = useWorkspaces((s) => s.list.find((w) => w.id === route.wid)) ?? null
  const [workspace, setWorkspace] = useState<Workspace | null>(cached)
  const [denied, setDenied] = useState(false)
  const refusal = useBoard((s) => s.refusal)

  useEffect(() => {
    setDenied(false)
    setWorkspace(useWorkspaces.getState().list.find((w) => w.id === route.wid) ?? null)
    const refresh = () =>
      useWorkspaces
        .getState()
        .refreshWorkspace(route.wid)
        .then((w) => setWorkspace(w))
        .catch((e: unknown) => {
          if (e instanceof ApiError && (e.status === 404 || e.status === 403)) setDenied(true)
        })
    void refresh()
    // Whose cached members to show is known here (me), before the workspace list has loaded.
    const uid = useAuth.getState().me?.id
    void useWorkspaces
      .getState()
      .loadMembers(route.wid, uid)
      .catch(() => {})
    const onFocus = () => void refresh()
    window.addEventListener('focus', onFocus)
    const t = setInterval(refresh, 30000)
    return () => {
      window.removeEventListener('focus', onFocus)
      clearInterval(t)
    }
  }, [route.wid])

  useEffect(() => {
    if (cached && !workspace) setWorkspace(cached)
  }, [cached, workspace])

  useEffect(() => {
    if (!me || !token || denied) return
    const board = useBoard.getState()
    if (board.refusal && board.workspaceId === route.wid) return
    board.open(route.wid, token, { id: me.id, name: me.display_name })
  }, [route.wid, me, token, denied])

  // After the session opened (it needs to know which copy): a writer made a viewer drops its unsent edits.
  const role = (cached ?? workspace)?.role ?? null
  const sessionOpen = useBoard((s) => s.session !== null && s.workspaceId === route.wid)
  useEffect(() => {
    if (role && sessionOpen) useBoard.getState().noteRole(route.wid, role)
  }, [role, sessionOpen, route.wid])

  useEffect(() => {
    if (!refusal) return
    if (refusal.kind === 'noaccess') {
      // The local copy is kept: clearing it on a refusal (or a misconfigured origin) could lose edits.
      useBoard.getState().close()
      useWorkspaces.getState().forget(route.wid)
      setDenied(true)
    } else if (refusal.kind === 'toolarge') {
      useToasts.getState().push(
        { kind: 'error', text: 'This workspace has reached its size limit: your latest changes could not be saved.' },
        15000,
      )
    } else {
      useToasts.getState().push({ kind: 'error', text: `The server closed the connection (${refusal.code}).` })
    }
  }, [refusal, route.wid])

  useEffect(() => {
    if (denied) {
      useBoard.getState().close()
      useWorkspaces.getState().forget(route.wid)
    }
  }, [denied, route.wid])

  // The list entry is the freshest (every refresh and rename upserts into it).
  const shown = cached ?? workspace
  const name = shown?.name ?? null
  useEffect(() => {
    if (!name || denied) return
    document.title = route.name === 'members' ? `Members · ${name} · Plait` : `${name} · Plait`
    return () => {
      document.title = 'Plait'
    }
  }, [name, denied, route.name])
  // Sign-in returns here next time (AuthPage), unless this board is no longer open to the user.
  const uid = me?.id
  useEffect(() => {
    if (!uid) return
    const key = lastBoardKey(uid)
    if (denied) {
      if (localStorage.getItem(key) === `/w/${route.wid}`) localStorage.removeItem(key)
    } else if (shown && route.name === 'board') localStorage.setItem(key, `/w/${route.wid}`)
  }, [uid, denied, shown, route.name, route.wid])
  if (denied) return <NoAccess />
  if (!shown) return <Loading />
  if (route.name === 'members') return <MembersPage workspace={shown} />
  return <Board workspace={shown} taskId={route.taskId} />
}
