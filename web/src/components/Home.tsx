import { type FormEvent, useState } from 'react'
import { useWorkspaces } from '../state/workspaces'
import { navigate } from '../router'
import { ErrorText, useAction } from './common'

const ROLE_LABELS = { owner: 'Owner', admin: 'Admin', editor: 'Editor', viewer: 'Viewer' } as const
export { ROLE_LABELS }

export function CreateWorkspaceForm({ onCreated }: { onCreated?: () => void }) {
  const create = useWorkspaces((s) => s.create)
  const [name, setName] = useState('')
  const { busy, error, run } = useAction()
  const submit = (e: FormEvent) => {
    e.preventDefault()
    void run(async () => {
      const w = await create(name.trim())
      setName('')
      onCreated?.()
      navigate(`/w/${w.id}`)
    })
  }
  return (
    <form className="inline-form" onSubmit={submit} aria-label="Create a workspace">
      <label className="grow">
        <span className="sr-only">Workspace name</span>
        <input value={name} onChange={(e) => setName(e.target.value)} placeholder="New workspace name" required maxLength={200} />
      </label>
      <button type="submit" className="primary" disabled={busy || !name.trim()}>
        Create workspace
      </button>
      <ErrorText error={error} />
    </form>
  )
}

/** The caller's workspaces (US1): open one, or create one. */
export function Home() {
  const { list, loaded } = useWorkspaces()
  return (
    <main className="page" id="main">
      <h1>Your workspaces</h1>
      {list.length === 0 && loaded && <p>You are not in any workspace yet. Create one, or open an invite link.</p>}
      <ul className="workspace-list" aria-label="Workspaces">
        {list.map((w) => (
          <li key={w.id}>
            <a
              href={`/w/${w.id}`}
              onClick={(e) => {
                e.preventDefault()
                navigate(`/w/${w.id}`)
              }}
            >
              <span className="ws-name">{w.name}</span>
              <span className="badge">{ROLE_LABELS[w.role] ?? w.role}</span>
            </a>
          </li>
        ))}
      </ul>
      <CreateWorkspaceForm />
    </main>
  )
}
