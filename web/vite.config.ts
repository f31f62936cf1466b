/// <reference types="vitest/config" />
import { defineConfig } from 'vite'
import react from '@vitejs/plugin-react'

// The Plait server serves the built app at "/"; in development Vite proxies the API and the
// sync WebSocket to a local `plait serve`, so the browser still sees one origin.
const target = 'http://127.0.0.1:8000'

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: {
      '/api': { target, changeOrigin: false },
      '/sync': { target, ws: true, changeOrigin: false },
    },
  },
  build: { outDir: 'dist', chunkSizeWarningLimit: 1000 },
  test: { environment: 'node', include: ['src/**/*.test.ts'] },
})
