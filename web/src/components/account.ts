/** The account page's rules, kept apart from its screens: what a form may send, and how tokens read. */
import type { AccessToken, TokenScope } from '../api'
import { timeAgo } from '../describe'

/** The server's shortest password (api/schemas.py, Password). */
export const MIN_PASSWORD = 8

/** Why the change-password form cannot be sent yet, or null when it can. */
export function passwordProblem(current: string, next: string, confirm: string): string | null {
  if (!current) return 'Enter your current password.'
  if (next.length < MIN_PASSWORD) return `The new password needs at least ${MIN_PASSWORD} characters.`
  if (next !== confirm) return "The new password and its confirmation don't match."
  return null
}

export const SCOPE_LABELS: Record<TokenScope, string> = {
  read: 'Read only',
  write: 'Read and write',
  admin: 'Admin',
}

/** The widest scope a token holds (each scope includes the ones before it). */
export function widestScope(scopes: TokenScope[]): TokenScope {
  return scopes.includes('admin') ? 'admin' : scopes.includes('write') ? 'write' : 'read'
}

/** The expiry field: empty is "never" (undefined); else whole days from 1 to 3650, or an error message. */
export function expiryDays(text: string): number | undefined | string {
  const t = text.trim()
  if (!t) return undefined
  const n = Number(t)
  if (!Number.isInteger(n) || n < 1 || n > 3650) return 'Expiry: a whole number of days from 1 to 3650, or empty for never.'
  return n
}

/** "Created 2 days ago · last used just now · expires 12/3/2027" (or never used, never expires, expired). */
export function tokenSummary(t: AccessToken, now: number = Date.now()): string {
  const used = t.last_used_at ? `last used ${timeAgo(t.last_used_at, now)}` : 'never used'
  let expires = 'never expires'
  if (t.expires_at) {
    const at = Date.parse(t.expires_at)
    expires = at <= now ? 'expired' : `expires ${new Date(at).toLocaleDateString()}`
  }
  return `Created ${timeAgo(t.created_at, now)} · ${used} · ${expires}`
}

/** Deleting the account is confirmed by typing its e-mail address (any case, spaces around ignored). */
export function confirmsDeletion(typed: string, email: string): boolean {
  return typed.trim().toLowerCase() === email.trim().toLowerCase() && email.trim() !== ''
}

/** plait-my-data-2026-12-04.json */
export function exportFileName(now: Date = new Date()): string {
  return `plait-my-data-${now.toISOString().slice(0, 10)}.json`
}

/** "At most one e-mail every 2 hours" from the digest interval in seconds. */
export function digestCadence(seconds: number): string {
  const unit = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`
  const every =
    seconds >= 86400 && seconds % 86400 === 0
      ? unit(seconds / 86400, 'day')
      : seconds >= 3600 && seconds % 3600 === 0
        ? unit(seconds / 3600, 'hour')
        : seconds >= 60
          ? unit(Math.round(seconds / 60), 'minute')
          : unit(Math.max(1, Math.round(seconds)), 'second')
  return `At most one e-mail every ${every}`
}
