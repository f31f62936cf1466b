import { describe, expect, it } from 'vitest'
import { can, canEdit, ROLES } from './permissions'

describe('permissions (as api/permissions.py decides them)', () => {
  it('lets every role but viewer edit tasks', () => {
    expect(ROLES.filter((role) => canEdit({ role }))).toEqual(['owner', 'admin', 'editor'])
  })
  it('lets owners and admins manage members, and only owners delete the workspace', () => {
    expect(ROLES.filter((role) => can({ role }, 'members.manage'))).toEqual(['owner', 'admin'])
    expect(ROLES.filter((role) => can({ role }, 'workspace.delete'))).toEqual(['owner'])
  })
  it("lets owners and admins read the workspace's audit log", () => {
    expect(ROLES.filter((role) => can({ role }, 'audit.read'))).toEqual(['owner', 'admin'])
  })
})
