import { type ReactNode, useCallback, useEffect, useRef, useState } from 'react'
import { initials } from '../doc/presence'
import { CONNECTION_LABELS, type ConnectionState } from '../doc/connection'
import { useToasts } from '../state/toasts'
import type { Page } from '../api'
import { STATUS_LABELS, STATUSES, type Status } from '../doc/tasks'

export function Avatar({ name, color, size = 28, title }: { name: string; color: string; size?: number; title?: string }) {
  return (
    <span
      className="avatar"
      style={{ background: color, width: size, height: size, fontSize: size * 0.42 }}
      title={title ?? name}
      aria-label={title ?? name}
      role="img"
    >
      {initials(name)}
    </span>
  )
}

/** The one status picker, on the board's cards and in the task detail. */
export function StatusSelect({
  value,
  onChange,
  label,
  disabled,
}: {
  value: Status
  onChange: (status: Status) => void
  label: string
  disabled?: boolean
}) {
  return (
    <select value={value} disabled={disabled} aria-label={label} onChange={(e) => onChange(e.target.value as Status)}>
      {STATUSES.map((s) => (
        <option key={s} value={s}>
          {STATUS_LABELS[s]}
        </option>
      ))}
    </select>
  )
}

export function ConnectionPill({ state }: { state: ConnectionState }) {
  return (
    <span className={`pill pill-${state}`} role="status" aria-live="polite" data-testid="connection-status" data-state={state}>
      <span className="dot" aria-hidden="true" />
      {CONNECTION_LABELS[state]}
    </span>
  )
}

export function Toaster() {
  const { toasts, dismiss } = useToasts()
  return (
    <div className="toaster" role="region" aria-live="polite" aria-label="Messages">
      {toasts.map((t) => (
        <div key={t.id} className={`toast toast-${t.kind}`} role={t.kind === 'error' ? 'alert' : 'status'} data-testid="toast">
          <span>{t.text}</span>
          {t.action && (
            <button
              type="button"
              className="link"
              onClick={() => {
                t.action?.run()
                dismiss(t.id)
              }}
            >
              {t.action.label}
            </button>
          )}
          <button type="button" className="icon" aria-label="Dismiss message" onClick={() => dismiss(t.id)}>
            ×
          </button>
        </div>
      ))}
    </div>
  )
}

export function ErrorText({ error }: { error: string | null }) {
  if (!error) return null
  return (
    <p className="error" role="alert">
      {error}
    </p>
  )
}

/** Run an async action, keeping a busy flag and the error message a person reads. */
export function useAction(): {
  busy: boolean
  error: string | null
  setError: (e: string | null) => void
  run: <T>(fn: () => Promise<T>) => Promise<T | undefined>
} {
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<string | null>(null)
  const mounted = useRef(true)
  useEffect(() => {
    mounted.current = true
    return () => {
      mounted.current = false
    }
  }, [])
  return {
    busy,
    error,
    setError,
    async run(fn) {
      setBusy(true)
      setError(null)
      try {
        return await fn()
      } catch (e) {
        if (mounted.current) setError(e instanceof Error ? e.message : String(e))
        return undefined
      } finally {
        if (mounted.current) setBusy(false)
      }
    },
  }
}

/**
 * A list read page by page with the API's cursor: `load(args, null)` reads the first page for `args` (replacing what
 * is shown), `more()` appends the next page of the `args` the items answer. An answer that a newer request has
 * overtaken is dropped.
 */
export function useCursorPages<T, A>(fetchPage: (args: A, cursor: string | null) => Promise<Page<T>>) {
  const [items, setItems] = useState<T[]>([])
  const [next, setNext] = useState<string | null>(null)
  const [answered, setAnswered] = useState<{ args: A } | null>(null)
  const action = useAction()
  const latest = useRef(0)
  const load = useCallback(
    (args: A, cursor: string | null) => {
      const ticket = ++latest.current
      void action.run(async () => {
        const page = await fetchPage(args, cursor)
        if (ticket !== latest.current) return
        setItems((prev) => (cursor ? [...prev, ...page.items] : page.items))
        setNext(page.next_cursor)
        setAnswered({ args })
      })
    },
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [fetchPage],
  )
  const more = () => {
    if (answered) load(answered.args, next)
  }
  return { items, setItems, next, answered, action, load, more }
}

/** A panel that closes on Escape and returns focus where it came from. */
export function Dialog({
  label,
  onClose,
  children,
  className = '',
}: {
  label: string
  onClose: () => void
  children: ReactNode
  className?: string
}) {
  const ref = useRef<HTMLDivElement>(null)
  // Kept in a ref: re-renders (remote edits, presence) must not re-run the focus effect below,
  // or focus would jump out of the editor while someone types.
  const close = useRef(onClose)
  close.current = onClose
  useEffect(() => {
    const previous = document.activeElement as HTMLElement | null
    ref.current?.focus()
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') close.current()
    }
    document.addEventListener('keydown', onKey)
    return () => {
      document.removeEventListener('keydown', onKey)
      previous?.focus?.()
    }
  }, [])
  return (
    <div className="backdrop" onMouseDown={(e) => e.target === e.currentTarget && onClose()}>
      <div className={`dialog ${className}`} role="dialog" aria-modal="true" aria-label={label} tabIndex={-1} ref={ref}>
        {children}
      </div>
    </div>
  )
}

interface ConfirmRequest {
  message: string
  action: string
  resolve: (ok: boolean) => void
}

/**
 * The app's own confirmation (never `window.confirm`, which a browser may suppress and cannot be styled):
 * `ask(message, action)` resolves true only when the user presses the action button.
 */
export function useConfirm(): { ask: (message: string, action: string) => Promise<boolean>; dialog: ReactNode } {
  const [pending, setPending] = useState<ConfirmRequest | null>(null)
  const ask = useCallback(
    (message: string, action: string) => new Promise<boolean>((resolve) => setPending({ message, action, resolve })),
    [],
  )
  const answer = (ok: boolean) => {
    pending?.resolve(ok)
    setPending(null)
  }
  const dialog = pending ? <ConfirmDialog request={pending} onAnswer={answer} /> : null
  return { ask, dialog }
}

function ConfirmDialog({ request, onAnswer }: { request: ConfirmRequest; onAnswer: (ok: boolean) => void }) {
  const cancel = useRef<HTMLButtonElement>(null)
  const answer = useRef(onAnswer)
  answer.current = onAnswer
  useEffect(() => {
    const previous = document.activeElement as HTMLElement | null
    cancel.current?.focus() // the safe choice first
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') {
        e.preventDefault()
        answer.current(false)
      }
    }
    document.addEventListener('keydown', onKey)
    return () => {
      document.removeEventListener('keydown', onKey)
      previous?.focus?.()
    }
  }, [])
  return (
    <div className="backdrop confirm-backdrop" onMouseDown={(e) => e.target === e.currentTarget && onAnswer(false)}>
      <div className="confirm" role="alertdialog" aria-modal="true" aria-labelledby="confirm-message">
        <p id="confirm-message">{request.message}</p>
        <div className="confirm-actions">
          <button type="button" ref={cancel} onClick={() => onAnswer(false)}>
            Cancel
          </button>
          <button type="button" className="danger" onClick={() => onAnswer(true)}>
            {request.action}
          </button>
        </div>
      </div>
    </div>
  )
}
