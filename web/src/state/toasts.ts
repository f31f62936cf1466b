/** Short messages in an aria-live region: live notifications, errors, "task deleted — undo". */
import { create } from 'zustand'

export interface Toast {
  id: number
  kind: 'info' | 'error' | 'notification'
  text: string
  action?: { label: string; run: () => void }
}

interface ToastState {
  toasts: Toast[]
  push: (t: Omit<Toast, 'id'>, ms?: number) => number
  dismiss: (id: number) => void
}

let next = 1

export const useToasts = create<ToastState>((set, get) => ({
  toasts: [],
  push(t, ms = t.kind === 'error' ? 8000 : 6000) {
    const id = next++
    set({ toasts: [...get().toasts.slice(-4), { ...t, id }] })
    setTimeout(() => get().dismiss(id), ms)
    return id
  },
  dismiss(id) {
    set({ toasts: get().toasts.filter((t) => t.id !== id) })
  },
}))

export function showError(e: unknown): void {
  const text = e instanceof Error ? e.message : String(e)
  useToasts.getState().push({ kind: 'error', text })
}
