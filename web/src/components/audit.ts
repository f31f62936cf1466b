/**
 * Reading the audit log (docs/admin.md#audit-log): the actions Plait records and a sentence for each entry's
 * actor, target and details, so the table shows words instead of JSON and ids.
 */
import type { AuditEntry } from '../api'

/** Every action, as docs/admin.md lists them (a test checks the list against the docs), with a readable name. */
export const AUDIT_ACTIONS = {
  'workspace.created': 'Workspace created',
  'workspace.renamed': 'Workspace renamed',
  'workspace.deleted': 'Workspace deleted',
  'workspace.exported': 'Workspace exported',
  'workspace.imported': 'Workspace imported',
  'member.joined': 'Member joined',
  'member.role_changed': 'Role changed',
  'member.removed': 'Member removed',
  'member.left': 'Member left',
  'invite.created': 'Invite link created',
  'invite.revoked': 'Invite link revoked',
  'webhook.created': 'Webhook created',
  'webhook.deleted': 'Webhook deleted',
  'token.created': 'Access token created',
  'token.deleted': 'Access token deleted',
  'admin.granted': 'Administrator granted',
  'admin.revoked': 'Administrator revoked',
  'admin.user_disabled': 'Account disabled',
  'admin.user_enabled': 'Account enabled',
} as const satisfies Record<string, string>

export type AuditAction = keyof typeof AUDIT_ACTIONS
export type AuditScope = 'instance' | 'workspace'

/** The actions a scope can hold: token and administrator actions are never a workspace's entries. */
export function actionsFor(scope: AuditScope): AuditAction[] {
  const all = Object.keys(AUDIT_ACTIONS) as AuditAction[]
  return scope === 'instance' ? all : all.filter((a) => !a.startsWith('token.') && !a.startsWith('admin.'))
}

export function actionLabel(action: string): string {
  return (AUDIT_ACTIONS as Record<string, string>)[action] ?? action
}

/** The first part of an id: enough to tell entries apart on screen (the whole id is the cell's title). */
export function shortId(id: string | null | undefined): string {
  return id ? id.slice(0, 8) : '—'
}

export function actorText(entry: Pick<AuditEntry, 'actor'>): string {
  const actor = entry.actor
  if (!actor) return 'Command line'
  const who = actor.email ?? `account ${shortId(actor.id)}`
  return actor.id ? who : `${who} (account deleted)`
}

/** An account or a workspace the instance's log can be narrowed to: its id (what the API filters by) and its email
 * or name when the page knows it. */
export interface AuditSubject {
  id: string
  name?: string | null
}

/** Whose entries, about what, and which workspace's the instance's log shows (`actor_id`, `target_id`,
 * `workspace_id`; none: all). */
export interface AuditSubjects {
  actor?: AuditSubject
  target?: AuditSubject
  workspace?: AuditSubject
}

export function actorSubjectText(actor: AuditSubject): string {
  return actor.name || `account ${shortId(actor.id)}`
}

export function workspaceSubjectText(workspace: AuditSubject): string {
  return workspace.name ? `“${workspace.name}”` : shortId(workspace.id)
}

/** The entry's actor as a filter; none for the command line or a deleted account (no id to filter by). */
export function actorSubject(entry: Pick<AuditEntry, 'actor'>): AuditSubject | null {
  return entry.actor?.id ? { id: entry.actor.id, name: entry.actor.email } : null
}

/** The entry's target (an account, invite, token, webhook, workspace) as a filter, named as its cell names it. */
export function targetSubject(entry: AuditEntry, names: Map<string, string>, nameOf?: NameOf): AuditSubject | null {
  const id = entry.target?.id
  return id ? { id, name: targetText(entry, names, nameOf) } : null
}

export function targetSubjectText(target: AuditSubject): string {
  return target.name || shortId(target.id)
}

/** The entry's workspace as a filter, named when the loaded entries tell its name. */
export function workspaceSubject(entry: Pick<AuditEntry, 'workspace_id'>, names: Map<string, string>): AuditSubject | null {
  const id = entry.workspace_id
  return id ? { id, name: names.get(id) ?? null } : null
}

/** What the table holds, in words after "entries" (for its caption and the empty message): '' when unfiltered. */
export function filterText(action: string, subjects: AuditSubjects = {}): string {
  return [
    action ? ` of “${actionLabel(action)}”` : '',
    subjects.actor ? ` by ${actorSubjectText(subjects.actor)}` : '',
    subjects.target ? ` about ${targetSubjectText(subjects.target)}` : '',
    subjects.workspace ? ` in ${workspaceSubjectText(subjects.workspace)}` : '',
  ].join('')
}

/** Names the page knows for user ids (a workspace's members), when it knows them. */
export type NameOf = (userId: string) => string | undefined

const TARGET_NOUNS: Record<string, string> = {
  user: 'Account',
  workspace: 'Workspace',
  invite: 'Invite link',
  webhook: 'Webhook',
  token: 'Access token',
}

export function targetText(entry: AuditEntry, names: Map<string, string>, nameOf?: NameOf): string {
  const target = entry.target
  if (!target) return '—'
  const id = target.id ?? ''
  if (target.type === 'user') {
    const known = nameOf?.(id) ?? (entry.actor?.id === id ? entry.actor.email : null) ?? text(entry.details.email)
    if (known) return known
  }
  if (target.type === 'workspace' && names.has(id)) return `“${names.get(id)}”`
  return `${TARGET_NOUNS[target.type] ?? target.type} ${shortId(id)}`
}

const NAMING = new Set(['workspace.created', 'workspace.renamed', 'workspace.deleted', 'workspace.imported'])

/** Workspace names the loaded entries tell (newest first, so a rename's new name wins), by workspace id. */
export function workspaceNames(entries: AuditEntry[]): Map<string, string> {
  const names = new Map<string, string>()
  for (const e of entries) {
    const name = text(e.details.name)
    if (e.workspace_id && name && NAMING.has(e.action) && !names.has(e.workspace_id)) names.set(e.workspace_id, name)
  }
  return names
}

function text(value: unknown): string | null {
  if (typeof value === 'string') return value || null
  if (typeof value === 'number' || typeof value === 'boolean') return String(value)
  return null
}

function list(value: unknown): string | null {
  return Array.isArray(value) && value.length > 0 ? value.map(String).join(', ') : null
}

function quoted(value: unknown): string | null {
  const s = text(value)
  return s === null ? null : `“${s}”`
}

function uses(value: unknown): string {
  if (typeof value !== 'number') return 'unlimited uses'
  return value === 1 ? 'single use' : `up to ${value} uses`
}

/** One readable line for an entry's details ('' when it has none). Unknown shapes fall back to `key: value`. */
export function detailsText(action: string, details: Record<string, unknown>): string {
  const d = details ?? {}
  const parts = (...xs: (string | null)[]) => xs.filter(Boolean).join(', ')
  switch (action) {
    case 'workspace.created':
    case 'workspace.deleted':
      return parts(quoted(d.name))
    case 'workspace.renamed':
      return d.name === undefined ? '' : `Renamed to ${quoted(d.name)}`
    case 'workspace.exported':
      return d.format ? `As ${text(d.format)?.toUpperCase()}` : ''
    case 'workspace.imported':
      return parts(quoted(d.name), typeof d.tasks === 'number' ? `${d.tasks} task${d.tasks === 1 ? '' : 's'}` : null)
    case 'member.joined':
      return parts(d.role ? `As ${text(d.role)}` : null, d.via ? `via ${text(d.via)}` : null)
    case 'member.role_changed':
      return d.role ? `Now ${text(d.role)}` : ''
    case 'invite.created':
      return parts(d.role ? `For ${text(d.role)}` : null, uses(d.max_uses))
    case 'webhook.created':
      return parts(text(d.url), list(d.events) && `events: ${list(d.events)}`)
    case 'webhook.deleted':
      return parts(text(d.url))
    case 'token.created':
      return parts(quoted(d.name), list(d.scopes) && `scopes: ${list(d.scopes)}`)
    case 'admin.granted':
    case 'admin.revoked':
    case 'admin.user_disabled':
    case 'admin.user_enabled':
      return d.via ? `Via ${text(d.via)}` : '' // the email is the target's (targetText shows it)
    default:
      return Object.entries(d)
        .map(([k, v]) => `${k}: ${text(v) ?? list(v) ?? JSON.stringify(v)}`)
        .join(', ')
  }
}
