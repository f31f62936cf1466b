/**
 * What the caller's role allows, as the server decides it (api/permissions.py): the client only hides what the
 * server would refuse. Only the actions the client asks about are listed; their minimum roles must match.
 */
import type { Role, Workspace } from './api'

/** Highest first; a role may do everything any lower role may do. */
export const ROLES: readonly Role[] = ['owner', 'admin', 'editor', 'viewer']

const RANK: Record<Role, number> = { owner: 4, admin: 3, editor: 2, viewer: 1 }

const PERMISSIONS = {
  'workspace.delete': 'owner',
  'members.manage': 'admin',
  'task.write': 'editor',
  'audit.read': 'admin',
} as const satisfies Record<string, Role>

export type Action = keyof typeof PERMISSIONS

export function can(workspace: Pick<Workspace, 'role'>, action: Action): boolean {
  return (RANK[workspace.role] ?? 0) >= RANK[PERMISSIONS[action]]
}

/** Whether the caller may change tasks (everyone but viewers). */
export function canEdit(workspace: Pick<Workspace, 'role'>): boolean {
  return can(workspace, 'task.write')
}
