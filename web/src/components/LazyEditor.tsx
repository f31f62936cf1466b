import { useEffect, useState } from 'react'
import type * as Y from 'yjs'
import type { Awareness } from 'y-protocols/awareness'
import type { DescriptionEditor } from './DescriptionEditor'

/**
 * CodeMirror (with Markdown, which brings HTML/CSS/JS grammars) is its own chunk, out of the initial bundle.
 * The board fetches it as soon as it shows (so it is there, and in the service worker's cache, when a task is
 * opened); once loaded it renders synchronously, without a Suspense fallback flashing in between.
 */
type Editor = typeof DescriptionEditor
let loaded: Editor | null = null
let loading: Promise<Editor | null> | null = null

export function prefetchEditor(): Promise<Editor | null> {
  loading ??= import('./DescriptionEditor')
    .then((m) => (loaded = m.DescriptionEditor))
    .catch(() => {
      loading = null
      return null
    })
  return loading
}

export function LazyDescriptionEditor(props: { text: Y.Text; awareness: Awareness; readOnly: boolean; label: string }) {
  const [Editor, setEditor] = useState<Editor | null>(() => loaded)
  const [failed, setFailed] = useState(false)
  useEffect(() => {
    if (Editor) return
    let live = true
    void prefetchEditor().then((e) => {
      if (!live) return
      if (e) setEditor(() => e)
      else setFailed(true)
    })
    return () => {
      live = false
    }
  }, [Editor])
  if (Editor) return <Editor {...props} />
  if (failed)
    return (
      <p className="error" role="alert">
        The editor could not be loaded (offline?). Reload when you are back online.
      </p>
    )
  return <p className="muted editor">Loading the editor…</p>
}
