package projection

import "time"

// Status is a persisted projection's progress, as its checkpoint says.
type Status struct {
	Name string
	// Position: every event of the global log up to it has been applied.
	Position      int64
	EventsApplied int64
	// LastEventAt is the recording time of the last event applied; nil
	// before the first.
	LastEventAt *time.Time
	UpdatedAt   time.Time
	// Lag counts the events of the log after Position (capped).
	Lag            int64
	RebuildPending bool
	// LastError says that the last batch failed, without the handler's
	// error text (the server log has it).
	LastError string
}

// DayCounts are the event counts of one day (UTC, "2006-01-02"), by
// event type.
type DayCounts struct {
	Day    string
	Counts map[string]int64
}

// Analytics is the analysis model of a category: event counts per day and
// in total, by event type.
type Analytics struct {
	Category string
	Days     []DayCounts
	Totals   map[string]int64
}
