import { type ReactNode, useEffect, useState } from 'react'

type Render = (text: string, nameOf: (id: string) => string | null) => string
let renderer: Render | null = null
let loading: Promise<Render | null> | null = null

/** Load the Markdown renderer (its own chunk); resolves null when it cannot be fetched (offline, first use). */
export function loadMarkdown(): Promise<Render | null> {
  loading ??= import('./markdownRender')
    .then((m) => (renderer = m.renderMarkdown))
    .catch(() => {
      loading = null
      return null
    })
  return loading
}

/** Sanitized HTML of a Markdown text, or null while (or if) the renderer is not available. */
export function useMarkdown(text: string, nameOf: (id: string) => string | null): string | null {
  const [render, setRender] = useState<Render | null>(() => renderer)
  useEffect(() => {
    if (render) return
    let live = true
    void loadMarkdown().then((r) => live && r && setRender(() => r))
    return () => {
      live = false
    }
  }, [render])
  return render && text.trim() ? render(text, nameOf) : null
}

let pointerDown = false
document.addEventListener('pointerdown', () => (pointerDown = true), true)
document.addEventListener('pointerup', () => (pointerDown = false), true)

/**
 * The description: CodeMirror stays mounted (collaborative, with others' cursors); when it is not being edited
 * and has text, the rendered Markdown is drawn over the transparent editor, letting clicks through to it (so a
 * click, or focus, edits) except on links.
 */
export function DescriptionView({
  text,
  nameOf,
  children,
}: {
  text: { toString(): string; observe(f: () => void): void; unobserve(f: () => void): void }
  nameOf: (id: string) => string | null
  children: ReactNode
}) {
  const [value, setValue] = useState(() => text.toString())
  const [editing, setEditing] = useState(false)
  useEffect(() => {
    const update = () => setValue(text.toString())
    text.observe(update)
    update()
    return () => text.unobserve(update)
  }, [text])
  const html = useMarkdown(value, nameOf)
  const preview = !editing && html !== null
  return (
    <div
      className={`description${preview ? ' previewing' : ''}`}
      onFocus={() => setEditing(true)}
      onBlur={(e) => {
        if (e.currentTarget.contains(e.relatedTarget as Node | null)) return
        // Mid-click elsewhere (the blur comes with mousedown): swap to the preview only after the click, or the
        // layout would shift under the pointer and the click land on something else.
        const box = e.currentTarget
        const leave = () => !box.contains(document.activeElement) && setEditing(false)
        if (pointerDown) document.addEventListener('pointerup', () => setTimeout(leave), { once: true })
        else leave()
      }}
    >
      {preview && <div className="markdown" data-testid="description-preview" aria-hidden="true" dangerouslySetInnerHTML={{ __html: html }} />}
      <div className="description-source">{children}</div>
    </div>
  )
}
