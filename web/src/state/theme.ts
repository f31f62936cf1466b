/**
 * Light or dark: the system's choice (`prefers-color-scheme`, followed live by the stylesheet) unless the user
 * picked one in the header, which is kept in localStorage and set as `data-theme` on <html> before the first paint.
 */
import { create } from 'zustand'

export type ThemeChoice = 'system' | 'light' | 'dark'

const KEY = 'plait.theme'

export function savedTheme(): ThemeChoice {
  try {
    const v = localStorage.getItem(KEY)
    return v === 'light' || v === 'dark' ? v : 'system'
  } catch {
    return 'system'
  }
}

export function applyTheme(choice: ThemeChoice): void {
  if (choice === 'system') delete document.documentElement.dataset.theme
  else document.documentElement.dataset.theme = choice
}

interface ThemeState {
  choice: ThemeChoice
  choose: (choice: ThemeChoice) => void
}

export const useTheme = create<ThemeState>((set) => ({
  choice: savedTheme(),
  choose(choice) {
    try {
      if (choice === 'system') localStorage.removeItem(KEY)
      else localStorage.setItem(KEY, choice)
    } catch {
      /* storage disabled: the choice lasts for this page */
    }
    applyTheme(choice)
    set({ choice })
  },
}))
