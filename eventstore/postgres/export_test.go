package postgres

// AppendSQL exposes the append statement to the ordering test, which runs it
// inside long transactions to make commits land out of order.
const AppendSQL = appendSQL

// Changes exposes the store's wake-up channel: the cross-process test must
// see it closed by a notification, not by a poll.
func (s *Store) Changes() <-chan struct{} { return s.changes.Changes() }

// StartListening starts the LISTEN goroutine without a subscription.
func (s *Store) StartListening() { s.startListening() }
