import { describe, expect, it } from 'vitest'
import { connectionState, refusalFor } from './connection'
import { peersFrom } from './presence'
import { describeDetail } from '../api'
import { describeNotification, parseEvent, parseMembersEvent } from '../state/notifications'

describe('connection status', () => {
  it('maps socket, sync and browser state to what the user reads', () => {
    expect(connectionState({ ws: 'connecting', synced: false, online: true, lost: false })).toBe('syncing')
    expect(connectionState({ ws: 'connected', synced: false, online: true, lost: false })).toBe('syncing')
    expect(connectionState({ ws: 'connected', synced: true, online: true, lost: false })).toBe('connected')
    expect(connectionState({ ws: 'disconnected', synced: false, online: true, lost: true })).toBe('offline')
    // retrying after a loss stays "offline" rather than flickering to "syncing"
    expect(connectionState({ ws: 'connecting', synced: false, online: true, lost: true })).toBe('offline')
    expect(connectionState({ ws: 'connected', synced: true, online: false, lost: false })).toBe('offline')
  })

  it('turns close codes into decisions', () => {
    expect(refusalFor(4401)).toBe('signin')
    expect(refusalFor(4403)).toBe('noaccess')
    expect(refusalFor(4404)).toBe('noaccess')
    expect(refusalFor(4409)).toBe('restored')
    expect(refusalFor(4423)).toBe('readonly')
    expect(refusalFor(1006)).toBeNull()
    expect(refusalFor(1011)).toBeNull()
  })
})

describe('presence', () => {
  it('folds awareness states into one entry per user, self first, with what they look at', () => {
    const states = new Map<number, object>([
      [1, { user: { id: 'me', name: 'Me', color: '#111' }, viewing: null }],
      [2, { user: { id: 'bo', name: 'Bo', color: '#222' }, viewing: 't1' }],
      [3, { user: { id: 'bo', name: 'Bo', color: '#222' }, viewing: 't2' }],
      [4, {}],
      [5, { user: { id: 'al', name: 'Al', color: '#333' } }],
    ])
    const peers = peersFrom(states, 1, 'me')
    expect(peers.map((p) => p.id)).toEqual(['me', 'al', 'bo'])
    expect(peers[0].self).toBe(true)
    expect(peers.find((p) => p.id === 'bo')!.viewing).toEqual(['t1', 't2'])
  })
})

describe('messages', () => {
  it('reads FastAPI error bodies', () => {
    expect(describeDetail(409, { detail: 'Email already registered' })).toBe('Email already registered')
    expect(describeDetail(422, { detail: [{ loc: ['body', 'password'], msg: 'too short' }] })).toBe('password: too short')
    expect(describeDetail(500, null)).toMatch(/server had a problem/)
  })

  it('parses SSE notification events and describes them', () => {
    const n = parseEvent(
      JSON.stringify({
        id: 'n1',
        type: 'task_assigned',
        workspace_id: 'w',
        task_id: 't',
        actor: { id: 'a', display_name: 'Ada' },
        data: { title: 'Ship it' },
        created_at: '2030-01-01T00:00:00Z',
        read_at: null,
      }),
    )
    expect(n).not.toBeNull()
    expect(describeNotification(n!)).toBe('Ada assigned “Ship it” to you')
    expect(parseEvent('not json')).toBeNull()
  })
})

describe('restored documents', () => {
  it('reads the new epoch from a 4409 close reason', async () => {
    const { epochFromReason } = await import('./connection')
    expect(refusalFor(4409)).toBe('restored')
    expect(refusalFor(4413)).toBe('toolarge')
    expect(epochFromReason('workspace was restored, reload (epoch 3f2a-77)')).toBe('3f2a-77')
    expect(epochFromReason('something else')).toBeNull()
  })
})

describe('members events', () => {
  it('name the workspace whose member list changed, or nothing', () => {
    expect(parseMembersEvent('{"workspace_id":"w1"}')).toBe('w1')
    expect(parseMembersEvent('{"workspace_id":1}')).toBeNull()
    expect(parseMembersEvent('null')).toBeNull()
    expect(parseMembersEvent('not json')).toBeNull()
  })
})
