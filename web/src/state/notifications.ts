/**
 * The notification center: first page of notifications, the unread count, and a live Server-Sent
 * Events stream (EventSource reconnects with Last-Event-ID by itself) that raises a toast.
 */
import { create } from 'zustand'
import { api, type Notification } from '../api'
import { useToasts } from './toasts'
import { useWorkspaces } from './workspaces'

export const NOTIFICATION_TYPES: Record<string, string> = {
  task_assigned: 'Assigned to you',
  task_unassigned: 'Unassigned from you',
  task_completed: 'Task completed',
  task_due_date_changed: 'Due date changed',
  member_joined: 'New member joined',
}

export function describeNotification(n: Notification): string {
  const who = n.actor?.display_name ?? 'Someone'
  const title = typeof n.data?.title === 'string' && n.data.title ? `“${n.data.title}”` : 'a task'
  switch (n.type) {
    case 'task_assigned':
      return `${who} assigned ${title} to you`
    case 'task_unassigned':
      return `${who} unassigned you from ${title}`
    case 'task_completed':
      return `${who} completed ${title}`
    case 'task_due_date_changed': {
      const due = typeof n.data?.new === 'string' ? n.data.new : typeof n.data?.due_date === 'string' ? n.data.due_date : null
      return due ? `${who} set the due date of ${title} to ${due}` : `${who} changed the due date of ${title}`
    }
    case 'member_joined':
      return `${who} joined the workspace`
    default:
      return `${who}: ${n.type.replace(/_/g, ' ')}`
  }
}

const UNREAD_PAGES = 10

interface NotificationsState {
  items: Notification[]
  nextCursor: string | null
  unread: number
  unreadMore: boolean
  loading: boolean
  streaming: boolean
  refresh: () => Promise<void>
  loadMore: () => Promise<void>
  markRead: (id: string) => Promise<void>
  markAllRead: () => Promise<void>
  receive: (n: Notification) => void
  start: (token: string) => void
  stop: () => void
}

let source: EventSource | null = null
let stopOnline: (() => void) | null = null

function rereadMemberLists(): void {
  for (const wid of Object.keys(useWorkspaces.getState().members))
    void useWorkspaces.getState().membersChanged(wid).catch(() => {})
}

export function parseEvent(data: string): Notification | null {
  try {
    const value = JSON.parse(data) as Notification | { notification?: Notification }
    const n = 'notification' in value && value.notification ? value.notification : (value as Notification)
    return typeof n?.id === 'string' || typeof n?.id === 'number' ? { ...n, id: String(n.id) } : null
  } catch {
    return null
  }
}

/** The workspace named by a `members` event (`{"workspace_id": …}`), or null. */
export function parseMembersEvent(data: string): string | null {
  try {
    const value = JSON.parse(data) as { workspace_id?: unknown }
    return typeof value?.workspace_id === 'string' ? value.workspace_id : null
  } catch {
    return null
  }
}

export const useNotifications = create<NotificationsState>((set, get) => ({
  items: [],
  nextCursor: null,
  unread: 0,
  unreadMore: false,
  loading: false,
  streaming: false,

  async refresh() {
    set({ loading: true })
    try {
      const page = await api.notifications()
      let unread = 0
      let cursor: string | null = null
      let pages = 0
      do {
        const u = await api.notifications({ unread: true, cursor })
        unread += u.items.length
        cursor = u.next_cursor
        pages++
      } while (cursor && pages < UNREAD_PAGES)
      set({ items: page.items, nextCursor: page.next_cursor, unread, unreadMore: cursor !== null })
    } finally {
      set({ loading: false })
    }
  },

  async loadMore() {
    const cursor = get().nextCursor
    if (!cursor) return
    const page = await api.notifications({ cursor })
    const known = new Set(get().items.map((n) => n.id))
    set({ items: [...get().items, ...page.items.filter((n) => !known.has(n.id))], nextCursor: page.next_cursor })
  },

  async markRead(id) {
    const n = get().items.find((x) => x.id === id)
    if (n?.read_at) return
    await api.markRead(id)
    const now = new Date().toISOString()
    set({
      items: get().items.map((x) => (x.id === id ? { ...x, read_at: now } : x)),
      unread: Math.max(0, get().unread - 1),
    })
  },

  async markAllRead() {
    await api.markAllRead()
    const now = new Date().toISOString()
    set({ items: get().items.map((x) => (x.read_at ? x : { ...x, read_at: now })), unread: 0, unreadMore: false })
  },

  receive(n) {
    if (get().items.some((x) => x.id === n.id)) return
    set({ items: [n, ...get().items], unread: get().unread + (n.read_at ? 0 : 1) })
    useToasts.getState().push({ kind: 'notification', text: describeNotification(n) })
  },

  start(token) {
    get().stop()
    if (typeof EventSource === 'undefined') return
    const es = new EventSource(`/api/notifications/stream?token=${encodeURIComponent(token)}`)
    source = es
    const handle = (ev: MessageEvent<string>) => {
      const n = parseEvent(ev.data)
      if (n) get().receive(n)
    }
    es.addEventListener('message', handle)
    es.addEventListener('notification', handle as EventListener)
    for (const type of Object.keys(NOTIFICATION_TYPES)) es.addEventListener(type, handle as EventListener)
    // A member list (or the caller's own role) changed: re-read it now rather than on the next poll.
    es.addEventListener('members', ((ev: MessageEvent<string>) => {
      const wid = parseMembersEvent(ev.data)
      if (wid) void useWorkspaces.getState().membersChanged(wid).catch(() => {})
    }) as EventListener)
    es.addEventListener('open', () => {
      set({ streaming: true })
      // Anything that arrived while the stream was down is fetched again: notifications, and the member lists
      // and roles shown (`members` events are not replayed).
      void get().refresh().catch(() => {})
      rereadMemberLists()
    })
    es.addEventListener('error', () => set({ streaming: false }))
    // Back online: the stream may take seconds to retry (or have given up), while the sync socket reconnects at
    // once; what changed meanwhile (a demotion) must be known before edits go on.
    stopOnline?.()
    const online = () => {
      rereadMemberLists()
      if (source?.readyState === EventSource.CLOSED) get().start(token)
    }
    window.addEventListener('online', online)
    stopOnline = () => window.removeEventListener('online', online)
    void get().refresh().catch(() => {})
  },

  stop() {
    stopOnline?.()
    stopOnline = null
    source?.close()
    source = null
    set({ streaming: false, items: [], unread: 0, nextCursor: null })
  },
}))
