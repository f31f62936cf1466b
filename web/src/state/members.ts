import type { Member } from '../api'

/** The display name of a member id: null for nobody, "Former member" for an id no longer in the list. */
export function memberName(members: Member[], id: string | null): string | null {
  if (!id) return null
  return members.find((m) => m.user_id === id)?.display_name ?? 'Former member'
}
