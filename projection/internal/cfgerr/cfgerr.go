// Package cfgerr holds the configuration error every projection package
// returns, so one sentinel (projection.ErrInvalidConfig) matches them all.
package cfgerr

import (
	"errors"
	"fmt"
)

// ErrInvalid matches every rejected configuration; projection exports it
// as ErrInvalidConfig.
var ErrInvalid = errors.New("invalid projection config")

// Errorf returns an error matching ErrInvalid with the formatted message,
// which names the field as pkg.Config.Field.
func Errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
