// Package lead is the seed's sales lead as an event-sourced aggregate over
// Lethe's HTTP API (the typed client of package api/client): the
// event-sourced aggregate loop, shown on the seed's domain.
//
// A lead's events are the seed's (lead-initialized, contacted,
// followup-set, contact-details-updated, order-submitted,
// payment-confirmed) with the seed's JSON field names; the name and phone
// fields are declared personal data of the lead's data subject, so Lethe
// encrypts them under that person's key and erasing the person forgets
// them.
//
// Handler.Handle runs one command:
//
//  1. load: read the lead's stream;
//  2. project: fold its events into a Lead (Fold, Lead.Apply);
//  3. decide: the command checks the Lead and returns new events
//     (Command.Decide);
//  4. commit: append them with the expected version = the version loaded.
//
// When another writer appended first, Lethe answers with the events
// appended since (a *client.Conflict). Handle folds them and compares the
// facts they changed with the facts the command changes (Fact): a
// concurrent "contacted" does not touch a contact-details update, so the
// command is decided again on top of the new state and appended again (at
// most Handler.MaxAttempts appends); two writers that both change the phone
// number do conflict, and Handle returns a *ConflictError naming the facts
// and the concurrent events, for a person to decide.
//
// The Handler's token needs the writer and pii-reader roles: deciding needs
// the current names and phone number, and a token without pii-reader sees
// them as null ("restricted"; Handle then returns ErrRestricted). Every
// load decrypts the lead's personal data and is recorded in Lethe's access
// log, like any read by a pii-reader.
package lead
