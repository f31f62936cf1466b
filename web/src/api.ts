/**
 * REST client for the Plait API (contract: issues 2, 4 and 5). Every failure becomes an ApiError
 * with a message a person can read, so no screen has to guess what went wrong.
 */

export type Role = 'owner' | 'admin' | 'editor' | 'viewer'

export interface Me {
  id: string
  email: string
  display_name: string
  /** Instance administrator (GET /api/me says; PATCH /api/me's answer leaves it out). */
  is_admin?: boolean
}
/** One live sign-in of the account (GET /api/me/sessions). */
export interface SessionInfo {
  id: string
  created_at: string
  last_refreshed_at: string
  /** Its last request, open socket or stream (to the server's sweep interval, a minute), or its last refresh. */
  last_active_at: string
  expires_at: string
  user_agent: string | null
  current: boolean
}
export interface AdminUser {
  id: string
  email: string
  display_name: string
  created_at: string
  is_admin: boolean
  disabled_at: string | null
  workspaces: number
}
export interface AdminWorkspace {
  id: string
  name: string
  created_at: string
  members: number
  document_bytes: number
  last_activity_at: string
}
/** GET /api/admin/stats: the instance's accounts and workspaces, and the answering node's own figures. */
export interface AdminStats {
  users?: number
  admins?: number
  disabled_users?: number
  workspaces?: number
  node?: { id?: string; connected_sockets?: number; loaded_documents?: number; updates_last_minute?: number }
}
/** One audit log entry (docs/admin.md#audit-log); `actor` is null for the command line. */
export interface AuditEntry {
  id: string
  action: string
  created_at: string
  actor: { id: string | null; email: string | null } | null
  workspace_id: string | null
  target: { type: string; id: string | null } | null
  details: Record<string, unknown>
  address: string | null
}
/** What the instance's audit log can be narrowed to (the workspace's takes only `action`). */
export interface AuditFilter {
  action?: string
  actor_id?: string
  /** What happened to one account, invite, token or webhook. */
  target_id?: string
  workspace_id?: string
}
export interface Workspace {
  id: string
  name: string
  role: Role
  created_at: string
}
export interface Member {
  user_id: string
  display_name: string
  email: string
  role: Role
  joined_at: string
}
export interface Invite {
  id: string
  token?: string
  url?: string
  role: Role
  expires_at: string | null
  max_uses: number | null
  uses: number
  expired?: boolean
}
export interface InvitePreview {
  workspace_name: string
  inviter: string | null
  role: Role
  expires_at: string
  status: 'valid' | 'expired' | 'used_up'
}
export interface Notification {
  id: string
  type: string
  workspace_id: string
  task_id: string | null
  actor: { id: string; display_name: string } | null
  data: Record<string, unknown>
  created_at: string
  read_at: string | null
}
export interface Page<T> {
  items: T[]
  next_cursor: string | null
}
export interface PresenceEntry {
  user_id: string
  display_name: string
  connections: number
  since: string
  last_active: string
}
export interface ActivityEntry {
  id?: string | number
  task_id?: string
  kind?: 'created' | 'updated' | 'deleted' | string
  field?: string | null
  summary?: { inserted?: number; deleted?: number } | null
  old_value?: unknown
  new_value?: unknown
  actor?: { id: string; display_name: string } | null
  actor_id?: string
  created_at?: string
  [key: string]: unknown
}

export interface TokenPair {
  access_token: string
  refresh_token: string
  token_type: string
  expires_in: number
}
export type TokenScope = 'read' | 'write' | 'admin'
export interface AccessToken {
  id: string
  name: string
  scopes: TokenScope[]
  created_at: string
  expires_at: string | null
  last_used_at: string | null
}

/** The e-mail channel of notifications: the digest opt-in, its cadence, and whether this server can send mail. */
export interface EmailPreferences {
  digest: boolean
  interval_seconds: number
  available: boolean
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfter: number | null = null,
  ) {
    super(message)
    this.name = 'ApiError'
  }
}

/** Turn FastAPI's `{detail}` (a string, or pydantic's list of problems) into one sentence. */
export function describeDetail(status: number, body: unknown): string {
  const detail = (body as { detail?: unknown } | null)?.detail
  if (typeof detail === 'string' && detail) return detail
  if (Array.isArray(detail) && detail.length > 0) {
    return detail
      .map((d: { loc?: unknown[]; msg?: string }) => {
        const field = Array.isArray(d.loc) ? d.loc.filter((p) => p !== 'body').join('.') : ''
        return field ? `${field}: ${d.msg ?? 'invalid'}` : (d.msg ?? 'invalid')
      })
      .join('; ')
  }
  return FALLBACK[status] ?? `The server answered ${status}.`
}

const FALLBACK: Record<number, string> = {
  400: 'The request was not valid.',
  401: 'Your session has expired. Please sign in again.',
  403: "You don't have permission to do that.",
  404: 'Not found, or you no longer have access.',
  409: 'That conflicts with something that already exists.',
  410: 'This link has expired or has been used up.',
  422: 'Some of the values are not valid.',
  429: 'Too many attempts. Please wait and try again.',
  500: 'The server had a problem. Please try again.',
  503: 'The server is not ready. Please try again shortly.',
}

type Unauthorized = () => void
/** Renews the access token (POST /api/auth/refresh); resolves to the new one, or null when the session is over. */
type Refresher = () => Promise<string | null>
let token: string | null = null
let onUnauthorized: Unauthorized = () => {}
let refresher: Refresher | null = null

export function setToken(value: string | null): void {
  token = value
}
export function getToken(): string | null {
  return token
}
/** Called when an authenticated request is refused with 401 (expired or revoked token). */
export function setUnauthorizedHandler(handler: Unauthorized): void {
  onUnauthorized = handler
}

/** How a 401 is answered: renew the access token once and retry, before giving up on the session. */
export function setRefresher(fn: Refresher | null): void {
  refresher = fn
}

export async function request<T>(method: string, path: string, body?: unknown, retried = false): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' }
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  const sentToken = token
  if (sentToken) headers.Authorization = `Bearer ${sentToken}`
  let res: Response
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  } catch {
    throw new ApiError(0, "Can't reach the server. Check your connection and try again.")
  }
  if (res.status === 204) return undefined as T
  const text = await res.text()
  let data: unknown = null
  if (text) {
    try {
      data = JSON.parse(text)
    } catch {
      data = null
    }
  }
  if (!res.ok) {
    if (res.status === 401 && sentToken && !retried && refresher && !path.startsWith('/api/auth/')) {
      // Access tokens are short-lived: a 401 usually means "renew", not "signed out".
      // A renewal that could not reach the server says nothing about the session: report the network, not 401.
      const renewed = await refresher().catch(() => undefined)
      if (renewed) return request<T>(method, path, body, true)
      if (renewed === undefined) throw new ApiError(0, "Can't reach the server. Check your connection and try again.")
    }
    if (res.status === 401 && sentToken) onUnauthorized()
    const retry = Number(res.headers.get('Retry-After'))
    let message = describeDetail(res.status, data)
    if (res.status === 429 && retry > 0) message = `${message} Try again in ${retry} s.`
    throw new ApiError(res.status, message, Number.isFinite(retry) && retry > 0 ? retry : null)
  }
  return data as T
}

const enc = encodeURIComponent
const REFRESH_TIMEOUT_MS = 10_000

/** `?a=1&b=2` from the parameters that have a value ('' when none has). */
export function query(params: Record<string, string | null | undefined>): string {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v)
  const s = q.toString()
  return s ? `?${s}` : ''
}

export const api = {
  register: (email: string, password: string, display_name: string) =>
    request<Me>('POST', '/api/auth/register', { email, password, display_name }),
  login: (email: string, password: string) =>
    request<TokenPair>('POST', '/api/auth/login', {
      email,
      password,
    }),
  /** Sent without the access token: it is the refresh token that speaks here. */
  refresh: async (refresh_token: string): Promise<TokenPair | null> => {
    let res: Response
    try {
      res = await fetch('/api/auth/refresh', {
        method: 'POST',
        headers: { Accept: 'application/json', 'Content-Type': 'application/json' },
        body: JSON.stringify({ refresh_token }),
        // A request that hangs (sent as the network came back) would hold every renewal, in every tab (they
        // wait for one another): give up on it and let the caller retry.
        signal: AbortSignal.timeout(REFRESH_TIMEOUT_MS),
      })
    } catch {
      throw new ApiError(0, "Can't reach the server. Check your connection and try again.")
    }
    if (res.status === 401 || res.status === 422) return null
    if (!res.ok) throw new ApiError(res.status, describeDetail(res.status, await res.json().catch(() => null)))
    return (await res.json()) as TokenPair
  },
  logout: () => request<void>('POST', '/api/auth/logout'),
  logoutAll: () => request<void>('POST', '/api/auth/logout-all'),
  changePassword: (current_password: string, new_password: string) =>
    request<void>('POST', '/api/me/password', { current_password, new_password }),
  updateMe: (display_name: string) => request<Me>('PATCH', '/api/me', { display_name }),
  tokens: () => request<AccessToken[]>('GET', '/api/me/tokens'),
  createToken: (name: string, scopes: TokenScope[], expires_in_days?: number) =>
    request<AccessToken & { token: string }>('POST', '/api/me/tokens', {
      name,
      scopes,
      ...(expires_in_days ? { expires_in_days } : {}),
    }),
  deleteToken: (id: string) => request<void>('DELETE', `/api/me/tokens/${enc(id)}`),
  me: () => request<Me>('GET', '/api/me'),
  /** Delete my account (409 while the last owner of a workspace that has other members). */
  deleteMe: () => request<void>('DELETE', '/api/me'),
  /** Everything Plait keeps about my account, as JSON. */
  exportMe: () => request<unknown>('GET', '/api/me/export'),
  sessions: () => request<SessionInfo[]>('GET', '/api/me/sessions'),
  endSession: (id: string) => request<void>('DELETE', `/api/me/sessions/${enc(id)}`),

  /** Accounts matching `q`; `disabled` true or false keeps only disabled or only active ones (undefined: all). */
  adminUsers: (q: string, cursor: string | null, limit: number, disabled?: boolean) =>
    request<Page<AdminUser>>(
      'GET',
      `/api/admin/users${query({ q, cursor, limit: String(limit), disabled: disabled === undefined ? null : String(disabled) })}`,
    ),
  setUserDisabled: (id: string, disabled: boolean) =>
    request<AdminUser>('POST', `/api/admin/users/${enc(id)}/${disabled ? 'disable' : 'enable'}`),
  adminWorkspaces: (q: string, cursor: string | null, limit: number) =>
    request<Page<AdminWorkspace>>('GET', `/api/admin/workspaces${query({ q, cursor, limit: String(limit) })}`),
  adminStats: () => request<AdminStats>('GET', '/api/admin/stats'),
  /** The whole instance's audit log, newest first (instance administrators). */
  adminAudit: (filter: AuditFilter, cursor: string | null, limit: number) =>
    request<Page<AuditEntry>>('GET', `/api/admin/audit${query({ ...filter, cursor, limit: String(limit) })}`),
  /** One workspace's audit log, newest first (its owners and admins). */
  workspaceAudit: (wid: string, action: string, cursor: string | null, limit: number) =>
    request<Page<AuditEntry>>('GET', `/api/workspaces/${enc(wid)}/audit${query({ action, cursor, limit: String(limit) })}`),

  workspaces: () => request<Workspace[]>('GET', '/api/workspaces'),
  workspace: (wid: string) => request<Workspace>('GET', `/api/workspaces/${enc(wid)}`),
  createWorkspace: (name: string) => request<Workspace>('POST', '/api/workspaces', { name }),
  renameWorkspace: (wid: string, name: string) =>
    request<Workspace>('PATCH', `/api/workspaces/${enc(wid)}`, { name }),
  deleteWorkspace: (wid: string) => request<void>('DELETE', `/api/workspaces/${enc(wid)}`),

  members: (wid: string) => request<Member[]>('GET', `/api/workspaces/${enc(wid)}/members`),
  setRole: (wid: string, uid: string, role: Role) =>
    request<Member>('PATCH', `/api/workspaces/${enc(wid)}/members/${enc(uid)}`, { role }),
  removeMember: (wid: string, uid: string) =>
    request<void>('DELETE', `/api/workspaces/${enc(wid)}/members/${enc(uid)}`),

  invites: (wid: string) => request<Invite[] | Page<Invite>>('GET', `/api/workspaces/${enc(wid)}/invites`),
  createInvite: (wid: string, role: Role, expires_in_seconds?: number, max_uses?: number) =>
    request<Invite>('POST', `/api/workspaces/${enc(wid)}/invites`, {
      role,
      ...(expires_in_seconds ? { expires_in_seconds } : {}),
      ...(max_uses ? { max_uses } : {}),
    }),
  revokeInvite: (wid: string, id: string) =>
    request<void>('DELETE', `/api/workspaces/${enc(wid)}/invites/${enc(id)}`),
  previewInvite: (inviteToken: string) => request<InvitePreview>('GET', `/api/invites/${enc(inviteToken)}`),
  acceptInvite: (inviteToken: string) =>
    request<{ workspace_id: string; role: Role }>('POST', `/api/invites/${enc(inviteToken)}/accept`),

  notifications: (opts: { unread?: boolean; cursor?: string | null } = {}) => {
    const q = new URLSearchParams()
    if (opts.unread) q.set('unread', 'true')
    if (opts.cursor) q.set('cursor', opts.cursor)
    const qs = q.toString()
    return request<Page<Notification>>('GET', `/api/notifications${qs ? `?${qs}` : ''}`)
  },
  markRead: (id: string) => request<unknown>('POST', `/api/notifications/${enc(id)}/read`),
  markAllRead: () => request<unknown>('POST', '/api/notifications/read-all'),
  preferences: () => request<unknown>('GET', '/api/notifications/preferences'),
  savePreferences: (body: unknown) => request<unknown>('PUT', '/api/notifications/preferences', body),
  emailPreferences: () => request<EmailPreferences>('GET', '/api/notifications/preferences/email'),
  saveEmailPreferences: (digest: boolean) =>
    request<EmailPreferences>('PUT', '/api/notifications/preferences/email', { digest }),

  taskActivity: (wid: string, taskId: string) =>
    request<ActivityEntry[] | Page<ActivityEntry>>(
      'GET',
      `/api/workspaces/${enc(wid)}/tasks/${enc(taskId)}/activity`,
    ),
  documentInfo: (wid: string) => request<{ epoch?: string | null }>('GET', `/api/workspaces/${enc(wid)}/document`),
  presence: (wid: string) =>
    request<PresenceEntry[] | Page<PresenceEntry>>('GET', `/api/workspaces/${enc(wid)}/presence`),
}

/** Lists may come bare or in the `{items, next_cursor}` envelope; the UI only needs the items. */
export function itemsOf<T>(value: T[] | Page<T> | null | undefined): T[] {
  if (!value) return []
  return Array.isArray(value) ? value : (value.items ?? [])
}
