package tenancy

import (
	"errors"
	"fmt"
)

var (
	// ErrTenantNotFound is returned by [Manager.Get] for a tenant that is
	// not in the registry.
	ErrTenantNotFound = errors.New("tenant not found")
	// ErrPartitionConflict is returned when a tenant's partition cannot be
	// created because its name is taken by another relation, or another
	// partition already covers the tenant's value in a way Troupe did not
	// set up (for example a multi-value list). Nothing is created.
	ErrPartitionConflict = errors.New("tenant partition conflict")
	// ErrNotPartitioned is returned when a table registered with the
	// [Manager] does not exist or is not partitioned by LIST (partition).
	ErrNotPartitioned = errors.New("table is not list-partitioned by partition")
	// ErrBusy is returned when a lifecycle operation could not take its
	// table locks within Config.LockTimeout in Config.Retry.MaxAttempts attempts,
	// because other transactions kept the tables busy. Nothing was changed;
	// the operation can be retried.
	ErrBusy = errors.New("tenant tables busy")
	// ErrReservedTenantID is returned by [Manager.Create] and [Manager.Drop]
	// for an id that is a valid partition but not a tenant the Manager may
	// create or erase: store.DefaultPartition, the partition of
	// single-tenant data, whose rows live in the DEFAULT partitions.
	// Nothing is changed.
	ErrReservedTenantID = errors.New("reserved tenant id")
	// ErrInvalidConfig matches every Config validation failure.
	ErrInvalidConfig = errors.New("invalid tenancy config")
)

// ConfigError names the Config field that is wrong.
// errors.Is(err, ErrInvalidConfig) matches it.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("tenancy.Config.%s: %s", e.Field, e.Reason)
}

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }
