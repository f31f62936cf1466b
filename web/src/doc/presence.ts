/** Awareness states ({ user: {id, name, color}, viewing }) folded into one entry per person. */

export interface AwarenessUser {
  id: string
  name: string
  color: string
  colorLight?: string
}
export interface AwarenessState {
  user?: AwarenessUser
  viewing?: string | null
}
export interface Peer {
  id: string
  name: string
  color: string
  viewing: string[]
  self: boolean
}

const PALETTE = ['#e03131', '#c2255c', '#9c36b5', '#6741d9', '#3b5bdb', '#1971c2', '#0c8599', '#099268', '#2f9e44', '#e8590c']

export function colorFor(id: string): string {
  let h = 0
  for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) >>> 0
  return PALETTE[h % PALETTE.length]
}

export function peersFrom(states: Map<number, AwarenessState>, selfClient: number, selfUserId: string | null): Peer[] {
  const byUser = new Map<string, Peer>()
  for (const [client, state] of states) {
    const user = state?.user
    if (!user || typeof user.id !== 'string') continue
    const peer = byUser.get(user.id) ?? {
      id: user.id,
      name: typeof user.name === 'string' && user.name ? user.name : 'Someone',
      color: typeof user.color === 'string' ? user.color : colorFor(user.id),
      viewing: [],
      self: user.id === selfUserId,
    }
    if (client === selfClient) peer.self = true
    if (typeof state.viewing === 'string' && !peer.viewing.includes(state.viewing)) peer.viewing.push(state.viewing)
    byUser.set(user.id, peer)
  }
  return [...byUser.values()].sort((a, b) => Number(b.self) - Number(a.self) || a.name.localeCompare(b.name))
}

export function initials(name: string): string {
  const parts = name.trim().split(/\s+/).filter(Boolean)
  if (parts.length === 0) return '?'
  return (parts[0][0] + (parts.length > 1 ? parts[parts.length - 1][0] : '')).toUpperCase()
}
