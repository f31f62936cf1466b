import { describe, expect, it } from 'vitest'
import { deviceName, formatBytes, timeAgo } from './describe'

const CHROME_LINUX =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'
const EDGE_WINDOWS =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0'
const SAFARI_IPHONE =
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1'
const FIREFOX_ANDROID = 'Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0'
const FIREFOX_MAC = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14.1; rv:133.0) Gecko/20100101 Firefox/133.0'

describe('deviceName', () => {
  it('names the browser and the system', () => {
    expect(deviceName(CHROME_LINUX)).toBe('Chrome on Linux')
    expect(deviceName(EDGE_WINDOWS)).toBe('Edge on Windows') // Edge's UA also says Chrome and Safari
    expect(deviceName(SAFARI_IPHONE)).toBe('Safari on iOS') // not macOS, though it says "like Mac OS X"
    expect(deviceName(FIREFOX_ANDROID)).toBe('Firefox on Android') // not Linux
    expect(deviceName(FIREFOX_MAC)).toBe('Firefox on macOS')
    expect(deviceName(CHROME_LINUX.replace('Chrome/', 'HeadlessChrome/'))).toBe('Chrome on Linux')
  })
  it('falls back to the header itself, cut, or says it does not know', () => {
    expect(deviceName('curl/8.5.0')).toBe('curl/8.5.0')
    expect(deviceName('x'.repeat(100))).toBe(`${'x'.repeat(59)}…`)
    expect(deviceName(null)).toBe('Unknown device')
    expect(deviceName('')).toBe('Unknown device')
    expect(deviceName('Chrome/1.0')).toBe('Chrome')
  })
})

describe('formatBytes', () => {
  it('uses the largest unit below 1024 of it', () => {
    expect(formatBytes(0)).toBe('0 B')
    expect(formatBytes(1023)).toBe('1023 B')
    expect(formatBytes(1024)).toBe('1 KB')
    expect(formatBytes(1536)).toBe('1.5 KB')
    expect(formatBytes(12 * 1024 * 1024 + 1)).toBe('12 MB')
    expect(formatBytes(2 ** 60)).toBe('1048576 TB')
  })
})

describe('timeAgo', () => {
  const now = Date.parse('2026-12-04T12:00:00Z')
  it('says how long ago in words', () => {
    expect(timeAgo('2026-12-04T11:59:30Z', now)).toBe('just now')
    expect(timeAgo('2026-12-04T12:00:05Z', now)).toBe('just now') // a clock slightly ahead
    expect(timeAgo('2026-12-04T11:59:00Z', now)).toBe('1 minute ago')
    expect(timeAgo('2026-12-04T11:15:00Z', now)).toBe('45 minutes ago')
    expect(timeAgo('2026-12-04T09:00:00Z', now)).toBe('3 hours ago')
    expect(timeAgo('2026-12-02T12:00:00Z', now)).toBe('2 days ago')
    expect(timeAgo('2026-10-01T12:00:00Z', now)).toBe(new Date('2026-10-01T12:00:00Z').toLocaleDateString())
    expect(timeAgo('not a time', now)).toBe('not a time')
  })
})
