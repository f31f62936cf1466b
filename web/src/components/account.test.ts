import { describe, expect, it } from 'vitest'
import type { AccessToken } from '../api'
import {
  confirmsDeletion,
  digestCadence,
  expiryDays,
  exportFileName,
  MIN_PASSWORD,
  passwordProblem,
  tokenSummary,
  widestScope,
} from './account'

describe('passwordProblem', () => {
  it('asks for the current password first', () => {
    expect(passwordProblem('', 'long enough pw', 'long enough pw')).toMatch(/current password/)
  })
  it("holds to the server's minimum length", () => {
    const short = 'x'.repeat(MIN_PASSWORD - 1)
    expect(passwordProblem('old', short, short)).toMatch(/at least 8 characters/)
    const ok = 'x'.repeat(MIN_PASSWORD)
    expect(passwordProblem('old', ok, ok)).toBeNull()
  })
  it('wants the confirmation to match', () => {
    expect(passwordProblem('old', 'correct horse', 'correct hose')).toMatch(/don't match/)
  })
})

describe('expiryDays', () => {
  it('reads empty as never', () => {
    expect(expiryDays('  ')).toBeUndefined()
  })
  it('takes whole days in range', () => {
    expect(expiryDays('30')).toBe(30)
    expect(expiryDays('3650')).toBe(3650)
  })
  it('refuses the rest with a message', () => {
    for (const bad of ['0', '1.5', '3651', 'soon', '-2']) expect(typeof expiryDays(bad)).toBe('string')
  })
})

describe('tokens', () => {
  const now = Date.parse('2026-12-04T12:00:00Z')
  const base: AccessToken = {
    id: 't',
    name: 'CI',
    scopes: ['read'],
    created_at: '2026-12-02T12:00:00Z',
    expires_at: null,
    last_used_at: null,
  }
  it('says never used and never expires', () => {
    expect(tokenSummary(base, now)).toBe('Created 2 days ago · never used · never expires')
  })
  it('says when it was last used and when it expires', () => {
    const t = { ...base, last_used_at: '2026-12-04T11:00:00Z', expires_at: '2027-01-04T12:00:00Z' }
    expect(tokenSummary(t, now)).toMatch(/^Created 2 days ago · last used 1 hour ago · expires \S+/)
  })
  it('says expired once past', () => {
    expect(tokenSummary({ ...base, expires_at: '2026-12-03T12:00:00Z' }, now)).toMatch(/expired$/)
  })
  it('names the widest scope', () => {
    expect(widestScope(['read'])).toBe('read')
    expect(widestScope(['read', 'write'])).toBe('write')
    expect(widestScope(['read', 'write', 'admin'])).toBe('admin')
  })
})

describe('account deletion and export', () => {
  it('is confirmed by the e-mail address in any case', () => {
    expect(confirmsDeletion('  Ann@Example.com ', 'ann@example.com')).toBe(true)
    expect(confirmsDeletion('ann@example.org', 'ann@example.com')).toBe(false)
    expect(confirmsDeletion('', '')).toBe(false)
  })
  it('names the export file by date', () => {
    expect(exportFileName(new Date('2026-12-04T23:00:00Z'))).toBe('plait-my-data-2026-12-04.json')
  })
})

describe('digestCadence', () => {
  it('speaks in the largest whole unit', () => {
    expect(digestCadence(86400)).toBe('At most one e-mail every 1 day')
    expect(digestCadence(7200)).toBe('At most one e-mail every 2 hours')
    expect(digestCadence(900)).toBe('At most one e-mail every 15 minutes')
    expect(digestCadence(5400)).toBe('At most one e-mail every 90 minutes')
    expect(digestCadence(0.5)).toBe('At most one e-mail every 1 second')
  })
})
