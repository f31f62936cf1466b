import type { Member } from '../api'
import { type BoardFilters, type Label, NO_FILTERS, PRIORITIES, PRIORITY_LABELS, STATUS_LABELS, STATUSES } from '../doc/tasks'

/** The board's filters; the board keeps them in the URL's query (shareable, survives a reload). */
export function Filters({
  filters,
  members,
  labels,
  me,
  onChange,
}: {
  filters: BoardFilters
  members: Member[]
  labels: Label[]
  me: string | null
  onChange: (f: BoardFilters) => void
}) {
  const set = <K extends keyof BoardFilters>(key: K, value: BoardFilters[K]) => onChange({ ...filters, [key]: value })
  const active = (['assignee', 'label', 'priority', 'status', 'due'] as const).some((k) => filters[k] !== null)
  const unknownAssignee = filters.assignee && !['mine', 'unassigned'].includes(filters.assignee) && !members.some((m) => m.user_id === filters.assignee)
  return (
    <div className="filters" role="group" aria-label="Filters">
      <label className="filter">
        Assignee
        <select value={filters.assignee ?? 'anyone'} onChange={(e) => set('assignee', e.target.value === 'anyone' ? null : e.target.value)} aria-label="Filter by assignee">
          <option value="anyone">Anyone</option>
          <option value="mine">Mine</option>
          <option value="unassigned">Unassigned</option>
          {unknownAssignee && <option value={filters.assignee!}>Former member</option>}
          {members
            .filter((m) => m.user_id !== me)
            .map((m) => (
              <option key={m.user_id} value={m.user_id}>
                {m.display_name}
              </option>
            ))}
        </select>
      </label>
      <label className="filter">
        Label
        <select value={filters.label ?? ''} onChange={(e) => set('label', e.target.value || null)} aria-label="Filter by label">
          <option value="">Any</option>
          {filters.label && !labels.some((l) => l.id === filters.label) && <option value={filters.label}>Unknown label</option>}
          {labels.map((l) => (
            <option key={l.id} value={l.id}>
              {l.name}
            </option>
          ))}
        </select>
      </label>
      <label className="filter">
        Priority
        <select value={filters.priority ?? ''} onChange={(e) => set('priority', (e.target.value || null) as BoardFilters['priority'])} aria-label="Filter by priority">
          <option value="">Any</option>
          {PRIORITIES.map((p) => (
            <option key={p} value={p}>
              {PRIORITY_LABELS[p]}
            </option>
          ))}
        </select>
      </label>
      <label className="filter">
        Status
        <select value={filters.status ?? ''} onChange={(e) => set('status', (e.target.value || null) as BoardFilters['status'])} aria-label="Filter by status">
          <option value="">Any</option>
          {STATUSES.map((s) => (
            <option key={s} value={s}>
              {STATUS_LABELS[s]}
            </option>
          ))}
        </select>
      </label>
      <label className="filter">
        Due
        <select value={filters.due ?? ''} onChange={(e) => set('due', (e.target.value || null) as BoardFilters['due'])} aria-label="Filter by due date">
          <option value="">Any time</option>
          <option value="overdue">Overdue</option>
          <option value="today">Today</option>
          <option value="week">Next 7 days</option>
          <option value="none">No due date</option>
        </select>
      </label>
      {active && (
        <button type="button" className="link small" onClick={() => onChange({ ...NO_FILTERS, q: filters.q })}>
          Clear filters
        </button>
      )}
    </div>
  )
}
