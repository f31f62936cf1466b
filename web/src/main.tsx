import { StrictMode } from 'react'
import { createRoot } from 'react-dom/client'
import { App } from './App'
import './styles.css'
import { applyTheme, savedTheme } from './state/theme'

applyTheme(savedTheme()) // before the first render: no flash of the other theme

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
)

// The app shell is cached by a service worker so the board (kept in IndexedDB) opens offline too.
if ('serviceWorker' in navigator && import.meta.env.PROD) {
  window.addEventListener('load', () => {
    navigator.serviceWorker.register('/sw.js').catch(() => {
      /* without it the app still works online, and offline until the next reload */
    })
  })
}
