/** A few routes over the History API; the server answers every one of them with index.html. */
import { useSyncExternalStore } from 'react'

export type Route =
  | { name: 'home' }
  | { name: 'signin'; next: string | null }
  | { name: 'signup'; next: string | null }
  | { name: 'invite'; token: string }
  | { name: 'board'; wid: string; taskId: string | null }
  | { name: 'members'; wid: string }
  | { name: 'preferences' }
  | { name: 'account' }
  | { name: 'admin' }
  | { name: 'reset'; token: string | null }
  | { name: 'notfound' }

export function parseRoute(pathname: string, search: string): Route {
  const parts = pathname.split('/').filter(Boolean).map(decodeURIComponent)
  const next = new URLSearchParams(search).get('next')
  if (parts.length === 0) return { name: 'home' }
  if (parts[0] === 'signin' && parts.length === 1) return { name: 'signin', next }
  if (parts[0] === 'signup' && parts.length === 1) return { name: 'signup', next }
  if (parts[0] === 'invite' && parts.length === 2) return { name: 'invite', token: parts[1] }
  if (parts[0] === 'settings' && parts[1] === 'notifications') return { name: 'preferences' }
  if (parts[0] === 'settings' && parts[1] === 'account' && parts.length === 2) return { name: 'account' }
  if (parts[0] === 'admin' && parts.length === 1) return { name: 'admin' }
  if (parts[0] === 'reset-password' && parts.length === 1) return { name: 'reset', token: new URLSearchParams(search).get('token') }
  if (parts[0] === 'w' && parts.length >= 2) {
    if (parts.length === 2) return { name: 'board', wid: parts[1], taskId: null }
    if (parts[2] === 't' && parts.length === 4) return { name: 'board', wid: parts[1], taskId: parts[3] }
    if (parts[2] === 'members' && parts.length === 3) return { name: 'members', wid: parts[1] }
  }
  return { name: 'notfound' }
}

const listeners = new Set<() => void>()
function emit(): void {
  for (const l of listeners) l()
}
window.addEventListener('popstate', emit)

export function navigate(path: string, opts: { replace?: boolean } = {}): void {
  if (path === location.pathname + location.search) return
  if (opts.replace) history.replaceState(null, '', path)
  else history.pushState(null, '', path)
  emit()
}

function snapshot(): string {
  return location.pathname + location.search
}
function subscribe(cb: () => void): () => void {
  listeners.add(cb)
  return () => listeners.delete(cb)
}

export function useRoute(): Route {
  const key = useSyncExternalStore(subscribe, snapshot)
  const [pathname, search = ''] = key.split(/(?=\?)/)
  return parseRoute(pathname, search)
}

export function currentPath(): string {
  return snapshot()
}

/** The query part of the current URL (with its `?`, or ''): the board keeps its filters there. */
export function useQuery(): string {
  const key = useSyncExternalStore(subscribe, snapshot)
  const at = key.indexOf('?')
  return at >= 0 ? key.slice(at) : ''
}

/** Replace the query of the current path (no new history entry for every keystroke of a search). */
export function setQuery(query: string): void {
  navigate(location.pathname + query, { replace: true })
}

/** Where sign-in goes when no `next` says otherwise: the last board this user had open in this browser. */
export const lastBoardKey = (uid: string) => `plait.lastBoard.${uid}`

/**
 * Where a page that needs no session (sign-in, sign-up) sends the user once signed in: `next` when it is a path
 * of this site, else the last board `uid` had open here, else the workspace list.
 */
export function landingAfterSignIn(next: string | null, uid: string | null): string {
  if (next && next.startsWith('/') && !next.startsWith('//')) return next
  const last = uid ? localStorage.getItem(lastBoardKey(uid)) : null
  return last?.startsWith('/w/') ? last : '/'
}
