import { type FormEvent, useCallback, useEffect, useState } from 'react'
import { api, type Invite, itemsOf, type Role, type Workspace } from '../api'
import { useAuth } from '../state/auth'
import { useWorkspaces } from '../state/workspaces'
import { navigate } from '../router'
import { colorFor } from '../doc/presence'
import { Avatar, ErrorText, useAction, useConfirm } from './common'
import { ROLE_LABELS } from './Home'
import { can, ROLES } from '../permissions'
import { AuditLog } from './AuditLog'
import type { NameOf } from './audit'

export function inviteLink(invite: Invite): string {
  return invite.token ? `${location.origin}/invite/${invite.token}` : (invite.url ?? '')
}

/** Members with roles, and invite links (create for a role, copy, revoke). Owners and admins manage, and read the
 * workspace's audit log. */
export function MembersPage({ workspace }: { workspace: Workspace }) {
  const me = useAuth((s) => s.me)
  const members = useWorkspaces((s) => s.members[workspace.id]) ?? []
  const loadMembers = useWorkspaces((s) => s.loadMembers)
  const manage = can(workspace, 'members.manage')
  const list = useAction()
  const [invites, setInvites] = useState<Invite[]>([])
  const [created, setCreated] = useState<Invite | null>(null)
  const [changes, setChanges] = useState(0) // what this page changed: an open audit log reads it again
  const changed = () => setChanges((n) => n + 1)
  const confirm = useConfirm()

  const refresh = useCallback(() => {
    void list.run(async () => {
      await loadMembers(workspace.id)
      if (manage) setInvites(itemsOf(await api.invites(workspace.id)))
    })
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [workspace.id, manage, loadMembers])
  useEffect(refresh, [refresh])

  const changeRole = (uid: string, role: Role) => void list.run(async () => {
    await api.setRole(workspace.id, uid, role)
    changed()
    await loadMembers(workspace.id)
  })
  const remove = async (uid: string, self: boolean) => {
    const who = members.find((m) => m.user_id === uid)?.display_name ?? 'this member'
    const ok = await confirm.ask(
      self ? `Leave “${workspace.name}”? You will need a new invite to come back.` : `Remove ${who} from “${workspace.name}”?`,
      self ? 'Leave workspace' : 'Remove member',
    )
    if (!ok) return
    void list.run(async () => {
      await api.removeMember(workspace.id, uid)
      changed()
      if (self) {
        useWorkspaces.getState().forget(workspace.id)
        navigate('/')
      } else await loadMembers(workspace.id)
    })
  }
  const revoke = (id: string) => void list.run(async () => {
    await api.revokeInvite(workspace.id, id)
    changed()
    if (created?.id === id) setCreated(null)
    setInvites(itemsOf(await api.invites(workspace.id)))
  })

  return (
    <main className="page" id="main">
      <p>
        <a
          href={`/w/${workspace.id}`}
          onClick={(e) => {
            e.preventDefault()
            navigate(`/w/${workspace.id}`)
          }}
        >
          ← Back to the board
        </a>
      </p>
      <h1>Members of {workspace.name}</h1>
      <ErrorText error={list.error} />
      <table className="members">
        <caption className="sr-only">Members and their roles</caption>
        <thead>
          <tr>
            <th scope="col">Member</th>
            <th scope="col">Role</th>
            <th scope="col">
              <span className="sr-only">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {members.map((m) => {
            const self = m.user_id === me?.id
            return (
              <tr key={m.user_id} data-testid="member-row">
                <td>
                  <span className="member">
                    <Avatar name={m.display_name} color={colorFor(m.user_id)} size={26} />
                    <span>
                      {m.display_name}
                      {self && ' (you)'}
                      <br />
                      <span className="muted small">{m.email}</span>
                    </span>
                  </span>
                </td>
                <td>
                  {manage ? (
                    <select
                      aria-label={`Role of ${m.display_name}`}
                      value={m.role}
                      onChange={(e) => changeRole(m.user_id, e.target.value as Role)}
                    >
                      {ROLES.map((r) => (
                        <option key={r} value={r}>
                          {ROLE_LABELS[r]}
                        </option>
                      ))}
                    </select>
                  ) : (
                    ROLE_LABELS[m.role]
                  )}
                </td>
                <td>
                  {(manage || self) && (
                    <button type="button" className="danger small" onClick={() => void remove(m.user_id, self)}>
                      {self ? 'Leave' : `Remove`}
                      {!self && <span className="sr-only"> {m.display_name}</span>}
                    </button>
                  )}
                </td>
              </tr>
            )
          })}
        </tbody>
      </table>

      {manage && <WorkspaceSettings workspace={workspace} />}

      {manage && (
        <section aria-labelledby="invites-heading">
          <h2 id="invites-heading">Invite links</h2>
          <InviteForm workspaceId={workspace.id} onCreated={(inv) => {
            setCreated(inv)
            changed()
            setInvites((xs) => [inv, ...xs.filter((x) => x.id !== inv.id)])
          }} />
          {created && <NewInviteLink invite={created} />}
          {invites.length > 0 && (
            <ul className="invites" aria-label="Active invite links">
              {invites.map((inv) => (
                <li key={inv.id} data-testid="invite-row">
                  <span>
                    {ROLE_LABELS[inv.role]} link · used {inv.uses}
                    {inv.max_uses ? ` of ${inv.max_uses}` : ''}
                    {inv.expires_at ? ` · expires ${new Date(inv.expires_at).toLocaleString()}` : ''}
                    {inv.expired && (
                      <span className="badge muted" data-testid="invite-dead">
                        {' '}
                        {inv.max_uses !== null && inv.uses >= inv.max_uses ? 'used up' : 'expired'}
                      </span>
                    )}
                  </span>
                  <button type="button" className="danger small" onClick={() => revoke(inv.id)}>
                    Revoke<span className="sr-only"> {ROLE_LABELS[inv.role]} invite link</span>
                  </button>
                </li>
              ))}
            </ul>
          )}
        </section>
      )}
      {can(workspace, 'audit.read') && (
        <WorkspaceAudit
          workspaceId={workspace.id}
          refreshKey={changes}
          nameOf={(uid) => members.find((m) => m.user_id === uid)?.display_name}
        />
      )}
      {confirm.dialog}
    </main>
  )
}

function InviteForm({ workspaceId, onCreated }: { workspaceId: string; onCreated: (i: Invite) => void }) {
  const [role, setRole] = useState<Role>('editor')
  const [days, setDays] = useState('7')
  const [maxUses, setMaxUses] = useState('')
  const { busy, error, run } = useAction()
  const submit = (e: FormEvent) => {
    e.preventDefault()
    void run(async () => {
      const d = Number(days)
      const inv = await api.createInvite(workspaceId, role, d > 0 ? Math.round(d * 86400) : undefined, Number(maxUses) || undefined)
      onCreated(inv)
    })
  }
  return (
    <form className="inline-form" onSubmit={submit} aria-label="Create an invite link">
      <label>
        Role
        <select value={role} onChange={(e) => setRole(e.target.value as Role)} aria-label="Role for the invite">
          {ROLES.filter((r) => r !== 'owner').map((r) => (
            <option key={r} value={r}>
              {ROLE_LABELS[r]}
            </option>
          ))}
        </select>
      </label>
      <label>
        Expires after (days)
        <input type="number" min="0.01" step="any" value={days} onChange={(e) => setDays(e.target.value)} className="narrow" />
      </label>
      <label>
        Max uses
        <input type="number" min="1" step="1" value={maxUses} onChange={(e) => setMaxUses(e.target.value)} placeholder="∞" className="narrow" />
      </label>
      <button type="submit" className="primary" disabled={busy}>
        Create invite link
      </button>
      <ErrorText error={error} />
    </form>
  )
}

function NewInviteLink({ invite }: { invite: Invite }) {
  const link = inviteLink(invite)
  const [copied, setCopied] = useState<string | null>(null)
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(link)
      setCopied('Copied to the clipboard.')
    } catch {
      setCopied('Copying is not allowed here: select the link and copy it yourself.')
    }
  }
  return (
    <div className="new-invite">
      <label>
        New {ROLE_LABELS[invite.role].toLowerCase()} invite link (shown once)
        <input readOnly value={link} onFocus={(e) => e.target.select()} data-testid="invite-link" />
      </label>
      <button type="button" onClick={() => void copy()}>
        Copy link
      </button>
      <span role="status" className="muted small">
        {copied}
      </span>
    </div>
  )
}

/** Rename (owners and admins) and delete (owners) the workspace. */
function WorkspaceSettings({ workspace }: { workspace: Workspace }) {
  const [name, setName] = useState(workspace.name)
  const { busy, error, run } = useAction()
  const rename = (e: FormEvent) => {
    e.preventDefault()
    void run(async () => {
      const w = await api.renameWorkspace(workspace.id, name.trim())
      useWorkspaces.getState().upsert({ ...workspace, ...w, role: workspace.role })
    })
  }
  const confirm = useConfirm()
  const remove = async () => {
    const ok = await confirm.ask(
      `Delete the workspace “${workspace.name}” and all its tasks for everyone? This cannot be undone.`,
      'Delete workspace',
    )
    if (!ok) return
    void run(async () => {
      await api.deleteWorkspace(workspace.id)
      useWorkspaces.getState().forget(workspace.id)
      navigate('/')
    })
  }
  return (
    <section aria-labelledby="settings-heading">
      <h2 id="settings-heading">Workspace</h2>
      <form className="inline-form" onSubmit={rename} aria-label="Rename the workspace">
        <label className="grow">
          Name
          <input value={name} onChange={(e) => setName(e.target.value)} required maxLength={200} aria-label="Workspace name" />
        </label>
        <button type="submit" disabled={busy || !name.trim() || name.trim() === workspace.name}>
          Rename
        </button>
        {can(workspace, 'workspace.delete') && (
          <button type="button" className="danger" onClick={() => void remove()} disabled={busy}>
            Delete workspace
          </button>
        )}
        <ErrorText error={error} />
      </form>
      {confirm.dialog}
    </section>
  )
}

/** The workspace's audit log for its owners and admins, folded away until opened (read only when shown). */
function WorkspaceAudit(props: { workspaceId: string; refreshKey: number; nameOf: NameOf }) {
  const [open, setOpen] = useState(false)
  return (
    <section aria-labelledby="audit-heading" className="audit-section">
      <h2 id="audit-heading">
        <button
          type="button"
          className="disclosure"
          aria-expanded={open}
          aria-controls="audit-body"
          onClick={() => setOpen(!open)}
        >
          <span className="disclosure-mark" aria-hidden="true">
            ▸
          </span>
          Audit log
        </button>
      </h2>
      <div id="audit-body" hidden={!open}>
        {open && (
          <>
            <p className="muted small">
              Who changed members, roles, invite links, webhooks and the workspace, newest first.
            </p>
            <AuditLog {...props} />
          </>
        )}
      </div>
    </section>
  )
}
