import { type FormEvent, useState } from 'react'
import type * as Y from 'yjs'
import { addChecklistItem, type ChecklistItem, progressOf, removeChecklistItem, type Task, updateChecklistItem } from '../doc/tasks'

/** The task's checklist: toggle, rename (on blur), remove, add; progress as a bar and a count. */
export function Checklist({ doc, task, editable }: { doc: Y.Doc; task: Task; editable: boolean }) {
  const [text, setText] = useState('')
  const { done, total } = progressOf(task)
  const add = (e: FormEvent) => {
    e.preventDefault()
    if (!text.trim()) return
    addChecklistItem(doc, task.id, text.trim())
    setText('')
  }
  return (
    <section className="checklist" aria-labelledby="checklist-heading">
      <h3 id="checklist-heading">
        Checklist{' '}
        {total > 0 && (
          <span className="muted small" data-testid="checklist-progress">
            {done}/{total}
          </span>
        )}
      </h3>
      {total > 0 && <progress max={total} value={done} aria-label={`${done} of ${total} done`} />}
      <ul aria-label="Checklist items">
        {task.checklist.map((item) => (
          <Item key={item.id} doc={doc} taskId={task.id} item={item} editable={editable} />
        ))}
      </ul>
      {editable && (
        <form className="inline-form" onSubmit={add} aria-label="Add a checklist item">
          <input className="grow" value={text} onChange={(e) => setText(e.target.value)} placeholder="Add an item" aria-label="New checklist item" maxLength={1000} />
          <button type="submit" disabled={!text.trim()}>
            Add item
          </button>
        </form>
      )}
    </section>
  )
}

function Item({ doc, taskId, item, editable }: { doc: Y.Doc; taskId: string; item: ChecklistItem; editable: boolean }) {
  const [text, setText] = useState(item.text)
  const [editing, setEditing] = useState(false)
  const commit = () => {
    setEditing(false)
    if (text.trim() && text !== item.text) updateChecklistItem(doc, taskId, item.id, { text: text.trim() })
    else setText(item.text)
  }
  return (
    <li className={`checklist-item${item.done ? ' done' : ''}`} data-testid="checklist-item">
      <input
        type="checkbox"
        checked={item.done}
        disabled={!editable}
        aria-label={item.text || 'Checklist item'}
        onChange={(e) => updateChecklistItem(doc, taskId, item.id, { done: e.target.checked })}
      />
      {editable ? (
        <input
          className="grow plain"
          value={editing ? text : item.text}
          aria-label={`Text of ${item.text || 'item'}`}
          onFocus={() => {
            setText(item.text)
            setEditing(true)
          }}
          onChange={(e) => setText(e.target.value)}
          onBlur={commit}
          onKeyDown={(e) => e.key === 'Enter' && (e.target as HTMLInputElement).blur()}
          maxLength={1000}
        />
      ) : (
        <span className="grow">{item.text}</span>
      )}
      {editable && (
        <button type="button" className="icon" aria-label={`Remove ${item.text || 'item'}`} onClick={() => removeChecklistItem(doc, taskId, item.id)}>
          ×
        </button>
      )}
    </li>
  )
}
