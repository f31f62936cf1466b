import { type FormEvent, useEffect, useRef, useState } from 'react'
import { request } from '../api'
import { navigate } from '../router'
import { STATUS_LABELS, type Status } from '../doc/tasks'
import { Dialog, ErrorText, useAction } from './common'

interface Hit {
  workspace: { id: string; name: string }
  task_id: string
  title: string
  status: string
  snippet: string | null
}

/**
 * The search box: typing filters the loaded board at once (title, description, comments, checklist); Enter or
 * "All workspaces" asks the server (`GET /api/search`) across every workspace the user belongs to.
 */
export function Search({ q, onChange }: { q: string; onChange: (q: string) => void }) {
  const input = useRef<HTMLInputElement>(null)
  const [everywhere, setEverywhere] = useState(false)
  useEffect(() => {
    // `/` focuses the search, unless one is typing somewhere.
    const onKey = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement | null
      if (e.key !== '/' || e.ctrlKey || e.metaKey || e.altKey) return
      if (t && (t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName))) return
      e.preventDefault()
      input.current?.focus()
    }
    document.addEventListener('keydown', onKey)
    return () => document.removeEventListener('keydown', onKey)
  }, [])
  const submit = (e: FormEvent) => {
    e.preventDefault()
    if (q.trim()) setEverywhere(true)
  }
  return (
    <form className="search" role="search" onSubmit={submit}>
      <input
        ref={input}
        type="search"
        value={q}
        onChange={(e) => onChange(e.target.value)}
        placeholder="Search tasks  /"
        aria-label="Search tasks"
        aria-keyshortcuts="/"
        maxLength={200}
      />
      <button type="submit" className="small" disabled={!q.trim()}>
        All workspaces
      </button>
      {everywhere && <Results q={q.trim()} onClose={() => setEverywhere(false)} />}
    </form>
  )
}

function Results({ q, onClose }: { q: string; onClose: () => void }) {
  const [hits, setHits] = useState<Hit[] | null>(null)
  const { error, run } = useAction()
  useEffect(() => {
    void run(async () => setHits((await request<{ items: Hit[] }>('GET', `/api/search?q=${encodeURIComponent(q)}&limit=50`)).items))
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [q])
  return (
    <Dialog label={`Search results for ${q}`} onClose={onClose} className="search-results">
      <div className="detail-head">
        <h2 className="grow">Tasks matching “{q}” in all workspaces</h2>
        <button type="button" className="icon" onClick={onClose} aria-label="Close search results">
          ×
        </button>
      </div>
      <ErrorText error={error} />
      {hits === null && !error && <p role="status">Searching…</p>}
      {hits !== null && hits.length === 0 && <p role="status">No tasks match.</p>}
      {hits !== null && hits.length > 0 && (
        <ul className="hits" aria-label="Search results">
          {hits.map((h) => (
            <li key={`${h.workspace.id}/${h.task_id}`} data-testid="search-hit">
              <a
                href={`/w/${h.workspace.id}/t/${h.task_id}`}
                onClick={(e) => {
                  e.preventDefault()
                  onClose()
                  navigate(`/w/${h.workspace.id}/t/${h.task_id}`)
                }}
              >
                {h.title || 'Untitled task'}
              </a>{' '}
              <span className="muted small">
                in {h.workspace.name} · {STATUS_LABELS[h.status as Status] ?? h.status}
              </span>
              {h.snippet && <p className="muted small snippet">{h.snippet}</p>}
            </li>
          ))}
        </ul>
      )}
    </Dialog>
  )
}
