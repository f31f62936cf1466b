import { type FormEvent, useState } from 'react'
import type * as Y from 'yjs'
import { createLabel, deleteLabel, type Label, LABEL_COLORS, setTaskLabel, updateLabel } from '../doc/tasks'
import { Dialog } from './common'

/** A label as a coloured chip (the colour is a dot, the text stays readable in any theme). */
export function LabelChip({ label }: { label: Label }) {
  return (
    <span className="label-chip" data-testid="label-chip" title={label.name}>
      <span className="label-dot" style={{ background: label.color }} aria-hidden="true" />
      {label.name}
    </span>
  )
}

/** The workspace's labels: create, rename, recolor, delete (deleting takes the label off every task). */
export function LabelsManager({ doc, labels, editable, onClose }: { doc: Y.Doc; labels: Label[]; editable: boolean; onClose: () => void }) {
  const [name, setName] = useState('')
  const [color, setColor] = useState(LABEL_COLORS[labels.length % LABEL_COLORS.length])
  const add = (e: FormEvent) => {
    e.preventDefault()
    if (!name.trim()) return
    createLabel(doc, name, color)
    setName('')
    setColor(LABEL_COLORS[(labels.length + 1) % LABEL_COLORS.length])
  }
  return (
    <Dialog label="Labels" onClose={onClose} className="labels-dialog">
      <div className="detail-head">
        <h2 className="grow">Labels</h2>
        <button type="button" className="icon" onClick={onClose} aria-label="Close labels">
          ×
        </button>
      </div>
      {labels.length === 0 && <p className="muted">No labels yet.</p>}
      <ul className="labels-list" aria-label="Labels">
        {labels.map((l) => (
          <LabelRow key={l.id} doc={doc} label={l} editable={editable} />
        ))}
      </ul>
      {editable && (
        <form className="inline-form" onSubmit={add} aria-label="New label">
          <input type="color" value={color} onChange={(e) => setColor(e.target.value)} aria-label="New label color" />
          <input value={name} onChange={(e) => setName(e.target.value)} maxLength={50} placeholder="Label name" aria-label="New label name" className="grow" />
          <button type="submit" className="primary" disabled={!name.trim()}>
            Create label
          </button>
        </form>
      )}
    </Dialog>
  )
}

function LabelRow({ doc, label, editable }: { doc: Y.Doc; label: Label; editable: boolean }) {
  const [name, setName] = useState(label.name)
  const [editing, setEditing] = useState(false)
  const shown = editing ? name : label.name
  const commit = () => {
    setEditing(false)
    if (name.trim() && name.trim() !== label.name) updateLabel(doc, label.id, { name })
    else setName(label.name)
  }
  if (!editable)
    return (
      <li>
        <LabelChip label={label} />
      </li>
    )
  return (
    <li className="label-row" data-testid="label-row">
      <input
        type="color"
        value={label.color}
        onChange={(e) => updateLabel(doc, label.id, { color: e.target.value })}
        aria-label={`Color of ${label.name}`}
      />
      <input
        className="grow"
        value={shown}
        maxLength={50}
        aria-label={`Name of ${label.name}`}
        onFocus={() => {
          setName(label.name)
          setEditing(true)
        }}
        onChange={(e) => setName(e.target.value)}
        onBlur={commit}
        onKeyDown={(e) => e.key === 'Enter' && (e.target as HTMLInputElement).blur()}
      />
      <button type="button" className="danger small" onClick={() => deleteLabel(doc, label.id)} aria-label={`Delete label ${label.name}`}>
        Delete
      </button>
    </li>
  )
}

/** In the task detail: every label as a toggle button (pressed = on the task). */
export function LabelPicker({
  doc,
  taskId,
  labels,
  selected,
  editable,
}: {
  doc: Y.Doc
  taskId: string
  labels: Label[]
  selected: string[]
  editable: boolean
}) {
  if (labels.length === 0) return <p className="muted small">No labels defined in this workspace.</p>
  return (
    <div className="label-picker" role="group" aria-label="Labels of this task">
      {labels.map((l) => {
        const on = selected.includes(l.id)
        return (
          <button
            key={l.id}
            type="button"
            className={`label-toggle${on ? ' on' : ''}`}
            aria-pressed={on}
            disabled={!editable}
            onClick={() => setTaskLabel(doc, taskId, l.id, !on)}
          >
            <span className="label-dot" style={{ background: l.color }} aria-hidden="true" />
            {l.name}
          </button>
        )
      })}
    </div>
  )
}
