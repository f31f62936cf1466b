/** The caller's workspaces and the members of each, with last-known copies for offline use. */
import { create } from 'zustand'
import { api, ApiError, type Member, type Workspace } from '../api'
import { cache } from './cache'

interface WorkspacesState {
  userId: string | null
  list: Workspace[]
  loaded: boolean
  members: Record<string, Member[]>
  /** Whose copies these are: switching user (or learning it) reads that user's cached list. */
  setUser: (userId: string) => void
  load: (userId: string) => Promise<void>
  create: (name: string) => Promise<Workspace>
  /** The members of a workspace, shown from this user's cached copy at once, then from the server. */
  loadMembers: (wid: string, userId?: string) => Promise<Member[]>
  /** Re-read one workspace (the caller's role in it) and keep it in the list. */
  refreshWorkspace: (wid: string) => Promise<Workspace>
  /** The server said a member list changed (the notification stream's `members` event, or its reconnect). */
  membersChanged: (wid: string) => Promise<void>
  upsert: (w: Workspace) => void
  forget: (wid: string) => void
}

export const membersKey = (userId: string, wid: string) => `members:${userId}:${wid}`

export const useWorkspaces = create<WorkspacesState>((set, get) => ({
  userId: null,
  list: [],
  loaded: false,
  members: {},

  setUser(userId) {
    if (get().userId === userId) return
    set({ userId, list: cache.get<Workspace[]>(`workspaces:${userId}`) ?? [], members: {}, loaded: false })
  },

  async load(userId) {
    get().setUser(userId)
    const list = await api.workspaces()
    cache.set(`workspaces:${userId}`, list)
    set({ list, loaded: true })
  },

  async create(name) {
    const w = await api.createWorkspace(name)
    get().upsert(w)
    return w
  },

  async loadMembers(wid, userId) {
    if (userId) get().setUser(userId)
    const uid = get().userId
    // Never read or write a copy that belongs to nobody: the key must name the signed-in user.
    const cached = uid ? cache.get<Member[]>(membersKey(uid, wid)) : null
    // An entry at once (the cached copy, or none yet): the stream's reconnect re-reads every list shown.
    if (!get().members[wid]) set({ members: { ...get().members, [wid]: cached ?? [] } })
    const members = await api.members(wid)
    if (get().userId !== uid) return members // signed out or switched meanwhile
    if (uid) cache.set(membersKey(uid, wid), members)
    set({ members: { ...get().members, [wid]: members } })
    return members
  },

  async refreshWorkspace(wid) {
    const w = await api.workspace(wid)
    get().upsert(w)
    return w
  },

  async membersChanged(wid) {
    const uid = get().userId
    if (!uid) return
    if (!get().list.some((w) => w.id === wid)) {
      await get().load(uid) // joined a workspace this page did not list yet
      return
    }
    try {
      await get().refreshWorkspace(wid)
    } catch (e) {
      // No longer a member: its sockets are closed with 4403, which shows the "No access" page.
      if (e instanceof ApiError && (e.status === 404 || e.status === 403)) return
      throw e
    }
    await get().loadMembers(wid)
  },

  upsert(w) {
    const list = get().list.some((x) => x.id === w.id)
      ? get().list.map((x) => (x.id === w.id ? { ...x, ...w } : x))
      : [...get().list, w]
    set({ list })
    if (get().userId) cache.set(`workspaces:${get().userId}`, list)
  },

  forget(wid) {
    const list = get().list.filter((x) => x.id !== wid)
    const members = { ...get().members }
    delete members[wid]
    set({ list, members })
    const uid = get().userId
    if (uid) {
      cache.set(`workspaces:${uid}`, list)
      cache.remove(membersKey(uid, wid))
    }
  },
}))
