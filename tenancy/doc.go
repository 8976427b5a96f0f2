// Package tenancy defines tenant identities and how they travel through a
// context. A tenant is an event-store partition: the same stream id in two
// tenants is two independent streams.
//
// Tenant ids are validated by [Validate]; an invalid id is rejected with an
// error matching [ErrInvalidTenantID] that names the offending character, and
// nothing is written.
package tenancy
