/**
 * Who is signed in. The token is kept in localStorage so a reload stays signed in; an expired
 * token (by its `exp`, or a 401 from any request) signs the user out with a message.
 */
import { create } from 'zustand'
import { api, type Me, setToken, setUnauthorizedHandler } from '../api'
import { currentPath, navigate } from '../router'
import { cache } from './cache'

const TOKEN_KEY = 'plait.token'

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

let expiryTimer: ReturnType<typeof setTimeout> | undefined

function scheduleExpiry(jwt: string): void {
  clearTimeout(expiryTimer)
  const exp = tokenExpiry(jwt)
  if (exp === null) return
  const ms = exp * 1000 - Date.now()
  // setTimeout's limit is ~24.8 days; tokens live hours.
  if (ms < 2 ** 31 - 1) {
    expiryTimer = setTimeout(() => useAuth.getState().signOut('Your session has expired. Please sign in again.'), Math.max(ms, 0))
  }
}

let expiredAtStart = false

function initialToken(): string | null {
  const saved = localStorage.getItem(TOKEN_KEY)
  if (!saved) return null
  const exp = tokenExpiry(saved)
  if (exp !== null && exp * 1000 <= Date.now()) {
    localStorage.removeItem(TOKEN_KEY)
    expiredAtStart = true
    return null
  }
  return saved
}

const startToken = initialToken()
setToken(startToken)
const startSub = startToken ? tokenSubject(startToken) : null
const cachedMe = startSub ? cache.get<Me>(`me:${startSub}`) : null

export const useAuth = create<AuthState>((set, get) => ({
  token: startToken,
  me: cachedMe,
  notice: expiredAtStart ? 'Your session has expired. Please sign in again.' : null,

  async signIn(email, password) {
    const { access_token } = await api.login(email, password)
    setToken(access_token)
    localStorage.setItem(TOKEN_KEY, access_token)
    scheduleExpiry(access_token)
    set({ token: access_token, notice: null })
    await get().loadMe()
  },

  async signUp(email, password, displayName) {
    await api.register(email, password, displayName)
    await get().signIn(email, password)
  },

  signOut(notice = null) {
    clearTimeout(expiryTimer)
    setToken(null)
    localStorage.removeItem(TOKEN_KEY)
    set({ token: null, me: null, notice })
    const path = currentPath()
    if (!path.startsWith('/signin') && !path.startsWith('/signup')) {
      const keep = notice && path !== '/' && !path.startsWith('/invite/') ? `?next=${encodeURIComponent(path)}` : ''
      const invite = path.startsWith('/invite/') ? path : null
      navigate(invite ?? `/signin${keep}`, { replace: true })
    }
  },

  async loadMe() {
    const me = await api.me()
    cache.set(`me:${me.id}`, me)
    set({ me })
  },
}))

if (startToken) scheduleExpiry(startToken)

setUnauthorizedHandler(() => {
  if (useAuth.getState().token) useAuth.getState().signOut('Your session has expired. Please sign in again.')
})
