/** What the status pill says, from the provider's socket state, its sync flag and the browser's. */
export type WsStatus = 'connecting' | 'connected' | 'disconnected'
export type ConnectionState = 'connected' | 'syncing' | 'offline'

export interface ConnectionInputs {
  ws: WsStatus
  synced: boolean
  online: boolean
  /** The socket was lost since it last synced: retries count as offline, not as "syncing". */
  lost: boolean
}

export function connectionState(c: ConnectionInputs): ConnectionState {
  if (!c.online) return 'offline'
  if (c.ws === 'connected') return c.synced ? 'connected' : 'syncing'
  if (c.ws === 'disconnected' || c.lost) return 'offline'
  return 'syncing'
}

export const CONNECTION_LABELS: Record<ConnectionState, string> = {
  connected: 'Connected',
  syncing: 'Syncing…',
  offline: 'Offline — changes saved locally',
}

/** Close codes the sync server uses for decisions that reconnecting cannot fix (docs/protocol.md). */
export type Refusal = 'signin' | 'noaccess' | 'restored' | 'readonly' | 'toolarge' | null
export function refusalFor(code: number): Refusal {
  if (code === 4401) return 'signin'
  if (code === 4403 || code === 4404) return 'noaccess'
  if (code === 4409) return 'restored'
  if (code === 4423) return 'readonly'
  if (code === 4413) return 'toolarge'
  return null
}

/** The new epoch named in a 4409 close reason ("workspace was restored, reload (epoch X)"). */
export function epochFromReason(reason: string): string | null {
  const m = /epoch ([^)\s]+)\)/.exec(reason)
  return m ? m[1] : null
}
