/**
 * Who is signed in. The access token (short-lived) and the refresh token are kept in localStorage so a
 * reload stays signed in. The access token is renewed before it expires, when the browser comes back
 * online, and when a request or the sync socket is refused with 401/4401; only when renewing fails (the
 * session was ended: logout elsewhere, password change, or expiry) is the user signed out, with a message.
 * Tabs share the tokens: one tab renews at a time (Web Locks) and the others adopt what it stored, because
 * a refresh token used twice ends the whole session. A renewal that cannot reach the server (the `online` event
 * fires before the network carries requests; a server restarting) is retried, never taken for an ended session.
 */
import { create } from 'zustand'
import { api, type Me, setRefresher, setToken, setUnauthorizedHandler, type TokenPair } from '../api'
import { currentPath, navigate } from '../router'
import { cache } from './cache'

const TOKEN_KEY = 'plait.token'
const REFRESH_KEY = 'plait.refresh'
export const SESSION_EXPIRED = 'Your session has expired. Please sign in again.'

/** Seconds since the epoch at which a JWT expires, or null if it cannot be read. */
export function tokenExpiry(jwt: string): number | null {
  try {
    const payload = jwt.split('.')[1]
    const json = JSON.parse(atob(payload.replace(/-/g, '+').replace(/_/g, '/'))) as { exp?: unknown }
    return typeof json.exp === 'number' ? json.exp : null
  } catch {
    return null
  }
}

export function tokenSubject(jwt: string): string | null {
  try {
    const json = JSON.parse(atob(jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))) as { sub?: unknown }
    return typeof json.sub === 'string' ? json.sub : null
  } catch {
    return null
  }
}

interface AuthState {
  token: string | null
  me: Me | null
  /** Why the user was sent to the sign-in page, shown there. */
  notice: string | null
  signIn: (email: string, password: string) => Promise<void>
  signUp: (email: string, password: string, displayName: string) => Promise<void>
  signOut: (notice?: string | null) => void
  loadMe: () => Promise<void>
}

let renewTimer: ReturnType<typeof setTimeout> | undefined

/** Whether a token expires within `marginS` seconds (or cannot be read). */
function expiresWithin(jwt: string, marginS: number): boolean {
  const exp = tokenExpiry(jwt)
  return exp === null || exp * 1000 - Date.now() <= marginS * 1000
}

/** Renew a while before the access token expires (a fifth of its life, at most a minute, before). */
function scheduleRenewal(jwt: string): void {
  clearTimeout(renewTimer)
  const exp = tokenExpiry(jwt)
  const iat = (() => {
    try {
      const v = (JSON.parse(atob(jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))) as { iat?: unknown }).iat
      return typeof v === 'number' ? v : null
    } catch {
      return null
    }
  })()
  if (exp === null) return
  const margin = Math.min(60, iat === null ? 60 : (exp - iat) / 5)
  const ms = (exp - margin) * 1000 - Date.now()
  // setTimeout's limit is ~24.8 days; tokens live minutes.
  if (ms < 2 ** 31 - 1) renewTimer = setTimeout(() => renewUntilAnswered(SESSION_EXPIRED), Math.max(ms, 0))
}

const FIRST_RETRY_MS = 1000
let retryTimer: ReturnType<typeof setTimeout> | undefined
let retryMs = FIRST_RETRY_MS

/**
 * Renew until the server answers: when it cannot be reached, try again (1 s, doubling up to 30 s, and at once
 * when the browser comes back online); only the server's refusal ends the session, with `notice`.
 */
function renewUntilAnswered(notice: string): void {
  clearTimeout(retryTimer)
  renew()
    .then((t) => {
      retryMs = FIRST_RETRY_MS
      if (t === null) endSession(notice)
    })
    .catch(() => {
      retryTimer = setTimeout(() => renewUntilAnswered(notice), retryMs)
      retryMs = Math.min(retryMs * 2, 30_000)
    })
}

function store(pair: TokenPair): void {
  localStorage.setItem(TOKEN_KEY, pair.access_token)
  localStorage.setItem(REFRESH_KEY, pair.refresh_token)
}

function adopt(access: string): void {
  setToken(access)
  scheduleRenewal(access)
  if (useAuth.getState().token !== access) useAuth.setState({ token: access, notice: null })
}

let inflight: Promise<string | null> | null = null

/**
 * A fresh access token: from another tab if it renewed meanwhile, else from POST /api/auth/refresh.
 * Null when the session is over (no refresh token, or the server refused it); throws when offline.
 */
export function renew(): Promise<string | null> {
  if (!inflight) {
    const run = async (): Promise<string | null> => {
      const stored = localStorage.getItem(TOKEN_KEY)
      const current = useAuth.getState().token
      if (stored && stored !== current && !expiresWithin(stored, 5)) {
        adopt(stored)
        return stored
      }
      const refreshToken = localStorage.getItem(REFRESH_KEY)
      if (!refreshToken) return null
      const pair = await api.refresh(refreshToken)
      if (!pair) {
        if (localStorage.getItem(REFRESH_KEY) === refreshToken) localStorage.removeItem(REFRESH_KEY)
        return null
      }
      store(pair)
      adopt(pair.access_token)
      return pair.access_token
    }
    const locks = typeof navigator !== 'undefined' ? navigator.locks : undefined
    const p = locks ? locks.request('plait-refresh', run) : run()
    inflight = p.finally(() => {
      inflight = null
    })
  }
  return inflight
}

/** Forget the session here and go to the sign-in page (with `notice` when it was not the user's choice). */
function endSession(notice: string | null): void {
  clearTimeout(renewTimer)
  clearTimeout(retryTimer)
  setToken(null)
  localStorage.removeItem(TOKEN_KEY)
  localStorage.removeItem(REFRESH_KEY)
  useAuth.setState({ token: null, me: null, notice })
  const path = currentPath()
  if (!path.startsWith('/signin') && !path.startsWith('/signup')) {
    const keep = notice && path !== '/' && !path.startsWith('/invite/') ? `?next=${encodeURIComponent(path)}` : ''
    const invite = path.startsWith('/invite/') ? path : null
    navigate(invite ?? `/signin${keep}`, { replace: true })
  }
}

let expiredAtStart = false

function initialToken(): string | null {
  const saved = localStorage.getItem(TOKEN_KEY)
  if (!saved) return null
  const exp = tokenExpiry(saved)
  if (exp !== null && exp * 1000 <= Date.now() && !localStorage.getItem(REFRESH_KEY)) {
    localStorage.removeItem(TOKEN_KEY)
    expiredAtStart = true
    return null
  }
  // Expired but renewable: stay signed in; it is renewed at once (below), and requests wait for that.
  return saved
}

const startToken = initialToken()
setToken(startToken)
const startSub = startToken ? tokenSubject(startToken) : null
const cachedMe = startSub ? cache.get<Me>(`me:${startSub}`) : null

export const useAuth = create<AuthState>((set, get) => ({
  token: startToken,
  me: cachedMe,
  notice: expiredAtStart ? SESSION_EXPIRED : null,

  async signIn(email, password) {
    const pair = await api.login(email, password)
    setToken(pair.access_token)
    store(pair)
    scheduleRenewal(pair.access_token)
    set({ token: pair.access_token, notice: null })
    await get().loadMe()
  },

  async signUp(email, password, displayName) {
    await api.register(email, password, displayName)
    await get().signIn(email, password)
  },

  signOut(notice = null) {
    if (notice === null) {
      // The user's choice: end the session on the server too (best effort), then here.
      if (get().token) void api.logout().catch(() => {})
      endSession(null)
      return
    }
    // Refused (a 401, or a socket closed 4401): renew first; only a session that cannot be renewed ends.
    // Already signed out (the socket of a session just logged out closes 4401 late): nothing to renew.
    if (get().token) renewUntilAnswered(notice)
  },

  async loadMe() {
    const me = await api.me()
    cache.set(`me:${me.id}`, me)
    set({ me })
  },
}))

if (startToken) {
  if (expiresWithin(startToken, 5)) renewUntilAnswered(SESSION_EXPIRED)
  else scheduleRenewal(startToken)
}

setRefresher(renew)
setUnauthorizedHandler(() => {
  if (useAuth.getState().token) endSession(SESSION_EXPIRED)
})

// Back online after a while (the laptop slept, the train left the tunnel): renew before syncing resumes.
window.addEventListener('online', () => {
  const t = useAuth.getState().token
  if (t && expiresWithin(t, 60)) renewUntilAnswered(SESSION_EXPIRED)
})

// Another tab renewed, signed in or signed out.
window.addEventListener('storage', (e) => {
  if (e.key !== TOKEN_KEY) return
  if (e.newValue) {
    if (e.newValue !== useAuth.getState().token && !expiresWithin(e.newValue, 5)) adopt(e.newValue)
  } else if (useAuth.getState().token) endSession(null)
})
