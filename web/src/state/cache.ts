/**
 * Last-known REST answers (me, workspaces, members) in localStorage, so a board that the
 * Y.Doc can show offline also has its names and roles offline.
 */
export const cache = {
  get<T>(key: string): T | null {
    try {
      const raw = localStorage.getItem(`plait.cache.${key}`)
      return raw ? (JSON.parse(raw) as T) : null
    } catch {
      return null
    }
  },
  set(key: string, value: unknown): void {
    try {
      localStorage.setItem(`plait.cache.${key}`, JSON.stringify(value))
    } catch {
      /* storage full or disabled: the cache is only a convenience */
    }
  },
  remove(key: string): void {
    localStorage.removeItem(`plait.cache.${key}`)
  },
}
