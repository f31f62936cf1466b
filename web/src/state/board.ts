/**
 * The open workspace as React sees it: tasks, connection status and peers, all derived from the
 * WorkspaceSession's Y.Doc and awareness. Writes go to the doc (see doc/tasks.ts), never here.
 */
import { create } from 'zustand'
import { type ConnectionState, connectionState, refusalFor, type WsStatus } from '../doc/connection'
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
  refusal: { kind: 'signin' | 'noaccess' | 'other'; code: number } | null
  open: (wid: string, token: string, user: { id: string; name: string }) => void
  close: (forget?: boolean) => void
}

export function selectConnection(s: Pick<BoardState, 'ws' | 'synced' | 'online' | 'lost'>): ConnectionState {
  return connectionState(s)
}

export const useBoard = create<BoardState>((set, get) => {
  let unbind: (() => void) | null = null
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
        refused: (code) => {
          const kind = refusalFor(code) ?? 'other'
          set({ refusal: { kind, code } })
        },
      })
      unbind = bindTasks(session.doc, (tasks) => set({ tasks }))
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

    close(forget = false) {
      const { session } = get()
      unbind?.()
      unbind = null
      if (session) void session.destroy(forget)
      set({ session: null, workspaceId: null, tasks: [], peers: [], synced: false, refusal: null })
    },
  }
})
