/**
 * The open workspace as React sees it: tasks, connection status and peers, all derived from the
 * WorkspaceSession's Y.Doc and awareness. Writes go to the doc (see doc/tasks.ts), never here.
 */
import { create } from 'zustand'
import { api } from '../api'
import { type ConnectionState, connectionState, epochFromReason, refusalFor, type WsStatus } from '../doc/connection'
import { useToasts } from './toasts'
import { type AwarenessState, type Peer, peersFrom } from '../doc/presence'
import { WorkspaceSession } from '../doc/session'
import { bindTasks, type Task } from '../doc/tasks'

export interface BoardState {
  session: WorkspaceSession | null
  workspaceId: string | null
  tasks: Task[]
  ws: WsStatus
  synced: boolean
  lost: boolean
  online: boolean
  loadedLocally: boolean
  peers: Peer[]
  /** Set when the server refused the socket for good. */
  refusal: { kind: 'signin' | 'noaccess' | 'toolarge' | 'other'; code: number } | null
  open: (wid: string, token: string, user: { id: string; name: string }) => void
  close: (forget?: boolean) => void
  /** The server's document was restored (new epoch): drop the local copy and load the restored one. */
  replaceLocalCopy: (epoch: string | null) => Promise<void>
}

export function selectConnection(s: Pick<BoardState, 'ws' | 'synced' | 'online' | 'lost'>): ConnectionState {
  return connectionState(s)
}

const epochKey = (userId: string, wid: string) => `plait.epoch.${userId}.${wid}`

export const useBoard = create<BoardState>((set, get) => {
  let unbind: (() => void) | null = null
  let openedWith: { token: string; user: { id: string; name: string } } | null = null
  const onNetwork = () => set({ online: navigator.onLine })
  window.addEventListener('online', onNetwork)
  window.addEventListener('offline', onNetwork)

  return {
    session: null,
    workspaceId: null,
    tasks: [],
    ws: 'connecting',
    synced: false,
    lost: false,
    online: navigator.onLine,
    loadedLocally: false,
    peers: [],
    refusal: null,

    open(wid, token, user) {
      const current = get().session
      if (current && current.workspaceId === wid) return
      get().close()
      openedWith = { token, user }
      const epoch = localStorage.getItem(epochKey(user.id, wid))
      const session = new WorkspaceSession(wid, token, user, {
        status: (ws) =>
          set((s) => ({
            ws,
            lost: ws === 'connected' ? false : s.lost || ws === 'disconnected',
            synced: ws === 'connected' ? s.synced : false,
          })),
        synced: (synced) => set({ synced }),
        local: (loadedLocally) => set({ loadedLocally }),
        awareness: (states: Map<number, AwarenessState>, selfClient: number) =>
          set({ peers: peersFrom(states, selfClient, user.id) }),
        refused: (code, reason) => {
          const kind = refusalFor(code) ?? 'other'
          if (kind === 'restored') void get().replaceLocalCopy(epochFromReason(reason))
          else set({ refusal: { kind, code } })
        },
      }, epoch)
      unbind = bindTasks(session.doc, (tasks) => set({ tasks }))
      // Remember the epoch this copy belongs to; a copy from before a restore is replaced, never merged.
      api
        .documentInfo(wid)
        .then(({ epoch: current }) => {
          if (!current || get().session !== session) return
          if (epoch === null) localStorage.setItem(epochKey(user.id, wid), current)
          else if (epoch !== current) void get().replaceLocalCopy(current)
        })
        .catch(() => {})
      set({
        session,
        workspaceId: wid,
        ws: 'connecting',
        synced: false,
        lost: false,
        loadedLocally: false,
        refusal: null,
        online: navigator.onLine,
      })
    },

    async replaceLocalCopy(epoch) {
      const { session } = get()
      if (!session || !openedWith) return
      const { token, user } = openedWith
      const wid = session.workspaceId
      unbind?.()
      unbind = null
      set({ session: null, tasks: [], peers: [] })
      await session.destroy(true)
      let next = epoch
      if (!next) next = (await api.documentInfo(wid).catch(() => ({ epoch: null }))).epoch ?? null
      if (next) localStorage.setItem(epochKey(user.id, wid), next)
      else localStorage.removeItem(epochKey(user.id, wid))
      useToasts.getState().push(
        {
          kind: 'info',
          text: 'This workspace was restored from a backup. Your local copy was replaced; edits made after the backup were not kept.',
        },
        15000,
      )
      set({ workspaceId: null })
      get().open(wid, token, user)
    },

    close(forget = false) {
      const { session } = get()
      unbind?.()
      unbind = null
      if (session) void session.destroy(forget)
      set({ session: null, workspaceId: null, tasks: [], peers: [], synced: false, refusal: null })
    },
  }
})
