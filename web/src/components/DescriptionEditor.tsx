import { useEffect, useRef } from 'react'
import * as Y from 'yjs'
import type { Awareness } from 'y-protocols/awareness'
import { EditorView, minimalSetup } from 'codemirror'
import { EditorState } from '@codemirror/state'
import { placeholder } from '@codemirror/view'
import { yCollab } from 'y-codemirror.next'
import { markdownLanguage } from '@codemirror/lang-markdown'
import { LanguageSupport } from '@codemirror/language'

/**
 * CodeMirror 6 bound to the task's `description` Y.Text by y-codemirror.next: concurrent typing
 * merges in the CRDT, others' cursors and names come from awareness `user`.
 */
export function DescriptionEditor({
  text,
  awareness,
  readOnly,
  label,
}: {
  text: Y.Text
  awareness: Awareness
  readOnly: boolean
  label: string
}) {
  const host = useRef<HTMLDivElement>(null)
  useEffect(() => {
    if (!host.current) return
    const undoManager = new Y.UndoManager(text)
    const view = new EditorView({
      parent: host.current,
      state: EditorState.create({
        doc: text.toString(),
        extensions: [
          minimalSetup,
          // The grammar alone: `markdown()` would also bundle the HTML, CSS and JavaScript grammars for embedded code.
          new LanguageSupport(markdownLanguage),
          EditorView.lineWrapping,
          placeholder(readOnly ? 'No description.' : 'Add a description…'),
          EditorState.readOnly.of(readOnly),
          EditorView.editable.of(!readOnly),
          EditorView.contentAttributes.of({ 'aria-label': label, 'aria-multiline': 'true', 'data-testid': 'description' }),
          yCollab(text, awareness, { undoManager }),
        ],
      }),
    })
    return () => {
      view.destroy()
      undoManager.destroy()
    }
  }, [text, awareness, readOnly, label])
  return <div className="editor" ref={host} />
}
