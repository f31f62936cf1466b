/** The caller's workspaces and the members of each, with last-known copies for offline use. */
import { create } from 'zustand'
import { api, type Member, type Workspace } from '../api'
import { cache } from './cache'

interface WorkspacesState {
  userId: string | null
  list: Workspace[]
  loaded: boolean
  members: Record<string, Member[]>
  load: (userId: string) => Promise<void>
  create: (name: string) => Promise<Workspace>
  loadMembers: (wid: string) => Promise<Member[]>
  upsert: (w: Workspace) => void
  forget: (wid: string) => void
}

export const useWorkspaces = create<WorkspacesState>((set, get) => ({
  userId: null,
  list: [],
  loaded: false,
  members: {},

  async load(userId) {
    if (get().userId !== userId) {
      set({ userId, list: cache.get<Workspace[]>(`workspaces:${userId}`) ?? [], members: {}, loaded: false })
    }
    const list = await api.workspaces()
    cache.set(`workspaces:${userId}`, list)
    set({ list, loaded: true })
  },

  async create(name) {
    const w = await api.createWorkspace(name)
    get().upsert(w)
    return w
  },

  async loadMembers(wid) {
    const uid = get().userId
    const cached = cache.get<Member[]>(`members:${uid}:${wid}`)
    if (cached && !get().members[wid]) set({ members: { ...get().members, [wid]: cached } })
    const members = await api.members(wid)
    cache.set(`members:${uid}:${wid}`, members)
    set({ members: { ...get().members, [wid]: members } })
    return members
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
    if (get().userId) {
      cache.set(`workspaces:${get().userId}`, list)
      cache.remove(`members:${get().userId}:${wid}`)
    }
  },
}))
