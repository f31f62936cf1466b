import { describe, expect, it } from 'vitest'
import type { AuditEntry } from '../api'
import adminDoc from '../../../docs/admin.md?raw'
import {
  actionsFor,
  AUDIT_ACTIONS,
  actorSubject,
  actorText,
  detailsText,
  filterText,
  targetText,
  workspaceNames,
  workspaceSubject,
} from './audit'

function entry(over: Partial<AuditEntry>): AuditEntry {
  return {
    id: 'e1',
    action: 'member.joined',
    created_at: '2025-01-01T00:00:00Z',
    actor: { id: 'u1', email: 'ann@example.com' },
    workspace_id: 'w1',
    target: null,
    details: {},
    address: '127.0.0.1',
    ...over,
  }
}

describe('audit actions', () => {
  it('are the ones docs/admin.md lists', () => {
    const table = adminDoc.slice(adminDoc.indexOf('| action | target | details |'))
    const documented = [...table.matchAll(/^\| (`[^|]+`) \|/gm)].flatMap(([, cell]) =>
      [...cell.matchAll(/`([a-z_.]+)`/g)].map(([, a]) => a),
    )
    expect(documented.sort()).toEqual(Object.keys(AUDIT_ACTIONS).sort())
  })
  it('of a workspace leave out tokens and administrators (never workspace entries)', () => {
    const workspace = actionsFor('workspace')
    expect(workspace).toContain('member.role_changed')
    expect(workspace.filter((a) => a.startsWith('token.') || a.startsWith('admin.'))).toEqual([])
    expect(actionsFor('instance')).toHaveLength(Object.keys(AUDIT_ACTIONS).length)
  })
})

describe('detailsText', () => {
  it('says what changed in words', () => {
    expect(detailsText('member.role_changed', { role: 'admin' })).toBe('Now admin')
    expect(detailsText('member.joined', { role: 'editor', via: 'invite' })).toBe('As editor, via invite')
    expect(detailsText('invite.created', { role: 'viewer', max_uses: null })).toBe('For viewer, unlimited uses')
    expect(detailsText('invite.created', { role: 'viewer', max_uses: 1 })).toBe('For viewer, single use')
    expect(detailsText('workspace.renamed', { name: 'Q3' })).toBe('Renamed to “Q3”')
    expect(detailsText('workspace.exported', { format: 'yjs' })).toBe('As YJS')
    expect(detailsText('workspace.imported', { name: 'Old', tasks: 1 })).toBe('“Old”, 1 task')
    expect(detailsText('token.created', { name: 'CI', scopes: ['read', 'write'] })).toBe('“CI”, scopes: read, write')
    expect(detailsText('webhook.created', { url: 'https://h.example', events: ['task.created'] })).toBe(
      'https://h.example, events: task.created',
    )
    expect(detailsText('admin.granted', { email: 'a@x', via: 'command line' })).toBe('Via command line')
  })
  it('has nothing to say about an entry without details', () => {
    expect(detailsText('member.left', {})).toBe('')
    expect(detailsText('admin.user_disabled', { email: 'a@x' })).toBe('') // the target shows the email
  })
  it('falls back to key: value for an action it does not know', () => {
    expect(detailsText('future.thing', { n: 2, tags: ['a', 'b'], deep: { x: 1 } })).toBe('n: 2, tags: a, b, deep: {"x":1}')
  })
})

describe('actorText and targetText', () => {
  it('name the command line and deleted accounts', () => {
    expect(actorText(entry({ actor: null }))).toBe('Command line')
    expect(actorText(entry({ actor: { id: null, email: 'gone@example.com' } }))).toBe('gone@example.com (account deleted)')
  })
  it('name an account by what the page or the entry knows, else by a short id', () => {
    const target = { type: 'user', id: 'u2-0000-1111' }
    const names = new Map<string, string>()
    expect(targetText(entry({ target }), names, (id) => (id === 'u2-0000-1111' ? 'Bob' : undefined))).toBe('Bob')
    expect(targetText(entry({ target, details: { email: 'bob@example.com' } }), names)).toBe('bob@example.com')
    expect(targetText(entry({ target: { type: 'user', id: 'u1' } }), names)).toBe('ann@example.com') // joined: themselves
    expect(targetText(entry({ target }), names)).toBe('Account u2-0000-')
    expect(targetText(entry({ target: { type: 'invite', id: 'abcdef123456' } }), names)).toBe('Invite link abcdef12')
  })
  it('name workspaces by the newest name the loaded entries give', () => {
    const names = workspaceNames([
      entry({ action: 'workspace.renamed', workspace_id: 'w1', details: { name: 'New' } }),
      entry({ action: 'workspace.created', workspace_id: 'w1', details: { name: 'Old' } }),
      entry({ action: 'invite.created', workspace_id: 'w2', details: { role: 'editor' } }),
    ])
    expect([...names]).toEqual([['w1', 'New']])
    expect(targetText(entry({ target: { type: 'workspace', id: 'w1' } }), names)).toBe('“New”')
  })
})

describe('filters by actor and workspace', () => {
  it('take an entry\'s actor only when it has an account id (the command line and deleted accounts have none)', () => {
    expect(actorSubject(entry({}))).toEqual({ id: 'u1', name: 'ann@example.com' })
    expect(actorSubject(entry({ actor: null }))).toBeNull()
    expect(actorSubject(entry({ actor: { id: null, email: 'gone@example.com' } }))).toBeNull()
    expect(workspaceSubject(entry({}), new Map([['w1', 'Q3']]))).toEqual({ id: 'w1', name: 'Q3' })
    expect(workspaceSubject(entry({}), new Map())).toEqual({ id: 'w1', name: null })
    expect(workspaceSubject(entry({ workspace_id: null }), new Map())).toBeNull()
  })
  it('say in words what the table holds', () => {
    expect(filterText('')).toBe('')
    expect(filterText('member.joined')).toBe(' of “Member joined”')
    expect(filterText('', { actor: { id: 'u1', name: 'ann@example.com' } })).toBe(' by ann@example.com')
    expect(
      filterText('member.left', { actor: { id: 'u1-2345-6789' }, workspace: { id: 'w1-2345-6789', name: 'Q3' } }),
    ).toBe(' of “Member left” by account u1-2345- in “Q3”')
    expect(filterText('', { workspace: { id: 'w1-2345-6789' } })).toBe(' in w1-2345-')
  })
})
