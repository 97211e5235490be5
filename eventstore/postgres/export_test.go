package postgres

// AppendSQL exposes the append statement to the ordering test, which runs it
// inside long transactions to make commits land out of order.
const AppendSQL = appendSQL
