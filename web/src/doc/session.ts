/**
 * One open workspace: its Y.Doc, kept in IndexedDB (y-indexeddb) so it opens and edits offline,
 * and synced with the server by y-websocket. The server decides who may connect and whether
 * their edits count (viewers are read-only); this class only reports what happened.
 */
import * as Y from 'yjs'
import { IndexeddbPersistence } from 'y-indexeddb'
import { WebsocketProvider } from 'y-websocket'
import type { Awareness } from 'y-protocols/awareness'
import { type AwarenessState, colorFor } from './presence'
import type { WsStatus } from './connection'

export const DELETE_ORIGIN = Symbol('plait-delete')

export interface SessionEvents {
  status: (ws: WsStatus) => void
  synced: (synced: boolean) => void
  local: (loaded: boolean) => void
  awareness: (states: Map<number, AwarenessState>, selfClient: number) => void
  /** A terminal close from the server (4401, 4403, 4404, ...). */
  refused: (code: number, reason: string) => void
}

export function syncUrl(): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/sync`
}

export class WorkspaceSession {
  readonly doc = new Y.Doc()
  readonly provider: WebsocketProvider
  readonly idb: IndexeddbPersistence
  /**
   * Undo/redo of this client's own changes to tasks and labels (Ctrl+Z, and a deletion's toast). Tracked origins
   * are this client's transactions only (no origin, or DELETE_ORIGIN): updates from the server (the provider's
   * origin), IndexedDB and the description editor (CodeMirror keeps its own undo) are never undone from here.
   */
  readonly history: Y.UndoManager
  private readonly cleanups: (() => void)[] = []

  constructor(
    readonly workspaceId: string,
    token: string,
    user: { id: string; name: string },
    events: SessionEvents,
    /** The document epoch this local copy belongs to; the server refuses a stale one with 4409. */
    epoch: string | null = null,
  ) {
    this.idb = new IndexeddbPersistence(`plait:${user.id}:${workspaceId}`, this.doc)
    this.idb.whenSynced.then(() => events.local(true)).catch(() => events.local(false))
    this.provider = new WebsocketProvider(syncUrl(), workspaceId, this.doc, {
      params: epoch ? { token, epoch } : { token },
      // Tabs of one browser share a session; each tab talks to the server itself so that
      // access control and identity stay per socket.
      disableBc: true,
    })
    const color = colorFor(user.id)
    this.awareness.setLocalState({ user: { id: user.id, name: user.name, color, colorLight: `${color}33` }, viewing: null })
    this.history = new Y.UndoManager([this.doc.getMap('tasks'), this.doc.getMap('labels')], {
      trackedOrigins: new Set([null, DELETE_ORIGIN]),
      captureTimeout: 0,
    })

    const onStatus = ({ status }: { status: WsStatus }) => events.status(status)
    const onSync = (synced: boolean) => events.synced(synced)
    const onClosed = ({ code, reason }: { code: number; reason: string }) => events.refused(code, reason)
    const onAwareness = () =>
      events.awareness(this.awareness.getStates() as Map<number, AwarenessState>, this.doc.clientID)
    this.provider.on('status', onStatus)
    this.provider.on('sync', onSync)
    this.provider.on('closed', onClosed)
    this.awareness.on('change', onAwareness)
    this.cleanups.push(() => {
      this.provider.off('status', onStatus)
      this.provider.off('sync', onSync)
      this.provider.off('closed', onClosed)
      this.awareness.off('change', onAwareness)
    })

    // The browser knows first when the network goes: stop retrying and keep edits local,
    // then reconnect (and sync what was edited meanwhile) as soon as it is back.
    const offline = () => this.provider.disconnect()
    const online = () => this.provider.connect()
    window.addEventListener('offline', offline)
    window.addEventListener('online', online)
    this.cleanups.push(() => {
      window.removeEventListener('offline', offline)
      window.removeEventListener('online', online)
    })
    if (!navigator.onLine) this.provider.disconnect()
    onAwareness()
  }

  get awareness(): Awareness {
    return this.provider.awareness
  }

  /**
   * A renewed access token: every later (re)connect presents it. A socket the server closed for the old one
   * (4401, after which the provider stops retrying) reconnects now, unless the browser is offline.
   */
  setToken(token: string): void {
    if (this.provider.params.token === token) return
    this.provider.params = { ...this.provider.params, token }
    if (!this.provider.shouldConnect && navigator.onLine) this.provider.connect()
  }

  setViewing(taskId: string | null): void {
    if (this.awareness.getLocalState()?.viewing !== taskId) this.awareness.setLocalStateField('viewing', taskId)
  }

  /** Leave the workspace; `forget` also drops the local copy (access was withdrawn). */
  async destroy(forget = false): Promise<void> {
    for (const c of this.cleanups.splice(0)) c()
    this.awareness.setLocalState(null)
    this.history.destroy()
    this.provider.destroy()
    if (forget) await this.idb.clearData()
    else await this.idb.destroy()
    this.doc.destroy()
  }
}
