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
  // 'hidden': dist/assets/*.js.map are written (the browser tests' coverage is mapped back to src/ through
  // them, see scripts/coverage-report.mjs) but the bundles do not point to them, so browsers never fetch them.
  build: { outDir: 'dist', chunkSizeWarningLimit: 1000, sourcemap: 'hidden' },
  test: { environment: 'node', include: ['src/**/*.test.ts'] },
})
