/**
 * The open workspace as React sees it: tasks, connection status and peers, all derived from the
 * WorkspaceSession's Y.Doc and awareness. Writes go to the doc (see doc/tasks.ts), never here.
 */
import { create } from 'zustand'
import { api, type Role } from '../api'
import { SESSION_EXPIRED, useAuth } from './auth'
import { type ConnectionState, connectionState, epochFromReason, refusalFor, type WsStatus } from '../doc/connection'
import { useToasts } from './toasts'
import { useWorkspaces } from './workspaces'
import { type AwarenessState, type Peer, peersFrom } from '../doc/presence'
import { WorkspaceSession } from '../doc/session'
import { bindTasks, type Label, type Task } from '../doc/tasks'

export interface BoardState {
  session: WorkspaceSession | null
  workspaceId: string | null
  tasks: Task[]
  /** The workspace's label definitions (root `labels` map), by name. */
  labels: Label[]
  ws: WsStatus
  synced: boolean
  lost: boolean
  online: boolean
  loadedLocally: boolean
  peers: Peer[]
  /** Set when the server refused the socket for good. */
  refusal: { kind: 'noaccess' | 'toolarge' | 'other'; code: number } | null
  open: (wid: string, token: string, user: { id: string; name: string }) => void
  close: (forget?: boolean) => void
  /**
   * Drop the local copy and load the server's: its document was restored (new epoch), or the caller was made a
   * viewer, so edits the server has not accepted never will be (they must not come back when promoted again).
   */
  replaceLocalCopy: (epoch: string | null, why?: 'restored' | 'readonly') => Promise<void>
  /** The caller's role in a workspace as last read from the server: a writer turned viewer drops its local copy. */
  noteRole: (wid: string, role: Role) => void
}

export function selectConnection(s: Pick<BoardState, 'ws' | 'synced' | 'online' | 'lost'>): ConnectionState {
  return connectionState(s)
}

const epochKey = (userId: string, wid: string) => `plait.epoch.${userId}.${wid}`
/** The role the local copy was last edited under: a change from a writer to a viewer discards unsent edits. */
const roleKey = (userId: string, wid: string) => `plait.role.${userId}.${wid}`

const RESET_NOTICES = {
  restored:
    'This workspace was restored from a backup. Your local copy was replaced; edits made after the backup were not kept.',
  readonly:
    'You are now a viewer in this workspace: you see changes live but cannot edit. Changes the server had not accepted were discarded.',
}

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
    labels: [],
    ws: 'connecting',
    synced: false,
    lost: false,
    online: navigator.onLine,
    loadedLocally: false,
    peers: [],
    refusal: null,

    open(wid, token, user) {
      const current = get().session
      if (current && current.workspaceId === wid) {
        current.setToken(token) // renewed: the same session goes on with it
        if (openedWith) openedWith = { ...openedWith, token }
        return
      }
      get().close()
      openedWith = { token, user }
      const epoch = localStorage.getItem(epochKey(user.id, wid))
      const session = new WorkspaceSession(wid, token, user, {
        status: (ws) => {
          set((s) => ({
            ws,
            lost: ws === 'connected' ? false : s.lost || ws === 'disconnected',
            synced: ws === 'connected' ? s.synced : false,
          }))
          // Each (re)connect sends what this copy holds: re-read the role now, so a demotion that happened while
          // away (offline, or the tab closed) is learnt at once and the refused edits are dropped (noteRole).
          if (ws === 'connected') void useWorkspaces.getState().refreshWorkspace(wid).catch(() => {})
        },
        synced: (synced) => set({ synced }),
        local: (loadedLocally) => set({ loadedLocally }),
        awareness: (states: Map<number, AwarenessState>, selfClient: number) =>
          set({ peers: peersFrom(states, selfClient, user.id) }),
        refused: (code, reason) => {
          const kind = refusalFor(code) ?? 'other'
          // The token expired (offline past its life) or the session ended: renew, and the board stays as it is;
          // the renewed token reconnects this session (open → setToken), a refused renewal signs out.
          if (kind === 'signin') useAuth.getState().signOut(SESSION_EXPIRED)
          else if (kind === 'restored') void get().replaceLocalCopy(epochFromReason(reason))
          else if (kind === 'readonly') {
            // Made a viewer while connected (4423): the role is known, the copy goes at once.
            localStorage.setItem(roleKey(user.id, wid), 'viewer')
            void useWorkspaces.getState().refreshWorkspace(wid).catch(() => {})
            void get().replaceLocalCopy(null, 'readonly')
          } else set({ refusal: { kind, code } })
        },
      }, epoch)
      unbind = bindTasks(
        session.doc,
        (tasks) => set({ tasks }),
        (labels) => set({ labels }),
      )
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

    async replaceLocalCopy(epoch, why = 'restored') {
      const { session } = get()
      if (!session || !openedWith) return
      const { token, user } = openedWith
      const wid = session.workspaceId
      unbind?.()
      unbind = null
      set({ session: null, tasks: [], labels: [], peers: [] })
      await session.destroy(true)
      let next = epoch
      if (!next) next = (await api.documentInfo(wid).catch(() => ({ epoch: null }))).epoch ?? null
      if (next) localStorage.setItem(epochKey(user.id, wid), next)
      else localStorage.removeItem(epochKey(user.id, wid))
      useToasts.getState().push({ kind: 'info', text: RESET_NOTICES[why] }, 15000)
      set({ workspaceId: null })
      get().open(wid, token, user)
    },

    noteRole(wid, role) {
      const uid = openedWith?.user.id
      const { session } = get()
      if (!uid || !session || session.workspaceId !== wid) return
      const before = localStorage.getItem(roleKey(uid, wid))
      localStorage.setItem(roleKey(uid, wid), role)
      // Demoted while away (offline, or the tab closed): what was edited meanwhile was dropped by the server.
      if (role === 'viewer' && before !== null && before !== 'viewer') void get().replaceLocalCopy(null, 'readonly')
    },

    close(forget = false) {
      const { session } = get()
      unbind?.()
      unbind = null
      if (session) void session.destroy(forget)
      set({ session: null, workspaceId: null, tasks: [], labels: [], peers: [], synced: false, refusal: null })
    },
  }
})
