import { type KeyboardEvent, useLayoutEffect, useRef, useState } from 'react'
import type * as Y from 'yjs'
import type { Member, Role } from '../api'
import { colorFor } from '../doc/presence'
import { addComment, type Comment, deleteComment, editComment, mentionOf, splitMentions } from '../doc/tasks'
import { Avatar } from './common'

/** The author as the server recorded it: a current member's name, else "Former member". */
export function authorName(members: Member[], id: string | null): string {
  return members.find((m) => m.user_id === id)?.display_name ?? 'Former member'
}

/** A text with its `@[Name](user:ID)` mentions shown under the member's current name. */
export function WithMentions({ text, members }: { text: string; members: Member[] }) {
  return (
    <>
      {splitMentions(text).map((part, i) =>
        'mention' in part ? (
          <span key={i} className="mention" data-user-id={part.mention}>
            @{members.find((m) => m.user_id === part.mention)?.display_name ?? part.name}
          </span>
        ) : (
          <span key={i}>{part.text}</span>
        ),
      )}
    </>
  )
}

/** Comments of a task: the list (author from `author_id`), and a composer with `@` autocomplete of members. */
export function Comments({
  doc,
  taskId,
  comments,
  members,
  me,
  role,
  editable,
}: {
  doc: Y.Doc
  taskId: string
  comments: Comment[]
  members: Member[]
  me: string | null
  role: Role
  editable: boolean
}) {
  const [editing, setEditing] = useState<string | null>(null)
  const mayChange = (c: Comment) => editable && (c.author_id === me || role === 'owner' || role === 'admin')
  return (
    <section className="comments" aria-labelledby="comments-heading">
      <h3 id="comments-heading">Comments</h3>
      {comments.length === 0 && <p className="muted">No comments yet.</p>}
      <ol aria-label="Comments">
        {comments.map((c) => {
          const author = authorName(members, c.author_id)
          return (
            <li key={c.id} className="comment" data-testid="comment">
              <div className="comment-head">
                <Avatar name={author} color={c.author_id ? colorFor(c.author_id) : '#6b7280'} size={22} />
                <strong data-testid="comment-author">{author}</strong>
                {c.created_at && (
                  <time className="muted small" dateTime={c.created_at}>
                    {new Date(c.created_at).toLocaleString()}
                  </time>
                )}
                {c.edited_at && <span className="muted small">(edited)</span>}
                <span className="spacer" />
                {mayChange(c) && editing !== c.id && (
                  <>
                    <button type="button" className="link small" onClick={() => setEditing(c.id)}>
                      Edit
                    </button>
                    <button type="button" className="link small" onClick={() => deleteComment(doc, taskId, c.id)} aria-label="Delete comment">
                      Delete
                    </button>
                  </>
                )}
              </div>
              {editing === c.id ? (
                <Composer
                  members={members}
                  initial={c.body}
                  submitLabel="Save"
                  onSubmit={(body) => {
                    editComment(doc, taskId, c.id, body)
                    setEditing(null)
                  }}
                  onCancel={() => setEditing(null)}
                />
              ) : (
                <p className="comment-body" data-testid="comment-body">
                  <WithMentions text={c.body} members={members} />
                </p>
              )}
            </li>
          )
        })}
      </ol>
      {editable && me && (
        <Composer members={members} initial="" submitLabel="Comment" onSubmit={(body) => addComment(doc, taskId, me, body)} />
      )}
    </section>
  )
}

/** The `@word` being typed just before the caret, if any. */
function mentionQuery(text: string, caret: number): { start: number; query: string } | null {
  const m = /(^|\s)@([^\s@[\]()]{0,30})$/.exec(text.slice(0, caret))
  return m ? { start: caret - m[2].length - 1, query: m[2].toLowerCase() } : null
}

function Composer({
  members,
  initial,
  submitLabel,
  onSubmit,
  onCancel,
}: {
  members: Member[]
  initial: string
  submitLabel: string
  onSubmit: (body: string) => void
  onCancel?: () => void
}) {
  const [body, setBody] = useState(initial)
  const [at, setAt] = useState<{ start: number; query: string } | null>(null)
  const [active, setActive] = useState(0)
  const area = useRef<HTMLTextAreaElement>(null)
  // Where the caret goes after a mention is inserted: set as soon as React has written the new value, before
  // the next key is handled (a frame later, a fast typist's next letter landed before it and was moved).
  const caretAfter = useRef<number | null>(null)
  useLayoutEffect(() => {
    if (caretAfter.current === null || !area.current) return
    area.current.focus()
    area.current.setSelectionRange(caretAfter.current, caretAfter.current)
    caretAfter.current = null
  }, [body])
  const matches = at ? members.filter((m) => m.display_name.toLowerCase().includes(at.query)).slice(0, 6) : []
  const open = at !== null && matches.length > 0

  const pick = (m: Member) => {
    if (!at) return
    const caret = area.current?.selectionStart ?? body.length
    const insert = `${mentionOf(m.display_name, m.user_id)} `
    const next = body.slice(0, at.start) + insert + body.slice(caret)
    setBody(next)
    setAt(null)
    caretAfter.current = at.start + insert.length
  }
  const submit = () => {
    if (!body.trim()) return
    onSubmit(body.trim())
    setBody('')
    setAt(null)
  }
  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (open && (e.key === 'ArrowDown' || e.key === 'ArrowUp')) {
      e.preventDefault()
      setActive((i) => (i + (e.key === 'ArrowDown' ? 1 : matches.length - 1)) % matches.length)
    } else if (open && (e.key === 'Enter' || e.key === 'Tab')) {
      e.preventDefault()
      pick(matches[Math.min(active, matches.length - 1)])
    } else if (open && e.key === 'Escape') {
      e.preventDefault()
      e.stopPropagation()
      setAt(null)
    } else if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault()
      submit()
    }
  }
  return (
    <div className="composer">
      <textarea
        ref={area}
        value={body}
        rows={2}
        maxLength={10000}
        placeholder="Write a comment… (@ to mention, Ctrl+Enter to send)"
        aria-label={submitLabel === 'Comment' ? 'New comment' : 'Edit comment'}
        aria-autocomplete="list"
        aria-controls={open ? 'mention-list' : undefined}
        onChange={(e) => {
          setBody(e.target.value)
          setAt(mentionQuery(e.target.value, e.target.selectionStart))
          setActive(0)
        }}
        onKeyDown={onKeyDown}
      />
      {open && (
        <ul className="mention-list" role="listbox" id="mention-list" aria-label="Mention a member">
          {matches.map((m, i) => (
            <li
              key={m.user_id}
              role="option"
              aria-selected={i === active}
              className={i === active ? 'active' : ''}
              onMouseDown={(e) => {
                e.preventDefault()
                pick(m)
              }}
            >
              <span aria-hidden="true">
                <Avatar name={m.display_name} color={colorFor(m.user_id)} size={20} />
              </span>
              <span>{m.display_name}</span>
            </li>
          ))}
        </ul>
      )}
      <div className="composer-actions">
        {onCancel && (
          <button type="button" onClick={onCancel}>
            Cancel
          </button>
        )}
        <button type="button" className="primary" disabled={!body.trim()} onClick={submit}>
          {submitLabel}
        </button>
      </div>
    </div>
  )
}
