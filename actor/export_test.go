package actor

// OnDelivered makes h call f each time a Send or State has put its message
// in a stream actor's mailbox, so a test can tell that commands are queued
// behind an append in flight.
func OnDelivered(h *Host, f func()) { h.onDelivered.Store(&f) }
